//! Query Entities (GS CIM 009 §5.7.2): selection by id, idPattern, type and attrs with stable
//! paging and counting. Filtering beyond that (`q`, geo-queries, scopes) is the query engine's.

use std::sync::Arc;

use super::Broker;
use crate::error::{ErrorKind, NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::Entity;
use crate::store::EntityFilter;

/// The largest page a client may ask for.
pub const MAX_LIMIT: usize = 1000;

/// Query parameters as given (compacted names, not yet expanded).
#[derive(Debug, Default, Clone)]
pub struct QueryParams {
    pub ids: Option<Vec<String>>,
    pub id_pattern: Option<String>,
    pub types: Option<Vec<String>>,
    pub attrs: Option<Vec<String>>,
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

pub async fn run(
    b: &Broker,
    tenant: &str,
    p: &QueryParams,
    ctx: &Context,
    default_limit: usize,
) -> NgsiResult<QueryResult> {
    if p.ids.is_none() && p.id_pattern.is_none() && p.types.is_none() && p.attrs.is_none() && !p.local {
        return Err(NgsiError::bad_data(
            "too broad query: give at least one of id, idPattern, type, attrs, q or a geo-query",
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
    let id_pattern = match &p.id_pattern {
        Some(re) => Some(
            regex::RegexBuilder::new(re)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| NgsiError::bad_data(format!("idPattern is not a valid regular expression: {e}")))?,
        ),
        None => None,
    };
    if let Some(ids) = &p.ids {
        for id in ids {
            super::check_entity_id(id)?;
        }
    }
    b.require_tenant(tenant).await?;
    let filter = EntityFilter {
        ids: p.ids.clone(),
        id_pattern,
        types: p.types.as_ref().map(|t| t.iter().map(|x| ctx.expand(x)).collect()),
        attrs: p.attrs.as_ref().map(|a| a.iter().map(|x| ctx.expand(x)).collect()),
        predicate: None,
    };
    let page = b.store.query(tenant, &filter, p.offset, limit, p.count).await?;
    Ok(QueryResult { entities: page.entities, total: page.total })
}
