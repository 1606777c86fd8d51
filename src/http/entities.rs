//! Handlers of `/ngsi-ld/v1/entities` and `/ngsi-ld/v1/entities/{entityId}`
//! (GS CIM 009 §6.4 and §6.5).

use actix_web::web::{Path, Payload};
use actix_web::{HttpRequest, HttpResponse, http::header};

use serde_json::Value;

use super::error::ApiError;
use super::extract::{
    Accept, Params, accept, body_context, body_media, element_error, header_context, read_body, read_json,
    reads_as_text, tenant,
};
use super::{State, respond};
use crate::error::NgsiError;
use crate::model::text::Element;
use crate::ops::purge_entities::Purge;
use crate::ops::query_entities::{QueryParams, RawSelector};
use crate::ops::{
    create_entity, delete_entity, merge_entity, purge_entities, query_entities, replace_entity, retrieve_entity,
};
use crate::render::{self, Join};

/// Create Entity (§5.6.1): 201 with Location.
#[utoipa::path(post, path = "/ngsi-ld/v1/entities", tag = "Entities", params(("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header (application/json bodies and GETs)")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json")), description = "NGSI-LD entity (normalized or concise)"), responses((status = 201, description = "Created; Location header names the entity"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 409, description = "Already exists", body = crate::http::error::ProblemDetails), (status = 415, description = "Unsupported media type")))]
pub async fn create(req: HttpRequest, payload: Payload, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["local"])?;
    let media = body_media(&req, false)?;
    let t = tenant(&req, &state)?;
    let bytes = read_body(payload, state.settings.max_body_bytes).await?;
    let not_object = || NgsiError::invalid("the body of Create Entity must be a JSON object");
    // An application/json body for a tenant with no context sources is read straight into the
    // model (model::text); anything else is parsed first.
    if reads_as_text(&req, &state, media, &t) {
        let item: Element = serde_json::from_slice(&bytes).map_err(NgsiError::not_json)?;
        if matches!(item, Element::Other) {
            return Err(not_object().into());
        }
        let ctx = header_context(&req, &state).await.map_err(element_error);
        super::extract::dist(&req, &state, p.bool("local")?)?;
        let id = create_entity::run_json(&state.broker, &t, &item, &ctx).await?;
        return Ok(created_response(&id, t));
    }
    let body: Value = serde_json::from_slice(&bytes).map_err(NgsiError::not_json)?;
    if !body.is_object() {
        return Err(not_object().into());
    }
    let ctx = body_context(&req, &state, media, &body).await?;
    let dist = super::extract::dist(&req, &state, p.bool("local")?)?;
    let created = create_entity::run(&state.broker, &t, &body, &ctx, &dist).await?;
    if !created.errors.is_empty() {
        // A distributed create that partly failed: a BatchOperationResult for the one entity.
        let out = crate::ops::BatchOutcome {
            success: if created.succeeded { vec![created.id.clone()] } else { Vec::new() },
            created: Vec::new(),
            errors: created.errors.into_iter().map(|e| (created.id.clone(), e)).collect(),
        };
        return Ok(respond::batch_207(&out));
    }
    Ok(created_response(&created.id, t))
}

/// 201 naming the new entity (and its tenant).
fn created_response(id: &str, t: String) -> HttpResponse {
    let mut resp = HttpResponse::Created();
    resp.insert_header((header::LOCATION, format!("/ngsi-ld/v1/entities/{id}")));
    if !t.is_empty() {
        resp.insert_header(("NGSILD-Tenant", t));
    }
    resp.finish()
}

