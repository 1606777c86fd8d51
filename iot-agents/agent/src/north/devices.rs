//! `/iot/devices` and `/iot/devices/{id}`: provisioning of devices, each registered on the broker
//! as the context source of its commands and lazy attributes before it is stored, so a device is
//! never half provisioned; listing and reading in the `toProvisioningAPIFormat` shape; partial
//! update (the device id, entity name, entity type and API key stay as provisioned), which
//! re-registers when the registered names change and upserts the entity's `id` and `type`; and
//! deletion, which removes the registration.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};

use super::headers::{ServiceHeaders, paging, query, service_headers};
use super::{registration, validate};
use crate::error::{AgentError, Result};
use crate::model::Device;
use crate::registry::Scope;
use crate::startup::Agent;

/// A device as the provisioning API renders it (`toProvisioningAPIFormat`): the record without
/// the registration bookkeeping.
pub fn render(device: &Device) -> Value {
    let mut v = serde_json::to_value(device).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.remove("registrationId");
    }
    v
}

/// Fields a client never sets: they come from the headers or from the agent.
const MANAGED: &[&str] = &["service", "service_path", "registrationId", "lastMeasure"];

fn device_from(item: &Value, h: &ServiceHeaders) -> Result<Device> {
    let Value::Object(item) = item else {
        return Err(AgentError::wrong_syntax("every device must be an object"));
    };
    match item.get("device_id") {
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(AgentError::missing_attributes("Missing attributes from the device: [\"device_id\"]"));
        }
        Some(_) => return Err(AgentError::wrong_syntax("device_id must be a string")),
    }
    validate::check_mappings(item, true)?;
    let mut item: Map<String, Value> = item.clone();
    for k in MANAGED {
        item.remove(*k);
    }
    let mut d: Device = validate::into_record(item)?;
    d.service = h.service.clone();
    d.service_path = h.subservice.clone();
    Ok(d)
}

/// The stored device with exactly this key (an absent API key matches only devices without one).
async fn exact(agent: &Agent, d: &Device) -> Result<Option<Device>> {
    let found = agent.registry.get_device(&d.service, &d.service_path, &d.device_id, d.apikey.as_deref()).await?;
    Ok(found.filter(|f| f.apikey == d.apikey))
}

/// Removes registrations made for a refused batch; failures are logged, the refusal is what
/// the client needs to see.
async fn roll_back(agent: &Agent, done: &[(Device, Option<crate::model::Group>)]) {
    for (d, g) in done {
        if let Err(e) = registration::unregister(agent, d, g.as_ref()).await {
            tracing::warn!(device = %d.device_id, error = %e, "could not remove the registration of a refused device");
        }
    }
}

async fn create(req: HttpRequest, body: web::Bytes, agent: web::Data<Agent>) -> Result<HttpResponse> {
    let h = service_headers(&req)?;
    let _writes = registration::write_lock().await;
    let body = validate::parse_object(&body)?;
    if let Some(k) = body.keys().find(|k| k.as_str() != "devices") {
        return Err(AgentError::wrong_syntax(format!("unknown property {k}")));
    }
    let devices = validate::items(&body, "devices")?.iter().map(|i| device_from(i, &h)).collect::<Result<Vec<_>>>()?;
    for (i, d) in devices.iter().enumerate() {
        let twice = devices[..i].iter().any(|o| o.device_id == d.device_id && o.apikey == d.apikey);
        if twice || exact(&agent, d).await?.is_some() {
            return Err(AgentError::duplicate_device(format!(
                "Duplicate device id: {} in service {}{}",
                d.device_id, d.service, d.service_path
            )));
        }
    }
    let mut done = Vec::with_capacity(devices.len());
    let mut stored = Vec::with_capacity(devices.len());
    for mut d in devices {
        let group = registration::group_of(&agent, &d).await?;
        match registration::register(&agent, &d, group.as_ref()).await {
            Ok(id) => d.registration_id = id,
            Err(e) => {
                roll_back(&agent, &done).await;
                return Err(e);
            }
        }
        done.push((d.clone(), group));
        stored.push(d);
    }
    if let Err(e) = agent.registry.create_devices(stored).await {
        roll_back(&agent, &done).await;
        return Err(e);
    }
    Ok(HttpResponse::Created().json(json!({})))
}

async fn list(req: HttpRequest, agent: web::Data<Agent>) -> Result<HttpResponse> {
    let h = service_headers(&req)?;
    let (limit, offset) = paging(&query(&req))?;
    let scope = if h.all_paths() {
        Scope::AllPaths { service: &h.service }
    } else {
        Scope::One { service: &h.service, subservice: &h.subservice }
    };
    let page = agent.registry.list_devices(scope, limit, offset).await?;
    let devices: Vec<Value> = page.items.iter().map(render).collect();
    Ok(HttpResponse::Ok().json(json!({ "count": page.count, "devices": devices })))
}

/// The device named in the path (narrowed by `?apikey=`), or `DEVICE_NOT_FOUND`.
async fn stored(req: &HttpRequest, agent: &Agent, h: &ServiceHeaders, id: &str) -> Result<Device> {
    let q = query(req);
    let apikey = q.get("apikey").map(String::as_str).filter(|k| !k.is_empty());
    agent
        .registry
        .get_device(&h.service, &h.subservice, id, apikey)
        .await?
        .ok_or_else(|| AgentError::device_not_found(format!("No device was found with id:{id}")))
}

