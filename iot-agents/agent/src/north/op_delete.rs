//! `POST /iot/op/delete`: deletes a list of devices named by `deviceId` (and `apikey`). Every
//! device found is unregistered and deleted; if any was missing the answer is still 404
//! `DEVICE_NOT_FOUND`, as upstream does.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use super::headers::service_headers;
use super::{devices, validate};
use crate::error::{AgentError, Result};
use crate::startup::Agent;

async fn op_delete(req: HttpRequest, body: web::Bytes, agent: web::Data<Agent>) -> Result<HttpResponse> {
    let h = service_headers(&req)?;
    let body = validate::parse_object(&body)?;
    let mut wanted = Vec::new();
    for item in validate::items(&body, "devices")? {
        let Value::Object(item) = item else {
            return Err(AgentError::wrong_syntax("every device must be an object"));
        };
        let Some(id) = validate::string_field(item, "deviceId")? else {
            return Err(AgentError::wrong_syntax("every device needs a deviceId"));
        };
        wanted.push((id.to_owned(), validate::string_field(item, "apikey")?.map(str::to_owned)));
    }
    let _writes = super::registration::write_lock().await;
    let mut missing = Vec::new();
    for (id, apikey) in wanted {
        match agent.registry.get_device(&h.service, &h.subservice, &id, apikey.as_deref()).await? {
            Some(d) => devices::remove(&agent, &d).await?,
            None => missing.push(id),
        }
    }
    if !missing.is_empty() {
        return Err(AgentError::device_not_found(format!("No device was found with id:{}", missing.join(","))));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Registers `/iot/op/delete`, with and without a trailing slash.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for p in ["/iot/op/delete", "/iot/op/delete/"] {
        cfg.service(web::resource(p).route(web::post().to(op_delete)));
    }
}
