//! The NGSI-LD context-provider endpoints on the northbound port: the broker forwards here the
//! updates of command attributes (registered `updateOps`), reads of lazy attributes
//! (`retrieveOps`) and the notifications of configuration subscriptions. An update answers 204 as
//! soon as the command is recorded; delivery and the broker's `<cmd>_status` follow in the
//! background. Errors are `{error, description}`.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};

use crate::error::{AgentError, Result};
use crate::mapping::Resolved;
use crate::registry::Scope;
use crate::startup::Agent;

use super::{configuration, state, target};

/// Entities a lazy query answers, at most.
const MAX_QUERY: usize = 1000;

/// Registers the routes, each with and without a trailing slash.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(["/ngsi-ld/v1/entities/{id}/attrs/{attr}", "/ngsi-ld/v1/entities/{id}/attrs/{attr}/"])
            .route(web::patch().to(update_attr))
            .route(web::put().to(update_attr))
            .route(web::delete().to(not_implemented)),
    )
    .service(
        web::resource(["/ngsi-ld/v1/entities/{id}/attrs", "/ngsi-ld/v1/entities/{id}/attrs/"])
            .route(web::patch().to(update_attrs))
            .route(web::put().to(update_attrs))
            .route(web::post().to(not_implemented)),
    )
    .service(
        web::resource(["/ngsi-ld/v1/entities/{id}", "/ngsi-ld/v1/entities/{id}/"])
            .route(web::patch().to(update_attrs))
            .route(web::get().to(retrieve))
            .route(web::delete().to(not_implemented))
            .route(web::put().to(not_implemented)),
    )
    .service(
        web::resource(["/ngsi-ld/v1/entities", "/ngsi-ld/v1/entities/"])
            .route(web::get().to(query))
            .route(web::post().to(not_implemented)),
    )
    .service(web::resource(["/notify", "/notify/"]).route(web::post().to(notify)));
}

fn ld_error(e: &AgentError) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)).json(e.ld_body())
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// The tenant of an inbound request: `NGSILD-Tenant`, else `fiware-service`, else the fallback;
/// lower-cased, as services are stored.
pub fn tenant(req: &HttpRequest, agent: &Agent) -> String {
    header(req, "NGSILD-Tenant")
        .or_else(|| header(req, "fiware-service"))
        .map(str::to_owned)
        .or_else(|| agent.settings.fallback_tenant.clone())
        .unwrap_or_default()
        .to_lowercase()
}

/// The service path of an inbound request, likewise (`None`: any path of the tenant).
pub fn path(req: &HttpRequest, agent: &Agent) -> Option<String> {
    header(req, "NGSILD-Path")
        .or_else(|| header(req, "fiware-servicepath"))
        .map(str::to_owned)
        .or_else(|| agent.settings.fallback_path.clone())
}

/// The value an attribute instance carries: `value`, `object`, `languageMap`, `vocab` or `json`
/// of a normalized attribute, else the concise value itself.
fn instance_value(instance: &Value) -> Value {
    if let Value::Object(m) = instance {
        for k in ["value", "object", "languageMap", "vocab", "json"] {
            if let Some(v) = m.get(k) {
                return v.clone();
            }
        }
    }
    instance.clone()
}

/// One command per instance of the attribute (a `datasetId` array has several).
fn instances(name: &str, body: &Value) -> Vec<(String, Value)> {
    match body {
        Value::Array(a) => a.iter().map(|i| (name.to_owned(), instance_value(i))).collect(),
        other => vec![(name.to_owned(), instance_value(other))],
    }
}

fn parse(body: &[u8]) -> Result<Value> {
    serde_json::from_slice(body).map_err(|e| AgentError::bad_request(format!("the body is not JSON: {e}")))
}

/// The device behind the entity, in the request's tenant (and path, when it names one).
async fn device_for(agent: &Agent, req: &HttpRequest, entity_id: &str) -> Result<Resolved> {
    let service = tenant(req, agent);
    let found = target::by_entity(agent, &service, entity_id).await?;
    let path = path(req, agent);
    match found {
        Some(r) if path.as_deref().is_none_or(|p| p == "/*" || p == r.device.service_path) => Ok(r),
        _ => Err(AgentError::device_not_found(format!("No device was found for entity {entity_id}"))),
    }
}