/// Query Entities (§5.7.2).
#[utoipa::path(get, path = "/ngsi-ld/v1/entities", tag = "Entities", params(("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header (application/json bodies and GETs)"), ("id" = Option<String>, Query, description = "Entity ids"), ("idPattern" = Option<String>, Query, description = "Id regular expression"), ("type" = Option<String>, Query, description = "Entity types"), ("limit" = Option<String>, Query, description = "Page size (max 1000)"), ("offset" = Option<String>, Query, description = "Page offset"), ("count" = Option<String>, Query, description = "true: NGSILD-Results-Count header"), ("local" = Option<String>, Query, description = "true: no selector needed"), ("attrs" = Option<String>, Query, description = "Attributes to return"), ("pick" = Option<String>, Query, description = "Members to keep"), ("omit" = Option<String>, Query, description = "Members to drop"), ("options" = Option<String>, Query, description = "keyValues, concise, sysAttrs"), ("format" = Option<String>, Query, description = "normalized, concise, keyValues"), ("lang" = Option<String>, Query, description = "Language preferences for LanguageProperty"), ("datasetId" = Option<String>, Query, description = "Instances to return"), ("geometryProperty" = Option<String>, Query, description = "GeoProperty used as GeoJSON geometry"), ("q" = Option<String>, Query, description = "NGSI-LD query language filter"), ("scopeQ" = Option<String>, Query, description = "Scope filter"), ("orderBy" = Option<String>, Query, description = "Sort: member[;asc|;desc],..."), ("georel" = Option<String>, Query, description = "near;maxDistance==d, within, contains, intersects, overlaps, equals, disjoint"), ("geometry" = Option<String>, Query, description = "Point, MultiPoint, LineString, MultiLineString, Polygon, MultiPolygon"), ("coordinates" = Option<String>, Query, description = "GeoJSON coordinates (JSON)"), ("geoproperty" = Option<String>, Query, description = "GeoProperty to test (default location)"), ("csf" = Option<String>, Query, description = "Context source filter: only sources whose registration satisfies it are asked"), ("splitEntities" = Option<String>, Query, description = "true: q and scopeQ are applied to the merged entities, not sent to sources"), ("entityMap" = Option<String>, Query, description = "true: make an entity map of every match (201, NGSILD-EntityMap header); else the id of a map to walk"), ("entityMapLifetime" = Option<String>, Query, description = "ISO 8601 duration of a map made by this query"), ("NGSILD-EntityMap" = Option<String>, Header, description = "An entity map (its URI or id) whose entities the query pages through")), responses((status = 200, description = "Entities", body = serde_json::Value), (status = 201, description = "Entities; a new entity map named by the NGSILD-EntityMap header", body = serde_json::Value), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 403, description = "Too many results", body = crate::http::error::ProblemDetails)))]
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
            "q",
            "scopeQ",
            "csf",
            "splitEntities",
            "orderBy",
            "georel",
            "geometry",
            "coordinates",
            "geoproperty",
            "join",
            "joinLevel",
            "containedBy",
            "entityMap",
            "entityMapLifetime",
        ],
    )?;
    let acc = accept(&req, true)?;
    let t = tenant(&req, &state)?;
    let ctx = header_context(&req, &state).await?;
    let opts = respond::render_opts(&p, &ctx)?;
    let params = url_query_params(&p)?;
    let dist = super::extract::dist(&req, &state, params.local)?;
    if let Some(map) = super::entity_maps::map_use(&req, &p)? {
        let r =
            query_entities::run_mapped(&state.broker, &t, &params, &ctx, state.settings.page_size, &dist, &map).await?;
        let mut resp = with_linked(&state, &t, &r.entities, &ctx, acc, opts, r.total).await?;
        mark_mapped(&req, &mut resp, &r);
        page_links(&mut resp, &p, &params, limit_of(&params, &state), r.more, Some(&r.map_id), acc);
        return Ok(resp);
    }
    let r = query_entities::run(&state.broker, &t, &params, &ctx, state.settings.page_size, &dist).await?;
    let mut resp = with_linked(&state, &t, &r.entities, &ctx, acc, opts, r.total).await?;
    page_links(&mut resp, &p, &params, limit_of(&params, &state), r.more, None, acc);
    Ok(resp)
}

fn limit_of(params: &QueryParams, state: &State) -> usize {
    params.limit.unwrap_or(state.settings.page_size)
}

/// The `prev` and `next` links of a page of a GET query: the query as given, with the entity
/// map it walks named by its id (never `entityMap=true`, which would make another map).
fn page_links(
    resp: &mut HttpResponse,
    p: &Params,
    params: &QueryParams,
    limit: usize,
    more: bool,
    map_id: Option<&str>,
    acc: Accept,
) {
    let mut pairs: Vec<(String, String)> = p
        .pairs()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "limit" | "offset" | "entityMap" | "entityMapLifetime"))
        .cloned()
        .collect();
    if let Some(id) = map_id {
        pairs.push(("entityMap".to_owned(), id.to_owned()));
    }
    let media = match acc {
        Accept::Json => "application/json",
        Accept::LdJson => "application/ld+json",
        Accept::GeoJson => "application/geo+json",
    };
    let next = more.then_some(params.offset + limit);
    respond::entity_page_links(resp, "/ngsi-ld/v1/entities", &pairs, params.offset, limit, next, media);
}

