//! Handlers of `/ngsi-ld/v1/entityMaps` and `/ngsi-ld/v1/entityMaps/{entityMapId}` (GS CIM 009
//! §6.32, §6.34), and the `NGSILD-EntityMap` header queries carry (§6.3.23).

use actix_web::web::{Path, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Value, json};

use super::State;
use super::error::ApiError;
use super::extract::{Accept, Params, accept, body_media, header_context, read_json, tenant};
use crate::error::NgsiError;
use crate::jsonld::core::CORE_CONTEXT_URL;
use crate::ops::query_entities::MapUse;
use crate::ops::{create_entity_map, delete_entity_map, retrieve_entity_map, update_entity_map};

/// The header naming an entity map.
pub const HEADER: &str = "NGSILD-EntityMap";

/// The URI of a map resource, absolute with the scheme and host the request came with.
pub fn location(req: &HttpRequest, id: &str) -> String {
    let info = req.connection_info();
    format!("{}://{}/ngsi-ld/v1/entityMaps/{}", info.scheme(), info.host(), crate::forward::segment(id))
}

/// The entity map a query asks for: the `NGSILD-EntityMap` header (a map URI or id), else the
/// `entityMap` parameter (`true` makes one, `false` none, anything else names one).
pub fn map_use(req: &HttpRequest, p: &Params) -> Result<Option<MapUse>, ApiError> {
    if let Some(h) = req.headers().get(HEADER) {
        let v = h.to_str().map_err(|_| NgsiError::bad_data(format!("the {HEADER} header is not valid text")))?;
        if !v.trim().is_empty() {
            return Ok(Some(MapUse::Walk(crate::entity_maps::id_from_reference(v))));
        }
    }
    Ok(match p.get("entityMap") {
        None | Some("false") => None,
        Some("true") => Some(MapUse::Create),
        Some(other) => Some(MapUse::Walk(crate::entity_maps::id_from_reference(other))),
    })
}

/// A map as a response body, with its `@context` member for JSON-LD.
fn map_response(mut resp: actix_web::HttpResponseBuilder, mut body: Value, acc: Accept) -> HttpResponse {
    match acc {
        Accept::LdJson => {
            if let Value::Object(m) = &mut body {
                m.insert("@context".into(), json!(CORE_CONTEXT_URL));
            }
            resp.content_type("application/ld+json").body(body.to_string())
        }
        _ => resp.content_type("application/json").body(body.to_string()),
    }
}

/// Create EntityMap for Query Entities (§5.14.4, §6.34.3.1): 201 with the map and its URI in
/// the `NGSILD-EntityMap` header.
#[utoipa::path(get, path = "/ngsi-ld/v1/entityMaps", tag = "Entity maps", params(("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header"), ("id" = Option<String>, Query, description = "Entity ids"), ("idPattern" = Option<String>, Query, description = "Id regular expression"), ("type" = Option<String>, Query, description = "Entity types"), ("attrs" = Option<String>, Query, description = "Attributes the entities have"), ("q" = Option<String>, Query, description = "NGSI-LD query language filter"), ("scopeQ" = Option<String>, Query, description = "Scope filter"), ("georel" = Option<String>, Query, description = "Geo-relationship"), ("geometry" = Option<String>, Query, description = "Geometry of the geo-query"), ("coordinates" = Option<String>, Query, description = "Coordinates of the geo-query"), ("geoproperty" = Option<String>, Query, description = "GeoProperty to test"), ("orderBy" = Option<String>, Query, description = "Order of the map's entities"), ("local" = Option<String>, Query, description = "true: no selector needed, no context source asked"), ("entityMapLifetime" = Option<String>, Query, description = "ISO 8601 duration (e.g. PT1H); the broker bounds it")), responses((status = 201, description = "The EntityMap; NGSILD-EntityMap header names it", body = serde_json::Value), (status = 400, description = "Bad request data (too broad query, bad lifetime)", body = crate::http::error::ProblemDetails), (status = 403, description = "Too many results for one map", body = crate::http::error::ProblemDetails)))]
pub async fn create(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(
        &req,
        &[
            "id",
            "idPattern",
            "type",
            "attrs",
            "q",
            "scopeQ",
            "orderBy",
            "georel",
            "geometry",
            "coordinates",
            "geoproperty",
            "local",
            "entityMapLifetime",
        ],
    )?;
    let acc = accept(&req, false)?;
    let t = tenant(&req, &state)?;
    let ctx = header_context(&req, &state).await?;
    let params = super::entities::url_query_params(&p)?;
    let dist = super::extract::dist(&req, &state, params.local)?;
    let map = create_entity_map::run(&state.broker, &t, &params, &ctx, &dist).await?;
    let mut resp = HttpResponse::Created();
    resp.insert_header((HEADER, location(&req, &map.id)));
    Ok(map_response(resp, map.to_json(), acc))
}

/// Retrieve EntityMap (§5.14.1, §6.32.3.1).
#[utoipa::path(get, path = "/ngsi-ld/v1/entityMaps/{entityMapId}", tag = "Entity maps", params(("entityMapId" = String, Path, description = "EntityMap id (a URI)"), ("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)")), responses((status = 200, description = "The EntityMap", body = serde_json::Value), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found or expired", body = crate::http::error::ProblemDetails)))]
pub async fn retrieve(req: HttpRequest, path: Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &[])?;
    let acc = accept(&req, false)?;
    let t = tenant(&req, &state)?;
    let body = retrieve_entity_map::run(&state.broker, &t, &path)?;
    Ok(map_response(HttpResponse::Ok(), body, acc))
}

/// Update EntityMap (§5.14.2, §6.32.3.2): 204.
#[utoipa::path(patch, path = "/ngsi-ld/v1/entityMaps/{entityMapId}", tag = "Entity maps", params(("entityMapId" = String, Path, description = "EntityMap id (a URI)"), ("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json"), (serde_json::Value = "application/merge-patch+json")), description = "EntityMap fragment: expiresAt (output-only members are ignored)"), responses((status = 204, description = "Updated"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found or expired", body = crate::http::error::ProblemDetails)))]
pub async fn update(
    req: HttpRequest,
    path: Path<String>,
    payload: Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &[])?;
    body_media(&req, true)?;
    let t = tenant(&req, &state)?;
    let body = read_json(payload, state.settings.max_body_bytes).await?;
    update_entity_map::run(&state.broker, &t, &path, &body)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Delete EntityMap (§5.14.3, §6.32.3.3): 204.
#[utoipa::path(delete, path = "/ngsi-ld/v1/entityMaps/{entityMapId}", tag = "Entity maps", params(("entityMapId" = String, Path, description = "EntityMap id (a URI)"), ("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)")), responses((status = 204, description = "Deleted"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found or expired", body = crate::http::error::ProblemDetails)))]
pub async fn delete(req: HttpRequest, path: Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &[])?;
    let t = tenant(&req, &state)?;
    delete_entity_map::run(&state.broker, &t, &path)?;
    Ok(HttpResponse::NoContent().finish())
}
