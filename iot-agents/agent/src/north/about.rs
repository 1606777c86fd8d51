//! `/iot/about` (and its alias `/version`) and `/ready`. Readiness is meaningful: 200 only when
//! the registry answers and the context broker can be reached, else 503, so an orchestrator does
//! not route provisioning to an agent that cannot register devices.

use std::sync::LazyLock;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::registry::Scope;
use crate::startup::Agent;

/// The iotagent-node-lib version whose provisioning API this agent reproduces.
pub const LIB_VERSION: &str = "4.14.0-next";

async fn about(req: HttpRequest) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "libVersion": LIB_VERSION,
        "port": req.app_config().local_addr().port(),
        "baseRoot": "/",
        "version": env!("CARGO_PKG_VERSION"),
        "agent": "orbis-agent",
    }))
}

/// A client of its own with a short time-out: readiness must answer quickly.
static PROBE: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap_or_else(|_| reqwest::Client::new())
});

/// True when the broker answers HTTP at all (any status: it is up, whatever it thinks of the
/// probe).
async fn broker_reachable(base: &str) -> bool {
    PROBE.get(format!("{base}/ngsi-ld/v1/types")).send().await.is_ok()
}

async fn ready(agent: web::Data<Agent>) -> HttpResponse {
    let registry_ok = agent.registry.list_groups(Scope::AllPaths { service: "" }, Some(0), 0).await.is_ok();
    if registry_ok && broker_reachable(agent.broker.base()).await {
        HttpResponse::Ok().json(json!({}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({}))
    }
}

/// Registers `/iot/about`, `/version` and `/ready`, with and without a trailing slash.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for p in ["/iot/about", "/iot/about/", "/version", "/version/"] {
        cfg.service(web::resource(p).route(web::get().to(about)));
    }
    for p in ["/ready", "/ready/"] {
        cfg.service(web::resource(p).route(web::get().to(ready)));
    }
}