/// Marks the answer of a query over an entity map: 201 when the map is new, and the map's URI
/// in the `NGSILD-EntityMap` header.
fn mark_mapped(req: &HttpRequest, resp: &mut HttpResponse, r: &query_entities::MappedResult) {
    if r.created {
        *resp.status_mut() = actix_web::http::StatusCode::CREATED;
    }
    if let Ok(v) = header::HeaderValue::from_str(&super::entity_maps::location(req, &r.map_id)) {
        resp.headers_mut().insert(header::HeaderName::from_static("ngsild-entitymap"), v);
    }
}

/// The query of a GET query string (selectors, attrs, q, scopeQ, orderBy, geo-query, paging).
pub(super) fn url_query_params(p: &Params) -> Result<QueryParams, ApiError> {
    Ok(QueryParams {
        selectors: url_selectors(p),
        attrs: p.list("attrs"),
        q: p.get("q").map(str::to_owned),
        scope_q: p.get("scopeQ").map(str::to_owned),
        order_by: p.get("orderBy").map(str::to_owned),
        geo: url_geo(p)?,
        limit: p.usize("limit")?,
        offset: p.usize("offset")?.unwrap_or(0),
        count: p.bool("count")?,
        local: p.bool("local")?,
        entity_map_lifetime: p.get("entityMapLifetime").map(str::to_owned),
        csf: p.get("csf").map(str::to_owned),
        split_entities: p.bool("splitEntities")?,
    })
}

/// Answers a query, joining in linked entities when `join` asks for them (GS CIM 009
/// §4.5.23): inline inside the relationships, or flat after the matched entities.
async fn with_linked(
    state: &State,
    tenant: &str,
    entities: &[std::sync::Arc<crate::model::Entity>],
    ctx: &crate::jsonld::Context,
    acc: Accept,
    mut opts: render::RenderOpts,
    total: Option<usize>,
) -> Result<HttpResponse, ApiError> {
    let roots: Vec<&crate::model::Entity> = entities.iter().map(|e| e.as_ref()).collect();
    if opts.join.is_some() {
        let linked =
            retrieve_entity::linked(state.broker.store.as_ref(), tenant, &roots, opts.join_level, &opts.contained_by)
                .await?;
        opts.linked = Some(std::sync::Arc::new(linked));
    }
    if opts.join == Some(Join::Flat) && acc != Accept::GeoJson {
        return Ok(respond::rendered_list(render::flat(&roots, ctx, &opts), ctx, acc, total));
    }
    Ok(respond::entities(entities, ctx, acc, &opts, total))
}

/// Retrieve Entity (§5.7.1).
#[utoipa::path(get, path = "/ngsi-ld/v1/entities/{entityId}", tag = "Entities", params(("entityId" = String, Path, description = "Entity id (a URI)"), ("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header (application/json bodies and GETs)"), ("attrs" = Option<String>, Query, description = "Attributes to return"), ("pick" = Option<String>, Query, description = "Members to keep"), ("omit" = Option<String>, Query, description = "Members to drop"), ("options" = Option<String>, Query, description = "keyValues, concise, sysAttrs"), ("format" = Option<String>, Query, description = "normalized, concise, keyValues"), ("lang" = Option<String>, Query, description = "Language preferences for LanguageProperty"), ("datasetId" = Option<String>, Query, description = "Instances to return"), ("geometryProperty" = Option<String>, Query, description = "GeoProperty used as GeoJSON geometry"), ("entityMap" = Option<String>, Query, description = "true: make an entity map holding the entity (NGSILD-EntityMap header)"), ("entityMapLifetime" = Option<String>, Query, description = "ISO 8601 duration of a map made by this request"), ("NGSILD-EntityMap" = Option<String>, Header, description = "An entity map (its URI or id): echoed when live, replaced when not")), responses((status = 200, description = "The entity", body = serde_json::Value), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found (entity, attribute or tenant)", body = crate::http::error::ProblemDetails), (status = 406, description = "Not acceptable")))]
pub async fn retrieve(req: HttpRequest, path: Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(
        &req,
        &[
            "attrs",
            "pick",
            "omit",
            "options",
            "format",
            "lang",
            "datasetId",
            "geometryProperty",
            "type",
            "local",
            "join",
            "joinLevel",
            "containedBy",
            "entityMap",
            "entityMapLifetime",
        ],
    )?;
    let acc = accept(&req, true)?;
    let t = tenant(&req, &state)?;
    let ctx = header_context(&req, &state).await?;
    let opts = respond::render_opts(&p, &ctx)?;
    let dist = super::extract::dist(&req, &state, p.bool("local")?)?;
    let e = retrieve_entity::run(&state.broker, &t, &path, &ctx, &dist).await?;
    let map = match super::entity_maps::map_use(&req, &p)? {
        Some(m) => {
            Some(retrieve_entity::entity_map(&state.broker, &t, &e, &dist, &m, p.get("entityMapLifetime")).await?)
        }
        None => None,
    };
    let mut resp = retrieve_answer(&p, &path, &t, &state, e, &ctx, acc, opts).await?;
    if let Some(id) = map
        && let Ok(v) = header::HeaderValue::from_str(&super::entity_maps::location(&req, &id))
    {
        resp.headers_mut().insert(header::HeaderName::from_static("ngsild-entitymap"), v);
    }
    Ok(resp)
}

