//! Handlers of `/ngsi-ld/v1/csourceRegistrations` (GS CIM 009 §5.9, §5.10, §6.8, §6.9).

use actix_web::web::{Path, Payload};
use actix_web::{HttpRequest, HttpResponse, http::header};

use super::State;
use super::error::ApiError;
use super::extract::{Params, accept, body_context, body_media, header_context, tenant};
use super::respond;
use crate::ops::query_entities::geo_from_params;
use crate::ops::{
    create_registration, delete_registration, query_registrations, retrieve_registration, update_registration,
};

const BASE: &str = "/ngsi-ld/v1/csourceRegistrations";

/// Register Context Source (§5.9.2): 201 with Location.
#[utoipa::path(post, path = "/ngsi-ld/v1/csourceRegistrations", tag = "Context Source Registrations", request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json")), description = "CSourceRegistration"), responses((status = 201, description = "Created; Location names it"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 409, description = "Already exists, or conflicts with an exclusive or redirect registration or with local entities", body = crate::http::error::ProblemDetails)))]
pub async fn create(req: HttpRequest, payload: Payload, state: State) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &[])?;
    let media = body_media(&req, false)?;
    let t = tenant(&req, &state)?;
    let body = super::subscriptions::object_body(&req, payload, &state).await?;
    let ctx = body_context(&req, &state, media, &body).await?;
    let id = create_registration::run(&state.broker, &t, &body, ctx).await?;
    let mut resp = HttpResponse::Created();
    resp.insert_header((header::LOCATION, format!("{BASE}/{id}")));
    if !t.is_empty() {
        resp.insert_header(("NGSILD-Tenant", t));
    }
    let mut resp = resp.finish();
    // Header names are case-insensitive, but some clients (ETSI 033_11) look `Location` up
    // case-sensitively, so this answer spells them as Orion-LD does.
    resp.head_mut().set_camel_case_headers(true);
    Ok(resp)
}

/// The parameters Query Context Source Registrations takes.
const QUERY_PARAMS: &[&str] = &[
    "id",
    "type",
    "idPattern",
    "attrs",
    "q",
    "csf",
    "scopeQ",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "timeproperty",
    "timerel",
    "timeAt",
    "endTimeAt",
    "limit",
    "offset",
    "count",
    "options",
];

/// Query Context Source Registrations (§5.10.2): paged, with prev/next Link headers.
#[utoipa::path(get, path = "/ngsi-ld/v1/csourceRegistrations", tag = "Context Source Registrations", params(("id" = Option<String>, Query, description = "Entity ids (comma-separated)"), ("type" = Option<String>, Query, description = "Entity type selection"), ("idPattern" = Option<String>, Query, description = "Entity id pattern"), ("attrs" = Option<String>, Query, description = "Attribute names (comma-separated)"), ("q" = Option<String>, Query, description = "Query on the registration's properties"), ("csf" = Option<String>, Query, description = "Context source filter"), ("scopeQ" = Option<String>, Query, description = "Scope query"), ("georel" = Option<String>, Query, description = "Geo relation"), ("geometry" = Option<String>, Query, description = "Geometry of the geo-query"), ("coordinates" = Option<String>, Query, description = "Coordinates of the geo-query"), ("geoproperty" = Option<String>, Query, description = "location (default), observationSpace or operationSpace"), ("timerel" = Option<String>, Query, description = "before, after or between"), ("timeAt" = Option<String>, Query, description = "DateTime"), ("endTimeAt" = Option<String>, Query, description = "DateTime (between)"), ("timeproperty" = Option<String>, Query, description = "observedAt (observationInterval), createdAt or modifiedAt (managementInterval)"), ("limit" = Option<String>, Query, description = "Page size"), ("offset" = Option<String>, Query, description = "Page offset"), ("count" = Option<String>, Query, description = "true: NGSILD-Results-Count header")), responses((status = 200, description = "Registrations", body = serde_json::Value), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails)))]
pub async fn query(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, QUERY_PARAMS)?;
    let acc = accept(&req, false)?;
    let t = tenant(&req, &state)?;
    let ctx = header_context(&req, &state).await?;
    let sys_attrs = p.options(&["sysAttrs"])?.iter().any(|o| o == "sysAttrs");
    let limit = p.usize("limit")?.unwrap_or(state.settings.page_size);
    let offset = p.usize("offset")?.unwrap_or(0);
    let count = p.bool("count")?;
    let text = |k: &str| p.get(k).map(str::to_owned);
    let params = query_registrations::Params {
        ids: p.list("id"),
        id_pattern: text("idPattern"),
        types: text("type"),
        attrs: p.list("attrs"),
        q: text("q"),
        csf: text("csf"),
        scope_q: text("scopeQ"),
        geo: geo_from_params(p.get("georel"), p.get("geometry"), p.get("coordinates"), p.get("geoproperty"))?,
        timerel: text("timerel"),
        time_at: text("timeAt"),
        end_time_at: text("endTimeAt"),
        timeproperty: text("timeproperty"),
    };
    let (page, total) = query_registrations::run(&state.broker, &t, &params, &ctx, offset, limit, count, sys_attrs)?;
    // Paging links repeat the query's other parameters.
    let others: Vec<(&str, &str)> = p
        .pairs()
        .iter()
        .filter(|(k, _)| k != "limit" && k != "offset")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let query = serde_urlencoded::to_string(&others).unwrap_or_default();
    Ok(respond::page(page, &ctx, acc, BASE, &query, offset, limit, total, count))
}

