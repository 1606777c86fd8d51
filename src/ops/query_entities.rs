//! Query Entities (GS CIM 009 §5.7.2, GET /entities) and its POST form (§5.7.4,
//! /entityOperations/query): selectors (id, idPattern, type selection), attrs, `q` and
//! `scopeQ`, with stable paging and counting. The expressions are compiled by `query`, then
//! the store evaluates the filter from its indexes plus the compiled predicate. A query may
//! also make or walk an entity map (§5.5.9.3), whose ids then are the candidates.

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
    /// `entityMapLifetime`: how long an entity map made by this query lives (ISO 8601 duration).
    pub entity_map_lifetime: Option<String>,
    /// `csf`: only context sources whose registration satisfies it are asked (§5.7.2.4).
    pub csf: Option<String>,
    /// `splitEntities=true`: sources may hold parts of an entity, so `q` and `scopeQ` are not
    /// sent to them but applied to the merged entities (§5.7.2.4).
    pub split_entities: bool,
}

pub struct QueryResult {
    pub entities: Vec<Arc<Entity>>,
    pub total: Option<usize>,
    /// Whether the broker holds matches after this page.
    pub more: bool,
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

/// A compiled query with what running it needs.
struct Prepared {
    filter: crate::store::EntityFilter,
    /// Candidate types (expanded) to match registrations with, when forwarding.
    types: Vec<String>,
    attrs: Option<Vec<String>>,
    limit: usize,
    forwarding: bool,
    /// With `splitEntities`, the `q` and `scopeQ` the merged entities must satisfy.
    split: Option<(Option<crate::query::q::Query>, Option<crate::query::scope::ScopeQ>)>,
}

/// Compiles and checks a query: too broad (unless `fixed`, when an entity map fixes the
/// candidates), a page too large, `limit=0` without `count`.
async fn prepare(
    b: &Broker,
    tenant: &str,
    p: &QueryParams,
    ctx: &Arc<Context>,
    default_limit: usize,
    dist: &crate::forward::Dist,
    fixed: bool,
) -> NgsiResult<Prepared> {
    let query = compile(p, ctx)?;
    if !fixed && !query.names_what_to_find() && !p.local {
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
    let split = (forwarding && p.split_entities).then(|| (query.q.clone(), query.scope.clone()));
    Ok(Prepared { filter: query.into_filter(), types, attrs, limit, forwarding, split })
}

pub async fn run(
    b: &Broker,
    tenant: &str,
    p: &QueryParams,
    ctx: &Arc<Context>,
    default_limit: usize,
    dist: &crate::forward::Dist,
) -> NgsiResult<QueryResult> {
    let q = prepare(b, tenant, p, ctx, default_limit, dist, false).await?;
    // One match more than the page tells whether another page follows.
    let probe = if q.limit == 0 { 0 } else { q.limit + 1 };
    let mut page = match b.store.tenant_exists(tenant).await? {
        true => b.store.query(tenant, &q.filter, p.offset, probe, p.count).await?,
        false => crate::store::Page::default(),
    };
    let more = page.entities.len() > q.limit;
    page.entities.truncate(q.limit);
    // Context sources registered for these types answer the same query (§4.3.6).
    let entities = if q.forwarding {
        let dist = with_source_filters(p, ctx, dist)?;
        let mut merged =
            b.forwarder.query(&dist, tenant, &q.types, q.attrs.as_deref(), page.entities, q.limit, ctx).await;
        if let Some((qq, scope)) = &q.split {
            merged.retain(|e| {
                qq.as_ref().is_none_or(|qq| qq.matches(e)) && scope.as_ref().is_none_or(|s| s.matches(e.scopes()))
            });
        }
        merged
    } else {
        page.entities
    };
    Ok(QueryResult { entities, total: page.total, more })
}

/// The request's distribution with its `csf` compiled and its `splitEntities` flag (§5.7.2.4).
fn with_source_filters(
    p: &QueryParams,
    ctx: &Context,
    dist: &crate::forward::Dist,
) -> NgsiResult<crate::forward::Dist> {
    let mut d = dist.clone();
    d.csf = p.csf.as_deref().map(|src| q::compile(src, ctx)).transpose()?.map(Arc::new);
    d.split_entities = p.split_entities;
    Ok(d)
}

/// How a query uses an entity map (§5.5.9.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapUse {
    /// `entityMap=true`: make a map of every match and answer its first page.
    Create,
    /// A map the client presents (its id): walk it, or make a new one when it is unknown or
    /// expired.
    Walk(String),
}

/// A page of a query over an entity map.
pub struct MappedResult {
    pub entities: Vec<Arc<Entity>>,
    pub total: Option<usize>,
    /// The map walked.
    pub map_id: String,
    /// Whether the map was made by this request.
    pub created: bool,
    /// Whether candidates are left after this page.
    pub more: bool,
}

/// Makes an entity map of every entity the query matches, here (`@none`) and at the context
/// sources registered for it (their registration ids), in the query's order.
pub async fn make_map(
    b: &Broker,
    tenant: &str,
    p: &QueryParams,
    ctx: &Arc<Context>,
    dist: &crate::forward::Dist,
) -> NgsiResult<crate::entity_maps::EntityMap> {
    let lifetime = p.entity_map_lifetime.as_deref().map(crate::entity_maps::parse_duration).transpose()?;
    // The map holds every match: the page size of the query does not apply here.
    let mut whole = p.clone();
    whole.limit = Some(1);
    whole.count = false;
    let q = prepare(b, tenant, &whole, ctx, 1, dist, false).await?;
    let max = b.entity_maps.settings.max_ids;
    let too_many = || {
        NgsiError::new(
            ErrorKind::TooManyResults,
            format!("the query matches more than {max} entities, the most an entity map holds"),
        )
    };
    let local = match b.store.tenant_exists(tenant).await? {
        true => b.store.query(tenant, &q.filter, 0, max + 1, false).await?.entities,
        false => Vec::new(),
    };
    if local.len() > max {
        return Err(too_many());
    }
    let mut entries: indexmap::IndexMap<String, Vec<String>> =
        local.iter().map(|e| (e.id.to_string(), vec![crate::entity_maps::LOCAL.to_owned()])).collect();
    if q.forwarding {
        for (reg, ids) in b.forwarder.query_ids(dist, tenant, &q.types, q.attrs.as_deref(), ctx, max).await {
            for id in ids {
                entries.entry(id).or_default().push(reg.clone());
            }
        }
    }
    if entries.len() > max {
        return Err(too_many());
    }
    Ok(b.entity_maps.insert(tenant, entries, serde_json::Map::new(), lifetime))
}

/// What checking one map entry found.
enum Verdict {
    /// Still matching: the entity (merged from its holders) and the holders that answered it.
    Match(Arc<Entity>, Vec<String>),
    /// No holder has it matching any more: it leaves the map.
    Gone,
    /// A holder could not be asked: kept in the map, left out of this page.
    Unknown,
}

/// Checks map entries again: the broker's own entities against the query's filter, the
/// others through their sources (one request per source for the whole chunk).
async fn check(
    b: &Broker,
    tenant: &str,
    q: &Prepared,
    ctx: &Arc<Context>,
    dist: &crate::forward::Dist,
    chunk: &[(String, Vec<String>)],
) -> NgsiResult<Vec<Verdict>> {
    use crate::entity_maps::LOCAL;
    let mut by_source: indexmap::IndexMap<&str, Vec<String>> = indexmap::IndexMap::new();
    for (id, at) in chunk {
        for s in at.iter().filter(|s| s.as_str() != LOCAL) {
            by_source.entry(s.as_str()).or_default().push(id.clone());
        }
    }
    let mut remote: std::collections::HashMap<&str, Option<(Vec<Entity>, crate::registry::registration::Mode)>> =
        std::collections::HashMap::new();
    for (source, ids) in &by_source {
        let found = b.forwarder.fetch_ids(dist, tenant, source, &q.types, q.attrs.as_deref(), ids, ctx).await;
        remote.insert(source, found);
    }
    let mut out = Vec::with_capacity(chunk.len());
    for (id, at) in chunk {
        let mut merged: Option<Entity> = None;
        let mut holders = Vec::new();
        let mut unknown = false;
        for s in at {
            if s == LOCAL {
                if let Some(e) = b.store.get(tenant, id).await?
                    && q.filter.matches(&e)
                    && q.filter.sort_key.as_ref().is_none_or(|k| k(&e).is_some())
                {
                    merged = Some((*e).clone());
                    holders.push(s.clone());
                }
                continue;
            }
            match remote.get(s.as_str()) {
                Some(Some((entities, mode))) => {
                    if let Some(e) = entities.iter().find(|e| *e.id == **id) {
                        match &mut merged {
                            Some(m) => crate::forward::merge(m, e.clone(), *mode),
                            None => merged = Some(e.clone()),
                        }
                        holders.push(s.clone());
                    }
                }
                _ => {
                    unknown = true;
                    holders.push(s.clone());
                }
            }
        }
        out.push(match merged {
            Some(e) => Verdict::Match(Arc::new(e), holders),
            None if unknown => Verdict::Unknown,
            None => Verdict::Gone,
        });
    }
    Ok(out)
}

/// Query Entities with an entity map (§5.5.9.3): the map's ids are the candidates, in its
/// order; `offset` counts in the map; each candidate is checked again when a page reaches it,
/// and those no longer matching leave the map, so a page is filled to `limit` as long as
/// candidates remain. With `count` every candidate is checked. An unknown or expired map is
/// replaced by a new one made from the query.
pub async fn run_mapped(
    b: &Broker,
    tenant: &str,
    p: &QueryParams,
    ctx: &Arc<Context>,
    default_limit: usize,
    dist: &crate::forward::Dist,
    map: &MapUse,
) -> NgsiResult<MappedResult> {
    // The page's own checks (limit, tenant) come first, so a refused query makes no map.
    let q = prepare(b, tenant, p, ctx, default_limit, dist, true).await?;
    let known = match map {
        MapUse::Walk(id) => b.entity_maps.get(tenant, id),
        MapUse::Create => None,
    };
    let created = known.is_none();
    let map = match known {
        Some(m) => m,
        None => make_map(b, tenant, p, ctx, dist).await?,
    };
    let entries: Vec<(String, Vec<String>)> = map.entries.into_iter().collect();
    let (mut gone, mut holders) = (Vec::new(), Vec::new());
    let mut settle = |entry: &(String, Vec<String>), v: Verdict| -> Option<Arc<Entity>> {
        match v {
            Verdict::Match(e, at) => {
                if at != entry.1 {
                    holders.push((entry.0.clone(), at));
                }
                Some(e)
            }
            Verdict::Gone => {
                gone.push(entry.0.clone());
                None
            }
            Verdict::Unknown => None,
        }
    };
    let mut page = Vec::new();
    let mut pos = p.offset.min(entries.len());
    while page.len() < q.limit && pos < entries.len() {
        let end = (pos + q.limit - page.len()).min(entries.len());
        let chunk = &entries[pos..end];
        for (entry, v) in chunk.iter().zip(check(b, tenant, &q, ctx, dist, chunk).await?) {
            if let Some(e) = settle(entry, v) {
                page.push(e);
            }
        }
        pos = end;
    }
    let more = pos < entries.len();
    let total = if p.count {
        // The candidates before the page and after it are checked too.
        let mut n = page.len();
        let before = 0..p.offset.min(entries.len());
        for range in [before, pos..entries.len()] {
            for chunk in entries[range].chunks(100) {
                for (entry, v) in chunk.iter().zip(check(b, tenant, &q, ctx, dist, chunk).await?) {
                    n += usize::from(settle(entry, v).is_some());
                }
            }
        }
        Some(n)
    } else {
        None
    };
    b.entity_maps.prune(tenant, &map.id, &gone, holders);
    Ok(MappedResult { entities: page, total, map_id: map.id, created, more })
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