/// The answer of Retrieve Entity once the entity is found: type check, linked entities,
/// projection.
#[allow(clippy::too_many_arguments)]
async fn retrieve_answer(
    p: &Params,
    path: &str,
    t: &str,
    state: &State,
    e: std::sync::Arc<crate::model::Entity>,
    ctx: &crate::jsonld::Context,
    acc: Accept,
    opts: render::RenderOpts,
) -> Result<HttpResponse, ApiError> {
    if let Some(types) = p.list("type") {
        let wanted: Vec<String> = types.iter().map(|x| ctx.expand(x)).collect();
        if !wanted.iter().any(|t| e.has_type(t)) {
            return Err(crate::ops::entity_not_found(path).into());
        }
    }
    let mut opts = opts;
    if opts.join.is_some() {
        let linked =
            retrieve_entity::linked(state.broker.store.as_ref(), t, &[e.as_ref()], opts.join_level, &opts.contained_by)
                .await?;
        opts.linked = Some(std::sync::Arc::new(linked));
    }
    if opts.join == Some(Join::Flat) && acc != Accept::GeoJson {
        let list = render::flat(&[e.as_ref()], ctx, &opts);
        // Without any linked entity found, the answer is the entity itself (ETSI 018_14_02).
        if list.len() > 1 {
            return Ok(respond::rendered_list(list, ctx, acc, None));
        }
        opts.join = None;
    }
    // attrs naming no attribute the entity has selects nothing (GS CIM 009 §5.7.1.4).
    if let Some(attrs) = p.list("attrs")
        && !attrs.iter().any(|a| e.attrs.contains_key(ctx.expand(a).as_str()))
    {
        return Err(
            NgsiError::not_found(format!("entity {} has none of the attributes {}", e.id, attrs.join(","))).into()
        );
    }
    // Nothing left after pick/omit: there is no such entity to show (GS CIM 009 §4.21).
    if (opts.pick.is_some() || opts.omit.is_some())
        && render::entity(&e, ctx, &opts).as_object().is_some_and(|m| m.is_empty())
    {
        return Err(NgsiError::not_found(format!("entity {} has no member left after pick/omit", e.id)).into());
    }
    Ok(respond::entity(&e, ctx, acc, &opts))
}

/// Replace Entity (§5.6.18): 204.
#[utoipa::path(put, path = "/ngsi-ld/v1/entities/{entityId}", tag = "Entities", params(("entityId" = String, Path, description = "Entity id (a URI)"), ("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header (application/json bodies and GETs)")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json")), description = "NGSI-LD entity (normalized or concise)"), responses((status = 204, description = "Replaced"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found (entity, attribute or tenant)", body = crate::http::error::ProblemDetails)))]
pub async fn replace(
    req: HttpRequest,
    path: Path<String>,
    payload: Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["type", "local"])?;
    let media = body_media(&req, false)?;
    let t = tenant(&req, &state)?;
    let body = read_json(payload, state.settings.max_body_bytes).await?;
    let ctx = body_context(&req, &state, media, &body).await?;
    let dist = super::extract::dist(&req, &state, p.bool("local")?)?;
    replace_entity::run(&state.broker, &t, &path, &body, &ctx, &dist).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Merge Entity (§5.6.17): 204; accepts application/merge-patch+json.
