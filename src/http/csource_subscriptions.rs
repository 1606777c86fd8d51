//! Handlers of `/ngsi-ld/v1/csourceSubscriptions` (GS CIM 009 §5.11, §6.12, §6.13): subscriptions
//! to context source registrations, handled like entity subscriptions by the notifier.

use actix_web::web::{Path, Payload};
use actix_web::{HttpRequest, HttpResponse, http::header};

use super::State;
use super::error::ApiError;
use super::extract::{Params, accept, body_context, body_media, header_context, tenant};
use super::respond;
use super::subscriptions::object_body;
use crate::error::NgsiError;
use crate::ops::{
    create_csource_subscription, delete_csource_subscription, query_csource_subscriptions,
    retrieve_csource_subscription, update_csource_subscription,
};

/// The largest page of registration subscriptions.
const MAX_LIMIT: usize = 1000;

/// Create Context Source Registration Subscription (§5.11.2): 201 with Location.
#[utoipa::path(post, path = "/ngsi-ld/v1/csourceSubscriptions", tag = "Context Source Registration Subscriptions", request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json")), description = "Subscription"), responses((status = 201, description = "Created; Location names it"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 409, description = "Already exists", body = crate::http::error::ProblemDetails)))]
pub async fn create(req: HttpRequest, payload: Payload, state: State) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &[])?;
    let media = body_media(&req, false)?;
    let t = tenant(&req, &state)?;
    let body = object_body(&req, payload, &state).await?;
    let ctx = body_context(&req, &state, media, &body).await?;
    let id = create_csource_subscription::run(&state.broker, &t, &body, ctx).await?;
    let mut resp = HttpResponse::Created();
    resp.insert_header((header::LOCATION, format!("/ngsi-ld/v1/csourceSubscriptions/{id}")));
    if !t.is_empty() {
        resp.insert_header(("NGSILD-Tenant", t));
    }
    let mut resp = resp.finish();
    // Header names are case-insensitive, but some clients (ETSI 038_02) look `Location` up
    // case-sensitively, so this answer spells them as Orion-LD does.
    resp.head_mut().set_camel_case_headers(true);
    Ok(resp)
}

/// Query Context Source Registration Subscriptions (§5.11.5).
#[utoipa::path(get, path = "/ngsi-ld/v1/csourceSubscriptions", tag = "Context Source Registration Subscriptions", params(("limit" = Option<String>, Query, description = "Page size"), ("offset" = Option<String>, Query, description = "Page offset"), ("count" = Option<String>, Query, description = "true: NGSILD-Results-Count header")), responses((status = 200, description = "Subscriptions", body = serde_json::Value)))]
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
    let (page, total) = query_csource_subscriptions::run(&state.broker, &t, &ctx, offset, limit, MAX_LIMIT, sys_attrs)?;
    Ok(respond::page(page, &ctx, acc, "/ngsi-ld/v1/csourceSubscriptions", "", offset, limit, total, count))
}

/// Retrieve Context Source Registration Subscription (§5.11.4).
#[utoipa::path(get, path = "/ngsi-ld/v1/csourceSubscriptions/{subscriptionId}", tag = "Context Source Registration Subscriptions", params(("subscriptionId" = String, Path, description = "Subscription id")), responses((status = 200, description = "Subscription", body = serde_json::Value), (status = 404, description = "Not found", body = crate::http::error::ProblemDetails)))]
pub async fn retrieve(req: HttpRequest, path: Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["options"])?;
    let acc = accept(&req, false)?;
    let t = tenant(&req, &state)?;
    let ctx = header_context(&req, &state).await?;
    let sys_attrs = p.options(&["sysAttrs"])?.iter().any(|o| o == "sysAttrs");
    let body = retrieve_csource_subscription::run(&state.broker, &t, &path, &ctx, sys_attrs).await?;
    Ok(respond::document(body, &ctx, acc))
}

/// Update Context Source Registration Subscription (§5.11.3): 204.
#[utoipa::path(patch, path = "/ngsi-ld/v1/csourceSubscriptions/{subscriptionId}", tag = "Context Source Registration Subscriptions", params(("subscriptionId" = String, Path, description = "Subscription id")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json")), description = "Subscription fragment"), responses((status = 204, description = "Updated"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found", body = crate::http::error::ProblemDetails)))]
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
    update_csource_subscription::run(&state.broker, &t, &path, &body, ctx).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Delete Context Source Registration Subscription (§5.11.6): 204.
#[utoipa::path(delete, path = "/ngsi-ld/v1/csourceSubscriptions/{subscriptionId}", tag = "Context Source Registration Subscriptions", params(("subscriptionId" = String, Path, description = "Subscription id")), responses((status = 204, description = "Deleted"), (status = 404, description = "Not found", body = crate::http::error::ProblemDetails)))]
pub async fn delete(req: HttpRequest, path: Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &[])?;
    let t = tenant(&req, &state)?;
    delete_csource_subscription::run(&state.broker, &t, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}
