//! Handlers of `/ngsi-ld/v1/entities` and `/ngsi-ld/v1/entities/{entityId}`
//! (GS CIM 009 §6.4 and §6.5).

use actix_web::web::{Path, Payload};
use actix_web::{HttpRequest, HttpResponse, http::header};

use super::error::ApiError;
use super::extract::{Params, accept, body_context, body_media, header_context, read_json, tenant};
use super::{State, respond};
use crate::error::NgsiError;
use crate::ops::query_entities::QueryParams;
use crate::ops::{create_entity, delete_entity, merge_entity, query_entities, replace_entity, retrieve_entity};

/// Create Entity (§5.6.1): 201 with Location.
pub async fn create(req: HttpRequest, payload: Payload, state: State) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &[])?;
    let media = body_media(&req, false)?;
    let t = tenant(&req, &state)?;
    let body = read_json(payload, state.settings.max_body_bytes).await?;
    if !body.is_object() {
        return Err(NgsiError::invalid("the body of Create Entity must be a JSON object").into());
    }
    let ctx = body_context(&req, &state, media, &body).await?;
    let id = create_entity::run(&state.broker, &t, &body, &ctx).await?;
    let mut resp = HttpResponse::Created();
    resp.insert_header((header::LOCATION, format!("/ngsi-ld/v1/entities/{id}")));
    if !t.is_empty() {
        resp.insert_header(("NGSILD-Tenant", t));
    }
    Ok(resp.finish())
}

/// Query Entities (§5.7.2).
pub async fn query(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(
        &req,
        &[
            "id",
            "idPattern",
            "type",
            "attrs",
            "pick",
            "omit",
            "limit",
            "offset",
            "count",
            "options",
            "format",
            "lang",
            "local",
            "geometryProperty",
            "datasetId",
        ],
    )?;
    let acc = accept(&req, true)?;
    let t = tenant(&req, &state)?;
    let ctx = header_context(&req, &state).await?;
    let opts = respond::render_opts(&p, &ctx)?;
    let params = QueryParams {
        ids: p.list("id"),
        id_pattern: p.get("idPattern").map(str::to_owned),
        types: p.list("type").map(|t| {
            t.iter().flat_map(|x| x.split('|')).map(|s| s.trim_matches(|c| c == '(' || c == ')').to_owned()).collect()
        }),
        attrs: p.list("attrs"),
        limit: p.usize("limit")?,
        offset: p.usize("offset")?.unwrap_or(0),
        count: p.bool("count")? || p.options(respond::READ_OPTIONS).is_ok_and(|o| o.iter().any(|x| x == "count")),
        local: p.bool("local")?,
    };
    let r = query_entities::run(&state.broker, &t, &params, &ctx, state.settings.page_size).await?;
    Ok(respond::entities(&r.entities, &ctx, acc, &opts, r.total))
}

/// Retrieve Entity (§5.7.1).
pub async fn retrieve(req: HttpRequest, path: Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(
        &req,
        &["attrs", "pick", "omit", "options", "format", "lang", "datasetId", "geometryProperty", "type", "local"],
    )?;
    let acc = accept(&req, true)?;
    let t = tenant(&req, &state)?;
    let ctx = header_context(&req, &state).await?;
    let opts = respond::render_opts(&p, &ctx)?;
    let e = retrieve_entity::run(&state.broker, &t, &path).await?;
    if let Some(types) = p.list("type") {
        let wanted: Vec<String> = types.iter().map(|x| ctx.expand(x)).collect();
        if !e.types.iter().any(|t| wanted.contains(t)) {
            return Err(crate::ops::entity_not_found(&path).into());
        }
    }
    Ok(respond::entity(&e, &ctx, acc, &opts))
}

/// Replace Entity (§5.6.18): 204.
pub async fn replace(
    req: HttpRequest,
    path: Path<String>,
    payload: Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &["type"])?;
    let media = body_media(&req, false)?;
    let t = tenant(&req, &state)?;
    let body = read_json(payload, state.settings.max_body_bytes).await?;
    let ctx = body_context(&req, &state, media, &body).await?;
    replace_entity::run(&state.broker, &t, &path, &body, &ctx).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Merge Entity (§5.6.17): 204; accepts application/merge-patch+json.
pub async fn merge(
    req: HttpRequest,
    path: Path<String>,
    payload: Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &["type", "options", "observedAt", "format"])?;
    let media = body_media(&req, true)?;
    let t = tenant(&req, &state)?;
    let body = read_json(payload, state.settings.max_body_bytes).await?;
    let ctx = body_context(&req, &state, media, &body).await?;
    merge_entity::run(&state.broker, &t, &path, &body, &ctx).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Delete Entity (§5.6.6): 204.
pub async fn delete(req: HttpRequest, path: Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &["type"])?;
    let t = tenant(&req, &state)?;
    delete_entity::run(&state.broker, &t, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}