#[utoipa::path(patch, path = "/ngsi-ld/v1/entities/{entityId}", tag = "Entities", params(("entityId" = String, Path, description = "Entity id (a URI)"), ("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header (application/json bodies and GETs)")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json"), (serde_json::Value = "application/merge-patch+json")), description = "Entity fragment"), responses((status = 204, description = "Merged"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found (entity, attribute or tenant)", body = crate::http::error::ProblemDetails)))]
pub async fn merge(
    req: HttpRequest,
    path: Path<String>,
    payload: Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["type", "options", "observedAt", "format", "local"])?;
    let media = body_media(&req, true)?;
    let t = tenant(&req, &state)?;
    let body = read_json(payload, state.settings.max_body_bytes).await?;
    let ctx = body_context(&req, &state, media, &body).await?;
    let dist = super::extract::dist(&req, &state, p.bool("local")?)?;
    merge_entity::run(&state.broker, &t, &path, &body, &ctx, &dist).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Delete Entity (§5.6.6): 204.
#[utoipa::path(delete, path = "/ngsi-ld/v1/entities/{entityId}", tag = "Entities", params(("entityId" = String, Path, description = "Entity id (a URI)"), ("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)")), responses((status = 204, description = "Deleted"), (status = 207, description = "Distributed: some parts failed", body = serde_json::Value), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found (entity, attribute or tenant)", body = crate::http::error::ProblemDetails)))]
pub async fn delete(req: HttpRequest, path: Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["type", "local"])?;
    let t = tenant(&req, &state)?;
    let dist = super::extract::dist(&req, &state, p.bool("local")?)?;
    let failed = delete_entity::run(&state.broker, &t, &path, &dist).await?;
    Ok(respond::parts(&path, failed))
}

/// Query Entities via POST (§5.7.4): the Query body carries selectors, attrs, q and scopeQ;
/// paging and rendering options stay in the URL.
#[utoipa::path(post, path = "/ngsi-ld/v1/entityOperations/query", tag = "Entities", params(("NGSILD-Tenant" = Option<String>, Header, description = "Tenant"), ("limit" = Option<String>, Query, description = "Page size (max 1000)"), ("offset" = Option<String>, Query, description = "Page offset"), ("count" = Option<String>, Query, description = "true: NGSILD-Results-Count header"), ("options" = Option<String>, Query, description = "keyValues, concise, sysAttrs"), ("format" = Option<String>, Query, description = "normalized, concise, keyValues"), ("entityMap" = Option<String>, Query, description = "true: make an entity map of every match (201, NGSILD-EntityMap header); else the id of a map to walk"), ("entityMapLifetime" = Option<String>, Query, description = "ISO 8601 duration of a map made by this query"), ("NGSILD-EntityMap" = Option<String>, Header, description = "An entity map (its URI or id) whose entities the query pages through")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json")), description = "A Query"), responses((status = 200, description = "Entities", body = serde_json::Value), (status = 201, description = "Entities; a new entity map named by the NGSILD-EntityMap header", body = serde_json::Value), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails)))]
pub async fn query_post(req: HttpRequest, payload: Payload, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(
        &req,
        &[
            "limit",
            "offset",
            "count",
            "options",
            "format",
            "local",
            "geometryProperty",
            "pick",
            "omit",
            "entityMap",
            "entityMapLifetime",
        ],
    )?;
    let media = body_media(&req, false)?;
    let acc = accept(&req, true)?;
    let t = tenant(&req, &state)?;
    let body = read_json(payload, state.settings.max_body_bytes).await?;
    let ctx = body_context(&req, &state, media, &body).await?;
    let mut opts = respond::render_opts(&p, &ctx)?;
    let (mut params, lang) = query_entities::from_body(&body)?;
    if let Some(l) = lang {
        opts.lang = Some(render::parse_lang(&l)?);
    }
    if let Some(attrs) = &params.attrs {
        let mut keep: std::collections::HashSet<String> = attrs.iter().map(|a| ctx.expand(a)).collect();
        keep.extend(["id".to_owned(), "type".to_owned(), "scope".to_owned()]);
        opts.pick = Some(keep);
    }
    params.limit = p.usize("limit")?;
    params.offset = p.usize("offset")?.unwrap_or(0);
    params.count = p.bool("count")?;
    params.order_by = p.get("orderBy").map(str::to_owned);
    params.local = true;
    // A Query may ask for linked entities with its join and joinLevel members.
    match body.get("join").and_then(Value::as_str) {
        None | Some("@none") => {}
        Some("inline") => opts.join = Some(Join::Inline),
        Some("flat") => opts.join = Some(Join::Flat),
        Some(other) => {
            return Err(NgsiError::bad_data(format!("join must be flat, inline or @none, not {other:?}")).into());
        }
    }
    if let Some(level) = body.get("joinLevel") {
        opts.join_level = level
            .as_u64()
            .filter(|n| *n >= 1)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| NgsiError::bad_data("joinLevel must be a positive integer"))?;
    }
    // Distributed as a queryBatch unless local=true (`params.local` only lifts the selector rule).
    let mut dist = super::extract::dist(&req, &state, p.bool("local")?)?;
    dist.query_body = Some(body);
    // An entity map over a POSTed query holds the broker's own entities (sources are asked
    // for map entries with GET queries, which a Query body does not translate into).
    if let Some(map) = super::entity_maps::map_use(&req, &p)? {
        params.entity_map_lifetime = p.get("entityMapLifetime").map(str::to_owned);
        let r =
            query_entities::run_mapped(&state.broker, &t, &params, &ctx, state.settings.page_size, &dist, &map).await?;
        let mut resp = with_linked(&state, &t, &r.entities, &ctx, acc, opts, r.total).await?;
        mark_mapped(&req, &mut resp, &r);
        return Ok(resp);
    }
    let r = query_entities::run(&state.broker, &t, &params, &ctx, state.settings.page_size, &dist).await?;
    with_linked(&state, &t, &r.entities, &ctx, acc, opts, r.total).await
}

