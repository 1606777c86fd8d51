//! `/iot/groups` and its deprecated alias `/iot/services`: config groups, created in batches,
//! listed (every subservice with `fiware-servicepath: /*`, paged only then), partially updated
//! and deleted by `?resource=&apikey=`. Groups are rendered as iotagent-node-lib renders its
//! MongoDB documents: `_id`, `__v`, `service`, `subservice` and the API field names.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};

use super::headers::{paging, query, require_query, service_headers};
use super::{registration, validate};
use crate::error::{AgentError, Result};
use crate::model::Group;
use crate::registry::Scope;
use crate::startup::Agent;

/// The JSON document of a stored group.
pub fn render(group: &Group) -> Value {
    let mut v = serde_json::to_value(group).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("__v".into(), json!(0));
    }
    v
}

/// Checks one group item of a creation body and turns it into a record of this tenant.
fn group_from(item: &Value, service: &str, subservice: &str) -> Result<Group> {
    let Value::Object(item) = item else {
        return Err(AgentError::wrong_syntax("every group must be an object"));
    };
    for key in ["apikey", "resource"] {
        if validate::string_field(item, key)?.is_none() {
            return Err(AgentError::wrong_syntax(format!("a group needs the {key} property")));
        }
    }
    if validate::string_field(item, "entity_type")?.is_none_or(str::is_empty) {
        return Err(AgentError::missing_config_params(
            "The group's configuration is missing mandatory parameters: [\"entity_type\"]",
        ));
    }
    validate::check_mappings(item, false)?;
    let mut item: Map<String, Value> = item.clone();
    item.remove("_id");
    item.remove("__v");
    item.remove("service");
    item.remove("subservice");
    let mut g: Group = validate::into_record(item)?;
    g.service = service.to_owned();
    g.subservice = subservice.to_owned();
    Ok(g)
}

async fn create(req: HttpRequest, body: web::Bytes, agent: web::Data<Agent>, key: &str) -> Result<HttpResponse> {
    let h = service_headers(&req)?;
    let body = validate::parse_object(&body)?;
    let other = if key == "groups" { "services" } else { "groups" };
    let list = if body.contains_key(key) { validate::items(&body, key)? } else { validate::items(&body, other)? };
    let groups = list.iter().map(|i| group_from(i, &h.service, &h.subservice)).collect::<Result<Vec<_>>>()?;
    agent.registry.create_groups(groups).await?;
    Ok(HttpResponse::Created().json(json!({})))
}

async fn list(req: HttpRequest, agent: web::Data<Agent>, key: &str) -> Result<HttpResponse> {
    let h = service_headers(&req)?;
    let page = if h.all_paths() {
        let (limit, offset) = paging(&query(&req))?;
        agent.registry.list_groups(Scope::AllPaths { service: &h.service }, limit, offset).await?
    } else {
        agent.registry.list_groups(Scope::One { service: &h.service, subservice: &h.subservice }, None, 0).await?
    };
    let items: Vec<Value> = page.items.iter().map(render).collect();
    Ok(HttpResponse::Ok().json(json!({ "count": page.count, key: items })))
}

/// The two query parameters that name a group (both mandatory).
fn resource_and_apikey(q: &std::collections::HashMap<String, String>) -> Result<(&str, &str)> {
    match require_query(q, &["resource", "apikey"])?.as_slice() {
        [resource, apikey] => Ok((resource, apikey)),
        _ => Err(AgentError::missing_headers("Some headers were missing from the request: [\"resource\",\"apikey\"]")),
    }
}

/// The stored group named by `?resource=&apikey=`, owned by the request's tenant.
async fn owned_group(agent: &Agent, service: &str, subservice: &str, resource: &str, apikey: &str) -> Result<Group> {
    match agent.registry.find_group(resource, apikey).await? {
        Some(g) if g.service == service && g.subservice == subservice => Ok(g),
        Some(_) => Err(AgentError::mismatched_service(format!(
            "The declared service didn't match the stored one in the entity: {service}{subservice}"
        ))),
        None => Err(AgentError::group_not_found(format!(
            "Couldn't find device group for fiware-service: {service} and fiware-servicepath: {subservice}"
        ))),
    }
}

async fn update(req: HttpRequest, body: web::Bytes, agent: web::Data<Agent>) -> Result<HttpResponse> {
    let h = service_headers(&req)?;
    let q = query(&req);
    let (resource, apikey) = resource_and_apikey(&q)?;
    let changes = validate::parse_object(&body)?;
    validate::check_mappings(&changes, false)?;
    let stored = match owned_group(&agent, &h.service, &h.subservice, resource, apikey).await {
        Err(e) if e.name == "MISMATCHED_SERVICE" => {
            return Err(AgentError::group_not_found(format!(
                "Couldn't find device group for fiware-service: {} and fiware-servicepath: {}",
                h.service, h.subservice
            )));
        }
        other => other?,
    };
    let Value::Object(mut merged) =
        serde_json::to_value(&stored).map_err(|e| AgentError::internal_db(e.to_string()))?
    else {
        return Err(AgentError::internal_db("a stored group is not an object"));
    };
    for (k, v) in changes {
        if !matches!(k.as_str(), "_id" | "__v" | "service" | "subservice" | "apikey" | "resource") {
            merged.insert(k, v);
        }
    }
    if merged.get("entity_type").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(AgentError::missing_config_params(
            "The group's configuration is missing mandatory parameters: [\"entity_type\"]",
        ));
    }
    let group: Group = validate::into_record(merged)?;
    agent.registry.update_group(group).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Any value but an empty one or `false` asks for the devices to be deleted too.
fn truthy(v: Option<&String>) -> bool {
    v.is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

async fn delete(req: HttpRequest, agent: web::Data<Agent>) -> Result<HttpResponse> {
    let h = service_headers(&req)?;
    let q = query(&req);
    let (resource, apikey) = resource_and_apikey(&q)?;
    let _writes = registration::write_lock().await;
    let group = owned_group(&agent, &h.service, &h.subservice, resource, apikey).await?;
    if truthy(q.get("device")) {
        let devices =
            agent.registry.list_devices(Scope::One { service: &h.service, subservice: &h.subservice }, None, 0);
        for d in devices.await?.items {
            let own = registration::group_of(&agent, &d).await?;
            registration::unregister(&agent, &d, own.as_ref()).await?;
            agent.registry.delete_device(&d.service, &d.service_path, &d.device_id, d.apikey.as_deref()).await?;
        }
    }
    agent.registry.delete_group(&h.service, &h.subservice, &group.resource, &group.apikey).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Registers the group routes under `/iot/groups` and `/iot/services`, with and without a
/// trailing slash.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, key) in [("/iot/groups", "groups"), ("/iot/services", "services")] {
        for p in [path.to_owned(), format!("{path}/")] {
            cfg.service(
                web::resource(p)
                    .route(web::post().to(move |r, b, a| create(r, b, a, key)))
                    .route(web::get().to(move |r, a| list(r, a, key)))
                    .route(web::put().to(update))
                    .route(web::delete().to(delete)),
            );
        }
    }
}
