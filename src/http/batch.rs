//! Handlers of `/ngsi-ld/v1/entityOperations/*` (GS CIM 009 §6.14–§6.18, §6.31).

use actix_web::web::Payload;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::Value;

use super::error::ApiError;
use std::sync::Arc;

use super::extract::{
    BodyMedia, Params, batch_contexts, body_media, element_error, header_context, read_body, read_json, reads_as_text,
    tenant,
};
use super::{State, respond};
use crate::error::NgsiResult;
use crate::jsonld::Context;
use crate::ops::{BatchBody, batch_create, batch_delete, batch_merge, batch_update, batch_upsert};

async fn input(
    req: &HttpRequest,
    payload: Payload,
    state: &State,
) -> Result<(String, Value, Vec<NgsiResult<Arc<Context>>>), ApiError> {
    let media = body_media(req, false)?;
    let t = tenant(req, state)?;
    let body = read_json(payload, state.settings.max_body_bytes).await?;
    let ctxs = batch_contexts(req, state, media, &body).await?;
    Ok((t, body, ctxs))
}

/// A parsed batch body and its elements' contexts.
type Tree = Option<(Value, Vec<NgsiResult<Arc<Context>>>)>;

/// The body of a batch create or upsert. An `application/json` body with a well-formed `Link`
/// header, for a tenant with no context sources to consult, stays text and is read straight
/// into the model; anything else is parsed into `tree`, each element with its own context.
async fn entities<'a>(
    req: &HttpRequest,
    state: &State,
    media: BodyMedia,
    t: &str,
    bytes: &'a [u8],
    tree: &'a mut Tree,
) -> Result<BatchBody<'a>, ApiError> {
    if reads_as_text(req, state, media, t) {
        let items = crate::model::text::batch_elements(bytes)?;
        return Ok(BatchBody::Text(items, header_context(req, state).await.map_err(element_error)));
    }
    let body: Value = serde_json::from_slice(bytes).map_err(crate::error::NgsiError::not_json)?;
    let ctxs = batch_contexts(req, state, media, &body).await?;
    let (body, ctxs) = tree.insert((body, ctxs));
    Ok(BatchBody::Tree(body, ctxs))
}

fn no_content_or_207(out: &crate::ops::BatchOutcome) -> HttpResponse {
    if out.errors.is_empty() { HttpResponse::NoContent().finish() } else { respond::batch_207(out) }
}

/// Batch create: 201 with the ids, or 207.
#[utoipa::path(post, path = "/ngsi-ld/v1/entityOperations/create", tag = "Batch", params(("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header (application/json bodies and GETs)")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json")), description = "Array of entities (or ids for delete)"), responses((status = 201, description = "All created: array of ids", body = Vec<String>), (status = 207, description = "BatchOperationResult", body = serde_json::Value), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails)))]
pub async fn create(req: HttpRequest, payload: Payload, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["local"])?;
    let dist = super::extract::dist(&req, &state, p.bool("local")?)?;
    let media = body_media(&req, false)?;
    let t = tenant(&req, &state)?;
    let bytes = read_body(payload, state.settings.max_body_bytes).await?;
    let mut tree = None;
    let body = entities(&req, &state, media, &t, &bytes, &mut tree).await?;
    let out = batch_create::run(&state.broker, &t, &body, &dist).await?;
    if out.errors.is_empty() {
        return Ok(HttpResponse::Created()
            .content_type("application/json")
            .body(serde_json::to_string(&out.success).unwrap_or_default()));
    }
    Ok(respond::batch_207(&out))
}

/// Batch upsert: 201 with the created ids, 204 when all existed, or 207.
#[utoipa::path(post, path = "/ngsi-ld/v1/entityOperations/upsert", tag = "Batch", params(("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header (application/json bodies and GETs)"), ("options" = Option<String>, Query, description = "update or replace (default)")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json")), description = "Array of entities (or ids for delete)"), responses((status = 201, description = "Some created: their ids", body = Vec<String>), (status = 204, description = "All updated"), (status = 207, description = "BatchOperationResult", body = serde_json::Value), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails)))]
pub async fn upsert(req: HttpRequest, payload: Payload, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["options", "local"])?;
    let opts = p.options(&["update", "replace"])?;
    let update = opts.iter().any(|o| o == "update");
    let dist = super::extract::dist(&req, &state, p.bool("local")?)?;
    let media = body_media(&req, false)?;
    let t = tenant(&req, &state)?;
    let bytes = read_body(payload, state.settings.max_body_bytes).await?;
    let mut tree = None;
    let body = entities(&req, &state, media, &t, &bytes, &mut tree).await?;
    let out = batch_upsert::run(&state.broker, &t, &body, update, &dist).await?;
    if !out.errors.is_empty() {
        return Ok(respond::batch_207(&out));
    }
    if out.created.is_empty() {
        return Ok(HttpResponse::NoContent().finish());
    }
    Ok(HttpResponse::Created()
        .content_type("application/json")
        .body(serde_json::to_string(&out.created).unwrap_or_default()))
}

/// Batch update: 204 or 207.
#[utoipa::path(post, path = "/ngsi-ld/v1/entityOperations/update", tag = "Batch", params(("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header (application/json bodies and GETs)"), ("options" = Option<String>, Query, description = "noOverwrite")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json")), description = "Array of entities (or ids for delete)"), responses((status = 204, description = "All updated"), (status = 207, description = "BatchOperationResult", body = serde_json::Value), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails)))]
pub async fn update(req: HttpRequest, payload: Payload, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["options", "local"])?;
    let no_overwrite = p.options(&["noOverwrite", "update", "replace"])?.iter().any(|o| o == "noOverwrite");
    let dist = super::extract::dist(&req, &state, p.bool("local")?)?;
    let (t, body, ctxs) = input(&req, payload, &state).await?;
    let out = batch_update::run(&state.broker, &t, &body, &ctxs, no_overwrite, &dist).await?;
    Ok(no_content_or_207(&out))
}

/// Batch delete: 204 or 207.
#[utoipa::path(post, path = "/ngsi-ld/v1/entityOperations/delete", tag = "Batch", params(("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json")), description = "Array of entities (or ids for delete)"), responses((status = 204, description = "All deleted"), (status = 207, description = "BatchOperationResult", body = serde_json::Value), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails)))]
pub async fn delete(req: HttpRequest, payload: Payload, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["local"])?;
    let dist = super::extract::dist(&req, &state, p.bool("local")?)?;
    body_media(&req, false)?;
    let t = tenant(&req, &state)?;
    let body = read_json(payload, state.settings.max_body_bytes).await?;
    let out = batch_delete::run(&state.broker, &t, &body, &dist).await?;
    Ok(no_content_or_207(&out))
}

/// Batch merge: 204 or 207.
#[utoipa::path(post, path = "/ngsi-ld/v1/entityOperations/merge", tag = "Batch", params(("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header (application/json bodies and GETs)")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json")), description = "Array of entities (or ids for delete)"), responses((status = 204, description = "All merged"), (status = 207, description = "BatchOperationResult", body = serde_json::Value), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails)))]
pub async fn merge(req: HttpRequest, payload: Payload, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["local"])?;
    let dist = super::extract::dist(&req, &state, p.bool("local")?)?;
    let (t, body, ctxs) = input(&req, payload, &state).await?;
    let out = batch_merge::run(&state.broker, &t, &body, &ctxs, &dist).await?;
    Ok(no_content_or_207(&out))
}
