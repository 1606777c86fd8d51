//! Query Entities (GS CIM 009 §5.7.2, GET /entities) and its POST form (§5.7.4,
//! /entityOperations/query): selectors (id, idPattern, type selection), attrs, `q` and
//! `scopeQ`, with stable paging and counting. The expressions are compiled by `query`, then
//! the store evaluates the filter from its indexes plus the compiled predicate.

use std::sync::Arc;

use serde_json::Value;

use super::Broker;
use crate::error::{ErrorKind, NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::Entity;
use crate::query::{EntityQuery, Selector, order, pattern, q, scope, types};

/// The largest page a client may ask for.
pub const MAX_LIMIT: usize = 1000;

/// One entity selector as given.
#[derive(Debug, Default, Clone)]
pub struct RawSelector {
    pub ids: Option<Vec<String>>,
    pub id_pattern: Option<String>,
    pub types: Option<String>,
}

/// Query parameters as given (compacted names, expressions not yet parsed).
#[derive(Debug, Default, Clone)]
pub struct QueryParams {
    pub selectors: Vec<RawSelector>,
    pub attrs: Option<Vec<String>>,
    pub q: Option<String>,
    pub scope_q: Option<String>,
    pub order_by: Option<String>,
    pub geo: Option<crate::query::geo::GeoQuery>,
    pub limit: Option<usize>,
    pub offset: usize,
    pub count: bool,
    /// `local=true` allows a query without any selector.
    pub local: bool,
}

pub struct QueryResult {
    pub entities: Vec<Arc<Entity>>,
    pub total: Option<usize>,
}

fn compile_selector(s: &RawSelector, ctx: &Context) -> NgsiResult<Selector> {
    if let Some(ids) = &s.ids {
        for id in ids {
            super::check_entity_id(id)?;
        }
    }
    let id_pattern = match &s.id_pattern {
        Some(re) => Some(
            pattern::compile(re)
                .map_err(|e| NgsiError::bad_data(format!("idPattern is not a valid regular expression: {e}")))?,
        ),
        None => None,
    };
    let types = s.types.as_deref().map(|t| types::parse(t, ctx)).transpose()?;
    Ok(Selector { ids: s.ids.clone(), id_pattern, types })
}

/// Compiles the parameters with the request's context.
pub fn compile(p: &QueryParams, ctx: &Context) -> NgsiResult<EntityQuery> {
    let selectors = p.selectors.iter().map(|s| compile_selector(s, ctx)).collect::<NgsiResult<Vec<_>>>()?;
    if let Some(attrs) = &p.attrs {
        crate::query::check_attr_names(attrs)?;
    }
    Ok(EntityQuery {
        selectors,
        attrs: p.attrs.as_ref().map(|a| a.iter().map(|x| ctx.expand(x)).collect()),
        q: p.q.as_deref().map(|src| q::compile(src, ctx)).transpose()?,
        scope: p.scope_q.as_deref().map(scope::parse).transpose()?,
        order: p.order_by.as_deref().map(|o| order::parse(o, ctx)).transpose()?,
        geo: p.geo.as_ref().map(|g| g.resolve(ctx)),
    })
}

pub async fn run(
    b: &Broker,
    tenant: &str,
    p: &QueryParams,
    ctx: &Arc<Context>,
    default_limit: usize,
    dist: &crate::forward::Dist,
) -> NgsiResult<QueryResult> {
    let query = compile(p, ctx)?;
    if !query.names_what_to_find() && !p.local {
        return Err(NgsiError::bad_data(
            "too broad query: give at least one of type, attrs, q, scopeQ, a geo-query or local=true",
        ));
    }
    let limit = p.limit.unwrap_or(default_limit);
    if limit > MAX_LIMIT {
        return Err(NgsiError::new(
            ErrorKind::TooManyResults,
            format!("limit {limit} is above the maximum of {MAX_LIMIT}"),
        ));
    }
    if limit == 0 && !p.count {
        return Err(NgsiError::bad_data("limit=0 is only allowed together with count=true"));
    }
    let forwarding = b.forwarder.active(tenant, dist);
    let types: Vec<String> = if forwarding {
        query.selectors.iter().filter_map(|s| s.types.as_ref().and_then(|t| t.candidates())).flatten().collect()
    } else {
        Vec::new()
    };
    let attrs = query.attrs.clone();
    // Results merged from several sources have no common order (§4.23: ordering applies to a
    // query this broker answers alone).
    if forwarding && query.order.is_some() {
        let op = match dist.query_body {
            Some(_) => crate::registry::registration::Op::QueryBatch,
            None => crate::registry::registration::Op::QueryEntity,
        };
        if !b.forwarder.targets(tenant, None, &types, attrs.as_deref(), op).is_empty() {
            return Err(NgsiError::bad_data(
                "orderBy cannot be applied to a distributed query: add local=true to order this broker's entities",
            ));
        }
    }
    if !forwarding {
        b.require_tenant(tenant).await?;
    }
    let page = match b.store.tenant_exists(tenant).await? {
        true => b.store.query(tenant, &query.into_filter(), p.offset, limit, p.count).await?,
        false => crate::store::Page::default(),
    };
    // Context sources registered for these types answer the same query (§4.3.6).
    let entities = if forwarding {
        b.forwarder.query(dist, tenant, &types, attrs.as_deref(), page.entities, limit, ctx).await
    } else {
        page.entities
    };
    Ok(QueryResult { entities, total: page.total })
}

/// Reads a Query body (§5.2.23) into parameters; returns them with the projection the body asks
/// for (`attrs`) and its `lang`.
pub fn from_body(body: &Value) -> NgsiResult<(QueryParams, Option<String>)> {
    let obj = body.as_object().ok_or_else(|| NgsiError::bad_data("a Query must be a JSON object"))?;
    match obj.get("type").and_then(Value::as_str) {
        Some("Query") | Some("https://uri.etsi.org/ngsi-ld/Query") => {}
        _ => return Err(NgsiError::bad_data("a Query body needs \"type\": \"Query\"")),
    }
    let mut p = QueryParams::default();
    if let Some(entities) = obj.get("entities") {
        let list = entities.as_array().ok_or_else(|| NgsiError::bad_data("entities must be an array"))?;
        for item in list {
            let o = item.as_object().ok_or_else(|| NgsiError::bad_data("an entity selector must be an object"))?;
            let text = |k: &str| -> NgsiResult<Option<String>> {
                match o.get(k) {
                    None => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(_) => Err(NgsiError::bad_data(format!("entity selector member {k} must be a string"))),
                }
            };
            let sel =
                RawSelector { ids: text("id")?.map(|i| vec![i]), id_pattern: text("idPattern")?, types: text("type")? };
            if sel.types.is_none() && sel.ids.is_none() && sel.id_pattern.is_none() {
                return Err(NgsiError::bad_data("an entity selector needs id, idPattern or type"));
            }
            p.selectors.push(sel);
        }
    }
    if let Some(a) = obj.get("attrs") {
        let list = a.as_array().ok_or_else(|| NgsiError::bad_data("attrs must be an array of names"))?;
        let names = list
            .iter()
            .map(|x| {
                x.as_str().map(str::to_owned).ok_or_else(|| NgsiError::bad_data("attrs must be an array of names"))
            })
            .collect::<NgsiResult<Vec<_>>>()?;
        p.attrs = Some(names);
    }
    let text = |k: &str| -> NgsiResult<Option<String>> {
        match obj.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(NgsiError::bad_data(format!("{k} must be a string"))),
        }
    };
    p.q = text("q")?;
    p.scope_q = text("scopeQ")?;
    let lang = text("lang")?;
    if let Some(g) = obj.get("geoQ") {
        p.geo = Some(crate::query::geo::from_json(g)?);
    }
    Ok((p, lang))
}

/// Reads the URL geo-query parameters: all of georel, geometry and coordinates, or none.
pub fn geo_from_params(
    georel: Option<&str>,
    geometry: Option<&str>,
    coordinates: Option<&str>,
    geoproperty: Option<&str>,
) -> NgsiResult<Option<crate::query::geo::GeoQuery>> {
    match (georel, geometry, coordinates) {
        (None, None, None) => Ok(None),
        (Some(r), Some(g), Some(c)) => Ok(Some(crate::query::geo::parse(r, g, c, geoproperty)?)),
        _ => Err(NgsiError::bad_data("a geo-query needs georel, geometry and coordinates together")),
    }
}
