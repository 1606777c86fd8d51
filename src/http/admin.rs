//! Operator routes Orion-LD deployments rely on: `GET /version` (health checks),
//! `/ngsi-ld/ex/v1/version`, `/ngsi-ld/ex/v1/ping`, `/ngsi-ld/ex/v1/tenants`, and the
//! OpenAPI document at `/openapi.json`.

use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::State;
use super::error::ApiError;
use crate::jsonld::core;

/// The Orion-LD release whose surface Orbis reproduces, reported for tools that check it.
const ORION_LD_COMPAT: &str = "1.6.0";

fn uptime(state: &State) -> String {
    let s = state.started.elapsed().as_secs();
    format!("{} d, {} h, {} m, {} s", s / 86400, (s / 3600) % 24, (s / 60) % 60, s % 60)
}

/// `GET /version` in Orion-LD's shape.
#[utoipa::path(get, path = "/version", tag = "Admin", responses((status = 200, description = "Orion-LD style version document", body = serde_json::Value)))]
pub async fn version(state: State) -> HttpResponse {
    let body = json!({
        "orionld version": ORION_LD_COMPAT,
        "orion version": "1.15.0-next",
        "uptime": uptime(&state),
        "git_hash": "nogitversion",
        "compile_time": "",
        "compiled_by": "cargo",
        "compiled_in": "",
        "release_date": "",
        "doc": "https://github.com/orbis",
        "orbis version": env!("CARGO_PKG_VERSION"),
    });
    HttpResponse::Ok().content_type("application/json").body(serde_json::to_string_pretty(&body).unwrap_or_default())
}

/// `GET /ngsi-ld/ex/v1/version`: keys sorted, pretty-printed.
#[utoipa::path(get, path = "/ngsi-ld/ex/v1/version", tag = "Admin", responses((status = 200, description = "Extended version document", body = serde_json::Value)))]
pub async fn ex_version(state: State) -> Result<HttpResponse, ApiError> {
    let tenants = state.broker.store.tenants().await?;
    let body = json!({
        "Core Context": core::CORE_CONTEXT_URL,
        "Orion-LD version": ORION_LD_COMPAT,
        "Orbis version": env!("CARGO_PKG_VERSION"),
        "based on orion": "1.15.0-next",
        "tenants": tenants.len(),
        "cached subscriptions": state.broker.notifier.count(),
        "uptime": uptime(&state),
    });
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(serde_json::to_string_pretty(&body).unwrap_or_default()))
}

#[utoipa::path(get, path = "/ngsi-ld/ex/v1/ping", tag = "Admin", responses((status = 200, description = "Liveness")))]
pub async fn ping() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body("{\"pong\":true}")
}

/// `GET /ngsi-ld/ex/v1/tenants`.
#[utoipa::path(get, path = "/ngsi-ld/ex/v1/tenants", tag = "Admin", responses((status = 200, description = "Tenant names", body = Vec<String>)))]
pub async fn tenants(state: State) -> Result<HttpResponse, ApiError> {
    let t = state.broker.store.tenants().await?;
    Ok(HttpResponse::Ok().content_type("application/json").body(serde_json::to_string(&t).unwrap_or_default()))
}

/// `GET /openapi.json`: the OpenAPI document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "Admin", responses((status = 200, description = "This document", body = serde_json::Value)))]
pub async fn openapi(_req: HttpRequest) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(crate::openapi::document())
}
