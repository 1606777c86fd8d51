//! Handlers of `/ngsi-ld/v1/temporal/entities` and its sub-resources (GS CIM 009 §6.18–6.22):
//! the temporal evolution of entities, created and amended through these routes and, with the
//! `troe` setting, recorded from the entity API.

use actix_web::web::{Path, Payload};
use actix_web::{HttpRequest, HttpResponse, http::header};
use serde_json::Value;

use super::entities::{url_geo, url_selectors};
use super::error::ApiError;
use super::extract::{Accept, Params, accept, body_context, body_media, header_context, read_json, tenant};
use super::subscriptions::object_body;
use super::{State, respond};
use crate::error::NgsiError;
use crate::jsonld::Context;
use crate::ops::create_temporal_entity::Outcome;
use crate::ops::query_entities::QueryParams;
use crate::ops::query_temporal_entities::TemporalQuery;
use crate::ops::{
    append_temporal_attrs, create_temporal_entity, delete_temporal_attr, delete_temporal_entity,
    delete_temporal_instance, query_temporal_entities, retrieve_temporal_entity, update_temporal_instance,
};
use crate::render::parse_projection;
use crate::temporal::aggregate::Aggregation;
use crate::temporal::query::{TimeProperty, TimeRel, content_range, parse_last_n};
use crate::temporal::render::{self as trender, TemporalRender};

const BASE: &str = "/ngsi-ld/v1/temporal/entities";

/// The `options` the temporal read operations know.
const TEMPORAL_OPTIONS: &[&str] = &["temporalValues", "aggregatedValues", "sysAttrs", "normalized"];

/// The parameters Retrieve and Query share.
const READ_PARAMS: &[&str] = &[
    "attrs",
    "timerel",
    "timeAt",
    "endTimeAt",
    "timeproperty",
    "lastN",
    "aggrMethods",
    "aggrPeriodDuration",
    "options",
    "format",
    "datasetId",
    "pick",
    "omit",
    "lang",
    "local",
];

/// Create or Update Temporal Representation of an Entity (§5.6.11): 201 with Location when
/// created, 204 when instances were added to an existing one.
#[utoipa::path(post, path = "/ngsi-ld/v1/temporal/entities", tag = "Temporal", params(("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header (application/json bodies)")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json")), description = "Temporal entity: each attribute an array of instances"), responses((status = 201, description = "Created; Location header names the temporal entity"), (status = 204, description = "The temporal entity existed: instances added"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 415, description = "Unsupported media type"), (status = 503, description = "@context not available", body = crate::http::error::ProblemDetails)))]
pub async fn create(req: HttpRequest, payload: Payload, state: State) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &[])?;
    let media = body_media(&req, false)?;
    let t = tenant(&req, &state)?;
    let body = object_body(&req, payload, &state).await?;
    let ctx = body_context(&req, &state, media, &body).await?;
    let (id, outcome) = create_temporal_entity::run(&state.broker, &t, &body, &ctx).await?;
    if outcome == Outcome::Appended {
        return Ok(HttpResponse::NoContent().finish());
    }
    let mut resp = HttpResponse::Created();
    resp.insert_header((header::LOCATION, format!("{BASE}/{id}")));
    if !t.is_empty() {
        resp.insert_header(("NGSILD-Tenant", t));
    }
    Ok(resp.finish())
}