/// Purge Entities (§5.6.21): deletes what the query matches, or drops/keeps attributes.
#[utoipa::path(delete, path = "/ngsi-ld/v1/entities", tag = "Entities", params(("NGSILD-Tenant" = Option<String>, Header, description = "Tenant"), ("id" = Option<String>, Query, description = "Entity ids"), ("idPattern" = Option<String>, Query, description = "Id regular expression"), ("type" = Option<String>, Query, description = "Entity types"), ("q" = Option<String>, Query, description = "Query language filter"), ("scopeQ" = Option<String>, Query, description = "Scope filter"), ("drop" = Option<String>, Query, description = "Attributes to remove instead of deleting entities"), ("keep" = Option<String>, Query, description = "Attributes to keep (others are removed)"), ("local" = Option<String>, Query, description = "true: purge without a selector")), responses((status = 204, description = "Purged"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails)))]
pub async fn purge(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(
        &req,
        &[
            "id",
            "idPattern",
            "type",
            "attrs",
            "q",
            "scopeQ",
            "keep",
            "drop",
            "local",
            "georel",
            "geometry",
            "coordinates",
            "geoproperty",
        ],
    )?;
    let t = tenant(&req, &state)?;
    let ctx = header_context(&req, &state).await?;
    let expand = |l: Vec<String>| l.iter().map(|a| ctx.expand(a)).collect::<Vec<_>>();
    let what = match (p.list("drop"), p.list("keep")) {
        (Some(_), Some(_)) => {
            return Err(crate::error::NgsiError::bad_data("keep and drop cannot be used together").into());
        }
        (Some(d), None) => Purge::Drop(expand(d)),
        (None, Some(k)) => Purge::Keep(expand(k)),
        (None, None) => Purge::Delete,
    };
    let params = QueryParams {
        selectors: url_selectors(&p),
        attrs: p.list("attrs"),
        q: p.get("q").map(str::to_owned),
        scope_q: p.get("scopeQ").map(str::to_owned),
        geo: url_geo(&p)?,
        local: p.bool("local")?,
        ..Default::default()
    };
    let dist = super::extract::dist(&req, &state, params.local)?;
    let n = purge_entities::run(&state.broker, &t, &params, &ctx, what, &dist).await?;
    tracing::info!(tenant = %t, entities = n, "purged");
    Ok(HttpResponse::NoContent().insert_header(("NGSILD-Results-Count", n.to_string())).finish())
}

/// The entity selector of a GET/DELETE query string (id, idPattern, type), if any.
pub(super) fn url_selectors(p: &Params) -> Vec<RawSelector> {
    if p.get("id").is_none() && p.get("idPattern").is_none() && p.get("type").is_none() {
        return Vec::new();
    }
    vec![RawSelector {
        ids: p.list("id"),
        id_pattern: p.get("idPattern").map(str::to_owned),
        types: p.get("type").map(str::to_owned),
    }]
}

pub(super) fn url_geo(p: &Params) -> Result<Option<crate::query::geo::GeoQuery>, ApiError> {
    Ok(query_entities::geo_from_params(p.get("georel"), p.get("geometry"), p.get("coordinates"), p.get("geoproperty"))?)
}
