//! `GET/PUT /admin/log`: the log level, read and changed at run time. The binary installs a hook
//! that reloads the tracing filter; the level itself is process-wide, like the subscriber.

use std::sync::OnceLock;

use actix_web::{HttpRequest, HttpResponse, web};
use parking_lot::Mutex;
use serde_json::json;

use super::headers::query;
use crate::startup::Agent;

/// Changes the process's log filter (installed by the binary).
pub type ReloadHook = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

static RELOAD: OnceLock<ReloadHook> = OnceLock::new();
static LEVEL: Mutex<Option<String>> = Mutex::new(None);

/// The upstream level names, in the spelling the API uses.
const LEVELS: &[&str] = &["INFO", "ERROR", "FATAL", "DEBUG", "WARNING"];

/// Installs the hook that applies a level change; later calls are ignored.
pub fn install_reload(hook: ReloadHook) {
    let _ = RELOAD.set(hook);
}

/// The upstream level name of a setting (`WARN` → `WARNING`, unknown → `INFO`).
pub fn normalise(level: &str) -> &'static str {
    match level.trim().to_ascii_uppercase().as_str() {
        "DEBUG" => "DEBUG",
        "WARNING" | "WARN" => "WARNING",
        "ERROR" => "ERROR",
        "FATAL" => "FATAL",
        _ => "INFO",
    }
}

/// The `tracing` filter directive of an upstream level name.
pub fn filter_for(level: &str) -> &'static str {
    match normalise(level) {
        "DEBUG" => "debug",
        "WARNING" => "warn",
        "ERROR" | "FATAL" => "error",
        _ => "info",
    }
}

async fn get_level(agent: web::Data<Agent>) -> HttpResponse {
    let level = LEVEL.lock().clone().unwrap_or_else(|| normalise(&agent.settings.log_level).to_owned());
    HttpResponse::Ok().json(json!({ "level": level }))
}

async fn put_level(req: HttpRequest) -> HttpResponse {
    let q = query(&req);
    let Some(level) = q.get("level").filter(|l| !l.is_empty()) else {
        return HttpResponse::BadRequest().json(json!({"error": "log level missing"}));
    };
    let level = level.to_ascii_uppercase();
    if !LEVELS.contains(&level.as_str()) {
        return HttpResponse::BadRequest().json(json!({"error": "invalid log level"}));
    }
    if let Some(hook) = RELOAD.get()
        && let Err(e) = hook(filter_for(&level))
    {
        return HttpResponse::InternalServerError().json(json!({"error": e}));
    }
    *LEVEL.lock() = Some(level);
    HttpResponse::Ok().finish()
}

/// Registers `/admin/log`, with and without a trailing slash.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for p in ["/admin/log", "/admin/log/"] {
        cfg.service(web::resource(p).route(web::get().to(get_level)).route(web::put().to(put_level)));
    }
}