/// Query Temporal Evolution of Entities (§5.7.4).
#[utoipa::path(get, path = "/ngsi-ld/v1/temporal/entities", tag = "Temporal", params(("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header"), ("id" = Option<String>, Query, description = "Entity ids"), ("idPattern" = Option<String>, Query, description = "Id regular expression"), ("type" = Option<String>, Query, description = "Entity types"), ("attrs" = Option<String>, Query, description = "Attributes to return"), ("q" = Option<String>, Query, description = "NGSI-LD query: holds when one kept instance satisfies it"), ("scopeQ" = Option<String>, Query, description = "Scope filter"), ("georel" = Option<String>, Query, description = "Geo-relationship"), ("geometry" = Option<String>, Query, description = "Geometry of the geo-query"), ("coordinates" = Option<String>, Query, description = "Coordinates of the geo-query"), ("geoproperty" = Option<String>, Query, description = "GeoProperty of the geo-query"), ("timerel" = Option<String>, Query, description = "before, after or between"), ("timeAt" = Option<String>, Query, description = "DateTime the relation compares with"), ("endTimeAt" = Option<String>, Query, description = "End of a between relation"), ("timeproperty" = Option<String>, Query, description = "observedAt (default), createdAt, modifiedAt, deletedAt"), ("lastN" = Option<String>, Query, description = "Only the N most recent instances of each attribute"), ("aggrMethods" = Option<String>, Query, description = "Aggregation methods (aggregatedValues): totalCount, distinctCount, sum, avg, min, max, stddev, sumsq"), ("aggrPeriodDuration" = Option<String>, Query, description = "ISO 8601 duration of each aggregation period (default PT0S: the whole time range)"), ("options" = Option<String>, Query, description = "temporalValues, aggregatedValues, sysAttrs"), ("format" = Option<String>, Query, description = "temporalValues, aggregatedValues or normalized (wins over options)"), ("datasetId" = Option<String>, Query, description = "Instances to return (@none: the default ones)"), ("pick" = Option<String>, Query, description = "Members to keep"), ("omit" = Option<String>, Query, description = "Members to drop"), ("lang" = Option<String>, Query, description = "Language preferences for LanguageProperty"), ("orderBy" = Option<String>, Query, description = "Sort: member[;asc|;desc],..."), ("limit" = Option<String>, Query, description = "Page size (max 1000)"), ("offset" = Option<String>, Query, description = "Page offset"), ("count" = Option<String>, Query, description = "true: NGSILD-Results-Count header"), ("local" = Option<String>, Query, description = "true: no selector needed")), responses((status = 200, description = "Temporal entities", body = serde_json::Value), (status = 206, description = "Some entity's instances were cut: Content-Range says up to where", body = serde_json::Value), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Nonexistent tenant", body = crate::http::error::ProblemDetails), (status = 406, description = "Not acceptable")))]
pub async fn query(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let mut allowed = READ_PARAMS.to_vec();
    allowed.extend([
        "id",
        "idPattern",
        "type",
        "q",
        "scopeQ",
        "georel",
        "geometry",
        "coordinates",
        "geoproperty",
        "orderBy",
        "limit",
        "offset",
        "count",
    ]);
    let p = Params::parse(&req, &allowed)?;
    let acc = accept(&req, false)?;
    let t = tenant(&req, &state)?;
    let ctx = header_context(&req, &state).await?;
    let mut tq = temporal_query(&p)?;
    let opts = temporal_render(&p, &ctx, &tq, url_aggregation(&p))?;
    tq.max_instances = opts.aggregation.is_none().then_some(state.settings.temporal_max_instances);
    let page = query_temporal_entities::run(&state.broker, &t, &tq, &ctx, state.settings.page_size).await?;
    let mut resp = page_answer(&page, &tq, &ctx, acc, &opts);
    let pairs: Vec<(String, String)> =
        p.pairs().iter().filter(|(k, _)| !matches!(k.as_str(), "limit" | "offset")).cloned().collect();
    let limit = tq.params.limit.unwrap_or(state.settings.page_size);
    let next = page.more.then_some(tq.params.offset + limit);
    let media = if acc == Accept::LdJson { "application/ld+json" } else { "application/json" };
    respond::entity_page_links(&mut resp, BASE, &pairs, tq.params.offset, limit, next, media);
    Ok(resp)
}

