//! Query Context Source Registrations (GS CIM 009 §5.10.2): the registrations of a tenant that
//! can provide the entities and attributes asked for (ids, idPattern, type selection, attrs),
//! whose properties satisfy `q` and `csf`, whose scope satisfies `scopeQ`, whose location (or
//! observation or operation space) satisfies a geo-query, and whose observation or management
//! interval satisfies a temporal query; oldest first, paged.

use serde_json::Value;

use super::Broker;
use crate::error::{ErrorKind, NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::parse_datetime;
use crate::query::geo::GeoQuery;
use crate::query::{pattern, q, scope, types};
use crate::registry::registration::{Discovery, TimeRel};

/// The largest page a client may ask for.
pub const MAX_LIMIT: usize = 1000;

/// The parameters as given.
#[derive(Debug, Default, Clone)]
pub struct Params {
    pub ids: Option<Vec<String>>,
    pub id_pattern: Option<String>,
    pub types: Option<String>,
    pub attrs: Option<Vec<String>>,
    pub q: Option<String>,
    pub csf: Option<String>,
    pub scope_q: Option<String>,
    pub geo: Option<GeoQuery>,
    pub timerel: Option<String>,
    pub time_at: Option<String>,
    pub end_time_at: Option<String>,
    pub timeproperty: Option<String>,
}

fn time(v: &str, what: &str) -> NgsiResult<i64> {
    parse_datetime(v).ok_or_else(|| NgsiError::bad_data(format!("{what} must be a DateTime, not {v:?}")))
}

/// The temporal query: the relation and whether it applies to the observation interval
/// (`timeproperty` observedAt, the default) rather than the management interval (createdAt,
/// modifiedAt).
fn temporal(p: &Params) -> NgsiResult<Option<(TimeRel, bool)>> {
    let Some(rel) = p.timerel.as_deref() else {
        if p.time_at.is_some() || p.end_time_at.is_some() {
            return Err(NgsiError::bad_data("timeAt and endTimeAt need timerel"));
        }
        return Ok(None);
    };
    let at = time(p.time_at.as_deref().ok_or_else(|| NgsiError::bad_data("timerel needs timeAt"))?, "timeAt")?;
    let rel = match rel {
        "before" => TimeRel::Before(at),
        "after" => TimeRel::After(at),
        "between" => {
            let end = p.end_time_at.as_deref().ok_or_else(|| NgsiError::bad_data("timerel=between needs endTimeAt"))?;
            let end = time(end, "endTimeAt")?;
            if end <= at {
                return Err(NgsiError::bad_data("endTimeAt must be after timeAt"));
            }
            TimeRel::Between(at, end)
        }
        other => return Err(NgsiError::bad_data(format!("timerel must be before, after or between, not {other:?}"))),
    };
    let observation = match p.timeproperty.as_deref() {
        None | Some("observedAt") => true,
        Some("createdAt" | "modifiedAt") => false,
        Some(other) => {
            return Err(NgsiError::bad_data(format!(
                "timeproperty must be observedAt, createdAt or modifiedAt, not {other:?}"
            )));
        }
    };
    Ok(Some((rel, observation)))
}

/// Compiles a `q` or `csf` expression. A malformed one is bad request data here (ETSI 037_03_02),
/// as in subscriptions, where Query Entities calls it an invalid request.
fn query_language(src: &str, what: &str, ctx: &Context) -> NgsiResult<q::Query> {
    q::compile(src, ctx).map_err(|e| NgsiError::bad_data(format!("{what}: {}", e.detail)))
}

/// Compiles the parameters with the request's context.
pub fn compile(p: &Params, ctx: &Context) -> NgsiResult<Discovery> {
    if let Some(ids) = &p.ids {
        for id in ids {
            super::check_entity_id(id)?;
        }
    }
    let id_pattern = p
        .id_pattern
        .as_deref()
        .map(|re| {
            pattern::compile(re)
                .map_err(|e| NgsiError::bad_data(format!("idPattern is not a valid regular expression: {e}")))
        })
        .transpose()?;
    if let Some(attrs) = &p.attrs {
        crate::query::check_attr_names(attrs)?;
    }
    if let Some(g) = &p.geo {
        let prop = g.resolve(ctx).geoproperty().to_owned();
        if !["location", "observationSpace", "operationSpace"].iter().any(|n| crate::jsonld::CORE.expand(n) == prop) {
            return Err(NgsiError::bad_data(
                "the geoproperty of a registration query is location, observationSpace or operationSpace",
            ));
        }
    }
    Ok(Discovery {
        ids: p.ids.clone(),
        id_pattern,
        types: p.types.as_deref().map(|t| types::parse(t, ctx)).transpose()?,
        attrs: p.attrs.as_ref().map(|a| a.iter().map(|n| ctx.expand(n)).collect()),
        q: p.q.as_deref().map(|s| query_language(s, "q", ctx)).transpose()?,
        csf: p.csf.as_deref().map(|s| query_language(s, "csf", ctx)).transpose()?,
        scope: p.scope_q.as_deref().map(scope::parse).transpose()?,
        geo: p.geo.as_ref().map(|g| g.resolve(ctx)),
        time: temporal(p)?,
    })
}

/// Runs the query: one page of rendered registrations and the total number of matches.
#[allow(clippy::too_many_arguments)]
pub fn run(
    b: &Broker,
    tenant: &str,
    p: &Params,
    ctx: &Context,
    offset: usize,
    limit: usize,
    count: bool,
    sys_attrs: bool,
) -> NgsiResult<(Vec<Value>, usize)> {
    let d = compile(p, ctx)?;
    if d.is_unrestricted() {
        // §5.10.2.4 (ETSI 037_02): a query must say what it looks for.
        return Err(NgsiError::bad_data(
            "give at least one of id, idPattern, type, attrs, q, csf, scopeQ, a geo-query or a temporal query",
        ));
    }
    if limit > MAX_LIMIT {
        return Err(NgsiError::new(
            ErrorKind::TooManyResults,
            format!("limit {limit} is above the maximum of {MAX_LIMIT}"),
        ));
    }
    if limit == 0 && !count {
        return Err(NgsiError::bad_data("limit=0 is only allowed together with count=true"));
    }
    Ok(b.registry.query(tenant, &d, ctx, offset, limit, sys_attrs))
}
