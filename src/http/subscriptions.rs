//! Handlers of `/ngsi-ld/v1/subscriptions` (GS CIM 009 §5.8, §6.10, §6.11).

use actix_web::web::{Path, Payload};
use actix_web::{HttpRequest, HttpResponse, http::header};
use serde_json::Value;

use super::State;
use super::error::ApiError;
use super::extract::{Params, accept, body_context, body_media, header_context, read_json, tenant};
use super::respond;
use crate::error::NgsiError;
use crate::ops::{
    create_subscription, delete_subscription, query_subscriptions, retrieve_subscription, update_subscription,
};

/// The largest page of subscriptions.
const MAX_LIMIT: usize = 1000;

pub(super) async fn object_body(req: &HttpRequest, payload: Payload, state: &State) -> Result<Value, ApiError> {
    let body = read_json(payload, state.settings.max_body_bytes).await?;
    if !body.is_object() {
        return Err(NgsiError::invalid(format!("the body of {} must be a JSON object", req.path())).into());
    }
    Ok(body)
}

/// Create Subscription (§5.8.1): 201 with Location.
#[utoipa::path(post, path = "/ngsi-ld/v1/subscriptions", tag = "Subscriptions", request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json")), description = "Subscription"), responses((status = 201, description = "Created; Location names it"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 409, description = "Already exists", body = crate::http::error::ProblemDetails)))]
pub async fn create(req: HttpRequest, payload: Payload, state: State) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &[])?;
    let media = body_media(&req, false)?;
    let t = tenant(&req, &state)?;
    let body = object_body(&req, payload, &state).await?;
    let ctx = body_context(&req, &state, media, &body).await?;
    let id = create_subscription::run(&state.broker, &t, &body, ctx).await?;
    let mut resp = HttpResponse::Created();
    resp.insert_header((header::LOCATION, format!("/ngsi-ld/v1/subscriptions/{id}")));
    if !t.is_empty() {
        resp.insert_header(("NGSILD-Tenant", t));
    }
    Ok(resp.finish())
}

/// Query Subscriptions (§5.8.4).
#[utoipa::path(get, path = "/ngsi-ld/v1/subscriptions", tag = "Subscriptions", params(("limit" = Option<String>, Query, description = "Page size"), ("offset" = Option<String>, Query, description = "Page offset"), ("count" = Option<String>, Query, description = "true: NGSILD-Results-Count header")), responses((status = 200, description = "Subscriptions", body = serde_json::Value)))]
pub async fn query(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["limit", "offset", "count", "options"])?;
    let acc = accept(&req, false)?;
    let t = tenant(&req, &state)?;
    let ctx = header_context(&req, &state).await?;
    let sys_attrs = p.options(&["sysAttrs"])?.iter().any(|o| o == "sysAttrs");
    let limit = p.usize("limit")?.unwrap_or(state.settings.page_size);
    let offset = p.usize("offset")?.unwrap_or(0);
    let count = p.bool("count")?;
    if limit == 0 && !count {
        return Err(NgsiError::bad_data("limit=0 is only allowed together with count=true").into());
    }
    let (page, total) = query_subscriptions::run(&state.broker, &t, &ctx, offset, limit, MAX_LIMIT, sys_attrs)?;
    Ok(respond::page(page, &ctx, acc, "/ngsi-ld/v1/subscriptions", "", offset, limit, total, count))
}

/// Retrieve Subscription (§5.8.3).
#[utoipa::path(get, path = "/ngsi-ld/v1/subscriptions/{subscriptionId}", tag = "Subscriptions", params(("subscriptionId" = String, Path, description = "Subscription id")), responses((status = 200, description = "Subscription", body = serde_json::Value), (status = 404, description = "Not found", body = crate::http::error::ProblemDetails)))]
pub async fn retrieve(req: HttpRequest, path: Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["options"])?;
    let acc = accept(&req, false)?;
    let t = tenant(&req, &state)?;
    let ctx = header_context(&req, &state).await?;
    let sys_attrs = p.options(&["sysAttrs"])?.iter().any(|o| o == "sysAttrs");
    let body = retrieve_subscription::run(&state.broker, &t, &path, &ctx, sys_attrs).await?;
    Ok(respond::document(body, &ctx, acc))
}

/// Update Subscription (§5.8.2): 204.
#[utoipa::path(patch, path = "/ngsi-ld/v1/subscriptions/{subscriptionId}", tag = "Subscriptions", params(("subscriptionId" = String, Path, description = "Subscription id")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json")), description = "Subscription fragment"), responses((status = 204, description = "Updated"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found", body = crate::http::error::ProblemDetails)))]
pub async fn update(
    req: HttpRequest,
    path: Path<String>,
    payload: Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &[])?;
    let media = body_media(&req, true)?;
    let t = tenant(&req, &state)?;
    let body = object_body(&req, payload, &state).await?;
    let ctx = body_context(&req, &state, media, &body).await?;
    update_subscription::run(&state.broker, &t, &path, &body, ctx).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Delete Subscription (§5.8.5): 204.
#[utoipa::path(delete, path = "/ngsi-ld/v1/subscriptions/{subscriptionId}", tag = "Subscriptions", params(("subscriptionId" = String, Path, description = "Subscription id")), responses((status = 204, description = "Deleted"), (status = 404, description = "Not found", body = crate::http::error::ProblemDetails)))]
pub async fn delete(req: HttpRequest, path: Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &[])?;
    let t = tenant(&req, &state)?;
    delete_subscription::run(&state.broker, &t, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}