/// Query Temporal Evolution of Entities via POST (§5.7.5): the Query body carries the
/// selectors, attrs, q, scopeQ, geoQ and temporalQ, and aggregation parameters in temporalQ or
/// `aggrParams` (§5.2.44) over those of the URL; paging, lastN and rendering stay in the URL.
#[utoipa::path(post, path = "/ngsi-ld/v1/temporal/entityOperations/query", tag = "Temporal", params(("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header (application/json bodies)"), ("lastN" = Option<String>, Query, description = "Only the N most recent instances of each attribute"), ("aggrMethods" = Option<String>, Query, description = "Aggregation methods (aggregatedValues): totalCount, distinctCount, sum, avg, min, max, stddev, sumsq"), ("aggrPeriodDuration" = Option<String>, Query, description = "ISO 8601 duration of each aggregation period (default PT0S: the whole time range)"), ("options" = Option<String>, Query, description = "temporalValues, aggregatedValues, sysAttrs"), ("format" = Option<String>, Query, description = "temporalValues, aggregatedValues or normalized (wins over options)"), ("pick" = Option<String>, Query, description = "Members to keep"), ("omit" = Option<String>, Query, description = "Members to drop"), ("limit" = Option<String>, Query, description = "Page size (max 1000)"), ("offset" = Option<String>, Query, description = "Page offset"), ("count" = Option<String>, Query, description = "true: NGSILD-Results-Count header")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json")), description = "A Query with temporalQ"), responses((status = 200, description = "Temporal entities", body = serde_json::Value), (status = 206, description = "Some entity's instances were cut: Content-Range says up to where", body = serde_json::Value), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 415, description = "Unsupported media type")))]
pub async fn query_post(req: HttpRequest, payload: Payload, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(
        &req,
        &[
            "lastN",
            "aggrMethods",
            "aggrPeriodDuration",
            "options",
            "format",
            "pick",
            "omit",
            "limit",
            "offset",
            "count",
            "local",
        ],
    )?;
    let media = body_media(&req, false)?;
    let acc = accept(&req, false)?;
    let t = tenant(&req, &state)?;
    let body = read_json(payload, state.settings.max_body_bytes).await?;
    let ctx = body_context(&req, &state, media, &body).await?;
    let (mut params, lang) = crate::ops::query_entities::from_body(&body)?;
    params.limit = p.usize("limit")?;
    params.offset = p.usize("offset")?.unwrap_or(0);
    params.count = p.bool("count")?;
    params.local = p.bool("local")?;
    let temporal = body.get("temporalQ");
    let member = |k: &str| -> Result<Option<&str>, ApiError> {
        match temporal.and_then(|q| q.get(k)) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(NgsiError::bad_data(format!("temporalQ.{k} must be a string")).into()),
        }
    };
    let timeproperty = member("timeproperty")?.map(TimeProperty::parse).transpose()?.unwrap_or_default();
    let mut tq = TemporalQuery {
        params,
        timerel: TimeRel::parse(member("timerel")?, member("timeAt")?, member("endTimeAt")?)?,
        timeproperty,
        last_n: parse_last_n(p.get("lastN"))?,
        dataset_ids: None,
        max_instances: None,
    };
    let mut aggr = url_aggregation(&p);
    // temporalQ, read last, wins over aggrParams.
    for holder in [body.get("aggrParams"), temporal] {
        if let Some(m) = holder.and_then(|h| h.get("aggrMethods")) {
            aggr.0 = Some(body_methods(m)?);
        }
        match holder.and_then(|h| h.get("aggrPeriodDuration")) {
            None => {}
            Some(Value::String(d)) => aggr.1 = Some(d.clone()),
            Some(_) => return Err(NgsiError::bad_data("aggrPeriodDuration must be a string").into()),
        }
    }
    let mut opts = temporal_render(&p, &ctx, &tq, aggr)?;
    tq.max_instances = opts.aggregation.is_none().then_some(state.settings.temporal_max_instances);
    if let Some(l) = lang {
        opts.lang = Some(crate::render::parse_lang(&l)?);
    }
    let page = query_temporal_entities::run(&state.broker, &t, &tq, &ctx, state.settings.page_size).await?;
    Ok(page_answer(&page, &tq, &ctx, acc, &opts))
}

/// The answer of a temporal query: the rendered entities, their count when asked for, and a
/// 206 with Content-Range when some entity's instances were cut.
fn page_answer(
    page: &query_temporal_entities::TemporalPage,
    tq: &TemporalQuery,
    ctx: &Context,
    acc: Accept,
    opts: &TemporalRender,
) -> HttpResponse {
    let items: Vec<Value> = page
        .views
        .iter()
        .map(|v| trender::entity(v, ctx, opts))
        .filter(|v| v.as_object().is_none_or(|m| !m.is_empty()))
        .collect();
    let mut resp = respond::rendered_list(items, ctx, acc, page.total);
    partial(&mut resp, content_range(&page.views, &tq.selection(ctx)));
    resp
}