async fn get(req: HttpRequest, path: web::Path<String>, agent: web::Data<Agent>) -> Result<HttpResponse> {
    let h = service_headers(&req)?;
    let d = stored(&req, &agent, &h, &path).await?;
    Ok(HttpResponse::Ok().json(render(&d)))
}

/// Refuses a change of a field that identifies the device.
fn unchangeable(changes: &Map<String, Value>, key: &str, current: Option<&str>) -> Result<()> {
    match changes.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if Some(s.as_str()) == current => Ok(()),
        Some(_) => Err(AgentError::bad_request(format!("Can't change the {key} of a provisioned device"))),
    }
}

async fn update(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    agent: web::Data<Agent>,
) -> Result<HttpResponse> {
    let h = service_headers(&req)?;
    let _writes = registration::write_lock().await;
    let changes = validate::parse_object(&body)?;
    if changes.get("device_id").is_some_and(|v| !v.is_null()) {
        return Err(AgentError::bad_request("Can't change the ID of a preprovisioned device"));
    }
    validate::check_mappings(&changes, true)?;
    let old = stored(&req, &agent, &h, &path).await?;
    unchangeable(&changes, "entity_name", old.entity_name.as_deref())?;
    unchangeable(&changes, "entity_type", old.entity_type.as_deref())?;
    unchangeable(&changes, "apikey", old.apikey.as_deref())?;
    let Value::Object(mut merged) = serde_json::to_value(&old).map_err(|e| AgentError::internal_db(e.to_string()))?
    else {
        return Err(AgentError::internal_db("a stored device is not an object"));
    };
    for (k, v) in changes {
        if !MANAGED.contains(&k.as_str()) && k != "device_id" {
            merged.insert(k, v);
        }
    }
    let mut new: Device = validate::into_record(merged)?;
    let group = registration::group_of(&agent, &new).await?;
    let settings = &agent.settings;
    let reregister = registration::registration_body(&old, group.as_ref(), settings)
        != registration::registration_body(&new, group.as_ref(), settings);
    if reregister {
        // An exclusive registration of the same attribute would conflict: the old one goes first.
        registration::unregister(&agent, &old, group.as_ref()).await?;
        match registration::register(&agent, &new, group.as_ref()).await {
            Ok(id) => new.registration_id = id,
            Err(e) => {
                restore(&agent, old, group.as_ref()).await;
                return Err(e);
            }
        }
    }
    let resolved = crate::mapping::resolve(&new, group.as_ref(), settings);
    let entity = json!({"id": resolved.entity_id, "type": resolved.entity_type, "@context": resolved.context});
    let broker = registration::broker_for(&agent, group.as_ref());
    let outcome = match broker.upsert(&registration::tenant_of(&new), &[entity]).await {
        Ok(()) => agent.registry.update_device(new.clone()).await,
        Err(e) => Err(e),
    };
    if let Err(e) = outcome {
        if reregister {
            roll_back(&agent, &[(new, group.clone())]).await;
            restore(&agent, old, group.as_ref()).await;
        }
        return Err(e);
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Puts back the registration of a device whose update failed, and records its new id.
async fn restore(agent: &Agent, mut old: Device, group: Option<&crate::model::Group>) {
    let outcome = match registration::register(agent, &old, group).await {
        Ok(id) => {
            old.registration_id = id;
            agent.registry.update_device(old.clone()).await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = outcome {
        tracing::warn!(device = %old.device_id, error = %e, "could not restore the registration of a device");
    }
}

/// Unregisters and deletes one stored device.
pub async fn remove(agent: &Agent, d: &Device) -> Result<()> {
    let group = registration::group_of(agent, d).await?;
    registration::unregister(agent, d, group.as_ref()).await?;
    // The configuration subscriptions made for the device go with it; a broker that no longer
    // knows one is not a reason to keep the device.
    let broker = registration::broker_for(agent, group.as_ref());
    for sub in &d.subscriptions {
        if let Err(e) = broker.unsubscribe(&registration::tenant_of(d), &sub.id).await {
            tracing::warn!(device = %d.device_id, subscription = %sub.id, error = %e, "could not remove a configuration subscription");
        }
    }
    agent.registry.delete_device(&d.service, &d.service_path, &d.device_id, d.apikey.as_deref()).await?;
    Ok(())
}

async fn delete(req: HttpRequest, path: web::Path<String>, agent: web::Data<Agent>) -> Result<HttpResponse> {
    let h = service_headers(&req)?;
    let _writes = registration::write_lock().await;
    let d = stored(&req, &agent, &h, &path).await?;
    remove(&agent, &d).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Registers the device routes, with and without a trailing slash.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for p in ["/iot/devices", "/iot/devices/"] {
        cfg.service(web::resource(p).route(web::post().to(create)).route(web::get().to(list)));
    }
    for p in ["/iot/devices/{id}", "/iot/devices/{id}/"] {
        cfg.service(
            web::resource(p).route(web::get().to(get)).route(web::put().to(update)).route(web::delete().to(delete)),
        );
    }
}
