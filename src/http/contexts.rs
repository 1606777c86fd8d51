//! Handlers of `/ngsi-ld/v1/jsonldContexts` (GS CIM 009 §6.29, §6.30): add, list, serve and
//! delete `@context` documents. Contexts are global: tenant headers are ignored.

use actix_web::web::{Path, Payload};
use actix_web::{HttpRequest, HttpResponse, http::header};
use serde_json::{Value, json};

use super::State;
use super::error::ApiError;
use super::extract::{Params, body_media, read_json};
use crate::error::NgsiError;
use crate::jsonld::core;
use crate::jsonld::resolver::{ContextEntry, ContextKind};
use crate::model::format_millis;
use crate::ops::contexts;

fn details(e: &ContextEntry) -> Value {
    let mut v = json!({
        "URL": e.url,
        "localId": e.id,
        "kind": e.kind.as_str(),
        "createdAt": format_millis(e.created_at),
        "numberOfHits": e.hits,
    });
    if let Some(t) = e.last_usage {
        v["lastUsage"] = json!(format_millis(t));
    }
    v
}

/// List @contexts (§5.13.3).
#[utoipa::path(get, path = "/ngsi-ld/v1/jsonldContexts", tag = "Contexts", params(("details" = Option<String>, Query, description = "true: ContextInfo objects"), ("kind" = Option<String>, Query, description = "Hosted, Cached or ImplicitlyCreated")), responses((status = 200, description = "URLs or details", body = serde_json::Value), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails)))]
pub async fn list(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["details", "kind"])?;
    let with_details = p.bool("details")?;
    let kind = match p.get("kind") {
        None => None,
        Some(k) => Some(ContextKind::parse(k).ok_or_else(|| NgsiError::bad_data(format!("unknown kind {k:?}")))?),
    };
    let list = contexts::list(&state.broker, kind);
    let body: Vec<Value> =
        if with_details { list.iter().map(details).collect() } else { list.iter().map(|e| json!(e.url)).collect() };
    Ok(HttpResponse::Ok().content_type("application/json").body(Value::Array(body).to_string()))
}

/// Add @context (§5.13.2): 201 with Location.
#[utoipa::path(post, path = "/ngsi-ld/v1/jsonldContexts", tag = "Contexts", request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json")), description = "A document with an @context member"), responses((status = 201, description = "Hosted; Location names it"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails)))]
pub async fn add(req: HttpRequest, payload: Payload, state: State) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &[])?;
    body_media(&req, false)?;
    let body = read_json(payload, state.settings.max_body_bytes).await?;
    if !body.is_object() {
        return Err(NgsiError::invalid("the body must be a JSON object with an @context member").into());
    }
    let entry = contexts::add(&state.broker, body, &state.settings.public_base()).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/ngsi-ld/v1/jsonldContexts/{}", entry.id)))
        .finish())
}

/// Serve @context (§5.13.4): the document, or its details.
#[utoipa::path(get, path = "/ngsi-ld/v1/jsonldContexts/{contextId}", tag = "Contexts", params(("contextId" = String, Path, description = "Local id or URL"), ("details" = Option<String>, Query, description = "true: ContextInfo")), responses((status = 200, description = "The @context document", body = serde_json::Value), (status = 404, description = "Not found (entity, attribute or tenant)", body = crate::http::error::ProblemDetails)))]
pub async fn serve(req: HttpRequest, path: Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["details"])?;
    let id = path.into_inner();
    if core::is_core_url(&id) {
        let body = if p.bool("details")? {
            json!({"URL": id, "localId": "core", "kind": "Cached"})
        } else {
            core::DOCUMENT.clone()
        };
        return Ok(HttpResponse::Ok().content_type("application/json").body(body.to_string()));
    }
    let entry = contexts::get(&state.broker, &id)?;
    if p.bool("details")? {
        return Ok(HttpResponse::Ok().content_type("application/json").body(details(&entry).to_string()));
    }
    // Served as plain JSON, as Orion-LD does and the ETSI suite checks (053_01).
    Ok(HttpResponse::Ok().content_type("application/json").body(entry.document.to_string()))
}

/// Delete @context (§5.13.5): 204; `reload=true` re-downloads a cached one.
#[utoipa::path(delete, path = "/ngsi-ld/v1/jsonldContexts/{contextId}", tag = "Contexts", params(("contextId" = String, Path, description = "Local id or URL"), ("reload" = Option<String>, Query, description = "true: re-download a cached context")), responses((status = 204, description = "Deleted"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found (entity, attribute or tenant)", body = crate::http::error::ProblemDetails)))]
pub async fn delete(req: HttpRequest, path: Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["reload"])?;
    let id = path.into_inner();
    if core::is_core_url(&id) {
        // The core @context can be reloaded but not deleted (GS CIM 009 §5.13.5); the built-in
        // copy is what a reload would give, so reloading it is done at once.
        if p.bool("reload")? {
            return Ok(HttpResponse::NoContent().finish());
        }
        return Err(NgsiError::bad_data("the core @context cannot be deleted").into());
    }
    contexts::delete(&state.broker, &id, p.bool("reload")?).await?;
    Ok(HttpResponse::NoContent().finish())
}