/// Makes an answer 206 Partial Content with its Content-Range, when instances were cut.
fn partial(resp: &mut HttpResponse, range: Option<String>) {
    if let Some(r) = range
        && let Ok(v) = header::HeaderValue::from_str(&r)
    {
        *resp.status_mut() = actix_web::http::StatusCode::PARTIAL_CONTENT;
        resp.headers_mut().insert(header::CONTENT_RANGE, v);
    }
}

/// Retrieve Temporal Evolution of an Entity (§5.7.3).
#[utoipa::path(get, path = "/ngsi-ld/v1/temporal/entities/{entityId}", tag = "Temporal", params(("entityId" = String, Path, description = "Entity id (a URI)"), ("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header"), ("attrs" = Option<String>, Query, description = "Attributes to return"), ("timerel" = Option<String>, Query, description = "before, after or between"), ("timeAt" = Option<String>, Query, description = "DateTime the relation compares with"), ("endTimeAt" = Option<String>, Query, description = "End of a between relation"), ("timeproperty" = Option<String>, Query, description = "observedAt (default), createdAt, modifiedAt, deletedAt"), ("lastN" = Option<String>, Query, description = "Only the N most recent instances of each attribute"), ("aggrMethods" = Option<String>, Query, description = "Aggregation methods (aggregatedValues): totalCount, distinctCount, sum, avg, min, max, stddev, sumsq"), ("aggrPeriodDuration" = Option<String>, Query, description = "ISO 8601 duration of each aggregation period (default PT0S: the whole time range)"), ("options" = Option<String>, Query, description = "temporalValues, aggregatedValues, sysAttrs"), ("format" = Option<String>, Query, description = "temporalValues, aggregatedValues or normalized (wins over options)"), ("datasetId" = Option<String>, Query, description = "Instances to return (@none: the default ones)"), ("pick" = Option<String>, Query, description = "Members to keep"), ("omit" = Option<String>, Query, description = "Members to drop"), ("lang" = Option<String>, Query, description = "Language preferences for LanguageProperty")), responses((status = 200, description = "The temporal entity", body = serde_json::Value), (status = 206, description = "Instances were cut: Content-Range says up to where", body = serde_json::Value), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found (temporal entity, attribute or tenant)", body = crate::http::error::ProblemDetails), (status = 406, description = "Not acceptable")))]
pub async fn retrieve(req: HttpRequest, path: Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, READ_PARAMS)?;
    let acc = accept(&req, false)?;
    let t = tenant(&req, &state)?;
    let ctx = header_context(&req, &state).await?;
    let mut tq = temporal_query(&p)?;
    let opts = temporal_render(&p, &ctx, &tq, url_aggregation(&p))?;
    tq.max_instances = opts.aggregation.is_none().then_some(state.settings.temporal_max_instances);
    let sel = tq.selection(&ctx);
    let view = retrieve_temporal_entity::run(&state.broker, &t, &path, &sel).await?;
    let body = trender::entity(&view, &ctx, &opts);
    // Nothing left after pick/omit: there is no such entity to show (GS CIM 009 §4.21).
    if body.as_object().is_some_and(|m| m.is_empty()) {
        return Err(
            NgsiError::not_found(format!("temporal entity {} has no member left after pick/omit", view.id)).into()
        );
    }
    let mut resp = respond::document(body, &ctx, acc);
    partial(&mut resp, content_range(std::slice::from_ref(&view), &sel));
    Ok(resp)
}