/// Accepts the commands, answers 204, and delivers them in the background.
async fn execute(
    agent: Arc<Agent>,
    req: &HttpRequest,
    entity_id: &str,
    commands: Vec<(String, Value)>,
) -> HttpResponse {
    if commands.is_empty() {
        return ld_error(&AgentError::bad_request("the request names no attribute"));
    }
    let resolved = match device_for(&agent, req, entity_id).await {
        Ok(r) => r,
        Err(e) => return ld_error(&e),
    };
    if let Some((name, _)) = commands.iter().find(|(n, _)| target::command_def(&resolved, n).is_none()) {
        return ld_error(&AgentError::command_not_found(format!(
            "{name} is not a command of device {}",
            resolved.device.device_id
        )));
    }
    match state::accept(&agent, &resolved, commands).await {
        Ok(accepted) => {
            tokio::spawn(async move { state::dispatch(&agent, &resolved, accepted).await });
            HttpResponse::NoContent().finish()
        }
        Err(e) => ld_error(&e),
    }
}

async fn update_attr(
    agent: web::Data<Agent>,
    req: HttpRequest,
    p: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (id, attr) = p.into_inner();
    let body = match parse(&body) {
        Ok(b) => b,
        Err(e) => return ld_error(&e),
    };
    execute(agent.into_inner(), &req, &id, instances(&attr, &body)).await
}

async fn update_attrs(
    agent: web::Data<Agent>,
    req: HttpRequest,
    p: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let id = p.into_inner();
    let body = match parse(&body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return ld_error(&AgentError::bad_request("the body must be a JSON object")),
        Err(e) => return ld_error(&e),
    };
    let commands = body
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "id" | "type" | "@context" | "scope"))
        .flat_map(|(k, v)| instances(k, v))
        .collect();
    execute(agent.into_inner(), &req, &id, commands).await
}

/// What the agent knows of a device's entity: its id and type. JSON and UltraLight devices
/// cannot be read on demand, so no attribute values are returned (upstream answers likewise).
fn known(r: &Resolved) -> Value {
    json!({"id": r.entity_id, "type": r.entity_type})
}

async fn retrieve(agent: web::Data<Agent>, req: HttpRequest, p: web::Path<String>) -> HttpResponse {
    let id = p.into_inner();
    match device_for(&agent, &req, &id).await {
        Ok(r) => HttpResponse::Ok().json(known(&r)),
        Err(e) if e.status == 404 => ld_error(&AgentError::entity_not_found(format!("Entity {id} not found"))),
        Err(e) => ld_error(&e),
    }
}

async fn query(agent: web::Data<Agent>, req: HttpRequest, q: web::Query<Map<String, Value>>) -> HttpResponse {
    let list = |k: &str| -> Vec<String> {
        q.get(k)
            .and_then(Value::as_str)
            .map(|s| s.split(',').map(|x| x.trim().to_owned()).collect())
            .unwrap_or_default()
    };
    let (ids, types) = (list("id"), list("type"));
    let service = tenant(&req, &agent);
    let devices = match agent.registry.list_devices(Scope::AllPaths { service: &service }, None, 0).await {
        Ok(p) => p.items,
        Err(e) => return ld_error(&e),
    };
    let mut out = Vec::new();
    for d in devices {
        let r = match target::resolve(&agent, &d).await {
            Ok(r) => r,
            Err(e) => return ld_error(&e),
        };
        if (ids.is_empty() || ids.contains(&r.entity_id)) && (types.is_empty() || types.contains(&r.entity_type)) {
            out.push(known(&r));
            if out.len() >= MAX_QUERY {
                break;
            }
        }
    }
    HttpResponse::Ok().json(out)
}

async fn notify(agent: web::Data<Agent>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let body = match parse(&body) {
        Ok(b) => b,
        Err(e) => return ld_error(&e),
    };
    let service = tenant(&req, &agent);
    match configuration::on_notification(&agent, &service, &body).await {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(e) => {
            tracing::warn!(error = %e, "a configuration notification could not be pushed");
            ld_error(&e)
        }
    }
}

async fn not_implemented() -> HttpResponse {
    ld_error(&AgentError::not_implemented("This operation is not supported by the IoT Agent"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_arrays_give_one_command_per_instance() {
        let body = json!([
            {"type": "Property", "value": 1, "datasetId": "urn:a"},
            {"type": "Relationship", "object": "urn:x", "datasetId": "urn:b"}
        ]);
        assert_eq!(instances("move", &body), vec![("move".into(), json!(1)), ("move".into(), json!("urn:x"))]);
        assert_eq!(
            instances("ping", &json!({"type": "Property", "value": {"a": 1}})),
            vec![("ping".into(), json!({"a": 1}))]
        );
        assert_eq!(instances("ping", &json!(7)), vec![("ping".into(), json!(7))]);
    }
}
