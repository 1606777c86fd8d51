//! Handlers of `/ngsi-ld/v1/entities/{entityId}/attrs[/{attrId}]` (GS CIM 009 §6.6, §6.7).

use actix_web::web::{Path, Payload};
use actix_web::{HttpRequest, HttpResponse};

use super::error::ApiError;
use super::extract::{Params, body_context, body_media, header_context, read_json, tenant};
use super::{State, respond};
use crate::ops::{append_attrs, delete_attr, replace_attr, update_attr, update_attrs};

/// Append Entity Attributes (§5.6.3): 204 or 207.
#[utoipa::path(post, path = "/ngsi-ld/v1/entities/{entityId}/attrs", tag = "Attributes", params(("entityId" = String, Path, description = "Entity id (a URI)"), ("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header (application/json bodies and GETs)"), ("options" = Option<String>, Query, description = "noOverwrite")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json"), (serde_json::Value = "application/merge-patch+json")), description = "Entity fragment"), responses((status = 204, description = "All appended"), (status = 207, description = "Some not appended", body = serde_json::Value), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found (entity, attribute or tenant)", body = crate::http::error::ProblemDetails)))]
pub async fn append(
    req: HttpRequest,
    path: Path<String>,
    payload: Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["options", "type", "local"])?;
    let no_overwrite = p.options(&["noOverwrite"])?.iter().any(|o| o == "noOverwrite");
    let media = body_media(&req, false)?;
    let t = tenant(&req, &state)?;
    let body = read_json(payload, state.settings.max_body_bytes).await?;
    let ctx = body_context(&req, &state, media, &body).await?;
    let dist = super::extract::dist(&req, &state, p.bool("local")?)?;
    let out = append_attrs::run(&state.broker, &t, &path, &body, &ctx, no_overwrite, &dist).await?;
    Ok(respond::attr_outcome(&out, &ctx))
}

/// Update Entity Attributes (§5.6.2): 204 or 207.
#[utoipa::path(patch, path = "/ngsi-ld/v1/entities/{entityId}/attrs", tag = "Attributes", params(("entityId" = String, Path, description = "Entity id (a URI)"), ("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header (application/json bodies and GETs)")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json"), (serde_json::Value = "application/merge-patch+json")), description = "Entity fragment"), responses((status = 204, description = "All updated"), (status = 207, description = "Some not updated", body = serde_json::Value), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found (entity, attribute or tenant)", body = crate::http::error::ProblemDetails)))]
pub async fn update(
    req: HttpRequest,
    path: Path<String>,
    payload: Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["type", "local"])?;
    let media = body_media(&req, true)?;
    let t = tenant(&req, &state)?;
    let body = read_json(payload, state.settings.max_body_bytes).await?;
    let ctx = body_context(&req, &state, media, &body).await?;
    let dist = super::extract::dist(&req, &state, p.bool("local")?)?;
    let out = update_attrs::run(&state.broker, &t, &path, &body, &ctx, &dist).await?;
    Ok(respond::attr_outcome(&out, &ctx))
}

/// Partial Attribute Update (§5.6.4): 204.
#[utoipa::path(patch, path = "/ngsi-ld/v1/entities/{entityId}/attrs/{attrId}", tag = "Attributes", params(("entityId" = String, Path, description = "Entity id (a URI)"), ("attrId" = String, Path, description = "Attribute name (compacted with the request context)"), ("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header (application/json bodies and GETs)")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json"), (serde_json::Value = "application/merge-patch+json")), description = "Entity fragment"), responses((status = 204, description = "Updated"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found (entity, attribute or tenant)", body = crate::http::error::ProblemDetails)))]
pub async fn partial_update(
    req: HttpRequest,
    path: Path<(String, String)>,
    payload: Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["type", "local"])?;
    let media = body_media(&req, true)?;
    let t = tenant(&req, &state)?;
    let body = read_json(payload, state.settings.max_body_bytes).await?;
    let ctx = body_context(&req, &state, media, &body).await?;
    let (id, attr) = path.into_inner();
    let dist = super::extract::dist(&req, &state, p.bool("local")?)?;
    let failed = update_attr::run(&state.broker, &t, &id, &attr, &body, &ctx, &dist).await?;
    Ok(respond::parts(&id, failed))
}

/// Replace Attribute (§5.6.19): 204.
#[utoipa::path(put, path = "/ngsi-ld/v1/entities/{entityId}/attrs/{attrId}", tag = "Attributes", params(("entityId" = String, Path, description = "Entity id (a URI)"), ("attrId" = String, Path, description = "Attribute name (compacted with the request context)"), ("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header (application/json bodies and GETs)")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json"), (serde_json::Value = "application/merge-patch+json")), description = "Entity fragment"), responses((status = 204, description = "Replaced"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found (entity, attribute or tenant)", body = crate::http::error::ProblemDetails)))]
pub async fn replace(
    req: HttpRequest,
    path: Path<(String, String)>,
    payload: Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["type", "local"])?;
    let media = body_media(&req, false)?;
    let t = tenant(&req, &state)?;
    let body = read_json(payload, state.settings.max_body_bytes).await?;
    let ctx = body_context(&req, &state, media, &body).await?;
    let (id, attr) = path.into_inner();
    let dist = super::extract::dist(&req, &state, p.bool("local")?)?;
    let failed = replace_attr::run(&state.broker, &t, &id, &attr, &body, &ctx, &dist).await?;
    Ok(respond::parts(&id, failed))
}

/// Delete Attribute (§5.6.5): 204.
#[utoipa::path(delete, path = "/ngsi-ld/v1/entities/{entityId}/attrs/{attrId}", tag = "Attributes", params(("entityId" = String, Path, description = "Entity id (a URI)"), ("attrId" = String, Path, description = "Attribute name (compacted with the request context)"), ("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header (application/json bodies and GETs)"), ("datasetId" = Option<String>, Query, description = "Instance to delete"), ("deleteAll" = Option<String>, Query, description = "true: all instances")), responses((status = 204, description = "Deleted"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found (entity, attribute or tenant)", body = crate::http::error::ProblemDetails)))]
pub async fn delete(req: HttpRequest, path: Path<(String, String)>, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["datasetId", "deleteAll", "type", "local"])?;
    let t = tenant(&req, &state)?;
    let ctx = header_context(&req, &state).await?;
    let (id, attr) = path.into_inner();
    let dataset_id = p.get("datasetId").map(str::to_owned);
    let dist = super::extract::dist(&req, &state, p.bool("local")?)?;
    let failed = delete_attr::run(&state.broker, &t, &id, &attr, &ctx, dataset_id, p.bool("deleteAll")?, &dist).await?;
    Ok(respond::parts(&id, failed))
}