/// Delete Temporal Representation of an Entity (§5.6.16): 204.
#[utoipa::path(delete, path = "/ngsi-ld/v1/temporal/entities/{entityId}", tag = "Temporal", params(("entityId" = String, Path, description = "Entity id (a URI)"), ("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)")), responses((status = 204, description = "Deleted"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found (temporal entity or tenant)", body = crate::http::error::ProblemDetails)))]
pub async fn delete(req: HttpRequest, path: Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &[])?;
    let t = tenant(&req, &state)?;
    delete_temporal_entity::run(&state.broker, &t, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Add Attributes to Temporal Representation of an Entity (§5.6.12): 204.
#[utoipa::path(post, path = "/ngsi-ld/v1/temporal/entities/{entityId}/attrs", tag = "Temporal", params(("entityId" = String, Path, description = "Entity id (a URI)"), ("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header (application/json bodies)")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json")), description = "Fragment: each attribute an array of instances"), responses((status = 204, description = "Instances added"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found (temporal entity or tenant)", body = crate::http::error::ProblemDetails), (status = 415, description = "Unsupported media type")))]
pub async fn append(
    req: HttpRequest,
    path: Path<String>,
    payload: Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &[])?;
    let media = body_media(&req, false)?;
    let t = tenant(&req, &state)?;
    let body = object_body(&req, payload, &state).await?;
    let ctx = body_context(&req, &state, media, &body).await?;
    append_temporal_attrs::run(&state.broker, &t, &path, &body, &ctx).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Delete Attribute from Temporal Representation of an Entity (§5.6.13): the default
/// instances, those of `datasetId`, or with `deleteAll=true` all of them; 204.
#[utoipa::path(delete, path = "/ngsi-ld/v1/temporal/entities/{entityId}/attrs/{attrId}", tag = "Temporal", params(("entityId" = String, Path, description = "Entity id (a URI)"), ("attrId" = String, Path, description = "Attribute name"), ("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header"), ("datasetId" = Option<String>, Query, description = "Instances of this datasetId"), ("deleteAll" = Option<String>, Query, description = "true: every instance")), responses((status = 204, description = "Deleted"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found (temporal entity, attribute or tenant)", body = crate::http::error::ProblemDetails)))]
pub async fn delete_attr(
    req: HttpRequest,
    path: Path<(String, String)>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    let p = Params::parse(&req, &["datasetId", "deleteAll"])?;
    let t = tenant(&req, &state)?;
    let ctx = header_context(&req, &state).await?;
    let (id, attr) = path.into_inner();
    delete_temporal_attr::run(&state.broker, &t, &id, &attr, &ctx, p.get("datasetId"), p.bool("deleteAll")?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Modify Attribute Instance in Temporal Representation of an Entity (§5.6.14): 204.
#[utoipa::path(patch, path = "/ngsi-ld/v1/temporal/entities/{entityId}/attrs/{attrId}/{instanceId}", tag = "Temporal", params(("entityId" = String, Path, description = "Entity id (a URI)"), ("attrId" = String, Path, description = "Attribute name"), ("instanceId" = String, Path, description = "Instance id (a URI)"), ("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header (application/json bodies)")), request_body(content((serde_json::Value = "application/json"), (serde_json::Value = "application/ld+json")), description = "Attribute instance fragment"), responses((status = 204, description = "Modified"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found (temporal entity, attribute, instance or tenant)", body = crate::http::error::ProblemDetails), (status = 415, description = "Unsupported media type")))]
pub async fn update_instance(
    req: HttpRequest,
    path: Path<(String, String, String)>,
    payload: Payload,
    state: State,
) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &[])?;
    let media = body_media(&req, false)?;
    let t = tenant(&req, &state)?;
    let body = read_json(payload, state.settings.max_body_bytes).await?;
    let ctx = body_context(&req, &state, media, &body).await?;
    let (id, attr, instance) = path.into_inner();
    update_temporal_instance::run(&state.broker, &t, &id, &attr, &instance, &body, &ctx).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Delete Attribute Instance from Temporal Representation of an Entity (§5.6.15): 204.
#[utoipa::path(delete, path = "/ngsi-ld/v1/temporal/entities/{entityId}/attrs/{attrId}/{instanceId}", tag = "Temporal", params(("entityId" = String, Path, description = "Entity id (a URI)"), ("attrId" = String, Path, description = "Attribute name"), ("instanceId" = String, Path, description = "Instance id (a URI)"), ("NGSILD-Tenant" = Option<String>, Header, description = "Tenant (Fiware-Service is equivalent)"), ("Link" = Option<String>, Header, description = "JSON-LD @context as a Link header")), responses((status = 204, description = "Deleted"), (status = 400, description = "Bad request data", body = crate::http::error::ProblemDetails), (status = 404, description = "Not found (temporal entity, attribute, instance or tenant)", body = crate::http::error::ProblemDetails)))]
pub async fn delete_instance(
    req: HttpRequest,
    path: Path<(String, String, String)>,
    state: State,
) -> Result<HttpResponse, ApiError> {
    Params::parse(&req, &[])?;
    let t = tenant(&req, &state)?;
    let ctx = header_context(&req, &state).await?;
    let (id, attr, instance) = path.into_inner();
    delete_temporal_instance::run(&state.broker, &t, &id, &attr, &instance, &ctx).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The entity query and the temporal selection of a GET.
fn temporal_query(p: &Params) -> Result<TemporalQuery, ApiError> {
    let params = QueryParams {
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
        ..Default::default()
    };
    Ok(TemporalQuery {
        params,
        timerel: TimeRel::parse(p.get("timerel"), p.get("timeAt"), p.get("endTimeAt"))?,
        timeproperty: p.get("timeproperty").map(TimeProperty::parse).transpose()?.unwrap_or_default(),
        last_n: parse_last_n(p.get("lastN"))?,
        dataset_ids: p.list("datasetId"),
        max_instances: None,
    })
}

/// `aggrMethods` (split on commas) and `aggrPeriodDuration` as the URL gives them.
type AggrParams = (Option<Vec<String>>, Option<String>);

fn url_aggregation(p: &Params) -> AggrParams {
    (p.list("aggrMethods"), p.get("aggrPeriodDuration").map(str::to_owned))
}

/// `aggrMethods` in a Query body (GS CIM 009 §5.2.21, §5.2.44): an array of strings or one
/// comma-separated string.
fn body_methods(v: &Value) -> Result<Vec<String>, ApiError> {
    let bad = || ApiError::from(NgsiError::bad_data("aggrMethods must be a string or an array of strings"));
    match v {
        Value::String(s) => Ok(s.split(',').map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()).collect()),
        Value::Array(a) => a.iter().map(|m| m.as_str().map(str::to_owned).ok_or_else(bad)).collect(),
        _ => Err(bad()),
    }
}

/// The rendering a read asks for: `options` and `format` (temporalValues, aggregatedValues,
/// sysAttrs; `format` wins over `options`, and aggregation methods without either ask for the
/// aggregated representation), pick/omit (or the older attrs), lang. Aggregation parameters
/// are checked whenever given.
fn temporal_render(
    p: &Params,
    ctx: &Context,
    tq: &TemporalQuery,
    aggr: AggrParams,
) -> Result<TemporalRender, ApiError> {
    let options = p.options(TEMPORAL_OPTIONS)?;
    let has = |o: &str| options.iter().any(|x| x == o);
    let (temporal_values, aggregated) = match p.get("format") {
        Some("temporalValues" | "simplified") => (true, false),
        Some("normalized") => (false, false),
        Some("aggregatedValues") => (false, true),
        Some(other) => {
            return Err(NgsiError::invalid(format!(
                "format must be normalized, temporalValues or aggregatedValues, not {other:?}"
            ))
            .into());
        }
        None if has("aggregatedValues") => (false, true),
        None if has("temporalValues") => (true, false),
        None => (false, aggr.0.is_some() && !has("normalized")),
    };
    // Aggregation parameters are refused when wrong even if another representation won.
    let parsed = match &aggr {
        (None, Some(d)) if !aggregated => {
            crate::temporal::aggregate::Duration::parse(d)?;
            None
        }
        (None, None) if !aggregated => None,
        (methods, period) => Some(Aggregation::parse(methods.as_deref(), period.as_deref())?),
    };
    let expand = |n: &str| if matches!(n, "id" | "type" | "scope") { n.to_owned() } else { ctx.expand(n) };
    let pick = p.get("pick").map(|v| parse_projection(v, &expand)).transpose()?;
    let omit = p.get("omit").map(|v| parse_projection(v, &expand)).transpose()?;
    if pick.is_some() && omit.is_some() {
        return Err(NgsiError::bad_data("pick and omit cannot be used together").into());
    }
    if p.get("attrs").is_some() && (pick.is_some() || omit.is_some()) {
        return Err(NgsiError::bad_data("attrs cannot be combined with pick or omit").into());
    }
    Ok(TemporalRender {
        temporal_values,
        aggregation: if aggregated { parsed } else { None },
        timerel: tq.timerel,
        sys_attrs: has("sysAttrs"),
        pick: pick.map(|x| x.names()),
        omit: omit.map(|x| x.leaves()),
        timeproperty: tq.timeproperty,
        lang: p.get("lang").map(crate::render::parse_lang).transpose()?,
    })
}