/// Retrieve Context Source Registration (§5.10.1).
#[utoipa::path(get, path = "/ngsi-ld/v1/csourceRegistrations/{registrationId}", tag = "Context Source Registrations", params(("registrationId" = String, Path, description = "Registration id")), responses((status = 200, description = "Registration", body = serde_json::Value), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found", body = crate::http::error::ProblemDetails)))]
pub async fn retrieve(req: HttpRequest, path: Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["options"])?;
    let acc = accept(&req, false)?;
    let t = tenant(&req, &state)?;
    let ctx = header_context(&req, &state).await?;
    let sys_attrs = p.options(&["sysAttrs"])?.iter().any(|o| o == "sysAttrs");
    let body = retrieve_registration::run(&state.broker, &t, &path, &ctx, sys_attrs)?;
    Ok(respond::document(body, &ctx, acc))
}

/// Update Context Source Registration (§5.9.3): 204.
#[utoipa::path(patch, path = "/ngsi-ld/v1/csourceRegistrations/{registrationId}", tag = "Context Source Registrations", params(("registrationId" = String, Path, description = "Registration id")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json")), description = "CSourceRegistration fragment"), responses((status = 204, description = "Updated"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found", body = crate::http::error::ProblemDetails), (status = 409, description = "Conflicts with an exclusive or redirect registration or with local entities", body = crate::http::error::ProblemDetails)))]
pub async fn update(
    req: HttpRequest,
    path: Path<String>,
    payload: Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &[])?;
    let media = body_media(&req, true)?;
    let t = tenant(&req, &state)?;
    let body = super::subscriptions::object_body(&req, payload, &state).await?;
    let ctx = body_context(&req, &state, media, &body).await?;
    update_registration::run(&state.broker, &t, &path, &body, ctx).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Delete Context Source Registration (§5.9.4): 204.
#[utoipa::path(delete, path = "/ngsi-ld/v1/csourceRegistrations/{registrationId}", tag = "Context Source Registrations", params(("registrationId" = String, Path, description = "Registration id")), responses((status = 204, description = "Deleted"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found", body = crate::http::error::ProblemDetails)))]
pub async fn delete(req: HttpRequest, path: Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &[])?;
    let t = tenant(&req, &state)?;
    delete_registration::run(&state.broker, &t, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}
