//! Query Temporal Evolution of Entities (GS CIM 009 §5.7.4): the entities the selectors, `attrs`,
//! `q`, `scopeQ` and geo-query match, each with the instances the temporal selection keeps, in
//! creation order, paged. `q` and the geo-query hold for an entity when one of the kept
//! instances satisfies them.

use std::sync::Arc;

use super::Broker;
use super::query_entities::{MAX_LIMIT, QueryParams, compile};
use crate::error::{ErrorKind, NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::Entity;
use crate::temporal::query::{Selection, TimeProperty, TimeRel, View};

/// A temporal query: the entity query and the temporal selection.
#[derive(Debug, Default, Clone)]
pub struct TemporalQuery {
    pub params: QueryParams,
    pub timerel: Option<TimeRel>,
    pub timeproperty: TimeProperty,
    pub last_n: Option<usize>,
    pub dataset_ids: Option<Vec<String>>,
    /// The most instances one entity's answer holds.
    pub max_instances: Option<usize>,
}

/// One page of temporal entities.
pub struct TemporalPage {
    pub views: Vec<View>,
    pub total: Option<usize>,
    /// Whether matches remain after this page.
    pub more: bool,
}

impl TemporalQuery {
    /// The temporal selection, with `attrs` expanded by the request's context.
    pub fn selection(&self, ctx: &Context) -> Selection {
        Selection {
            timerel: self.timerel,
            timeproperty: self.timeproperty,
            last_n: self.last_n,
            attrs: self.params.attrs.as_ref().map(|a| a.iter().map(|n| ctx.expand(n)).collect()),
            dataset_ids: self.dataset_ids.clone(),
            max_instances: self.max_instances,
        }
    }
}

pub async fn run(
    b: &Broker,
    tenant: &str,
    tq: &TemporalQuery,
    ctx: &Arc<Context>,
    default_limit: usize,
) -> NgsiResult<TemporalPage> {
    let p = &tq.params;
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
    super::require_temporal_tenant(b, tenant).await?;
    let sel = tq.selection(ctx);
    // Entities without a kept instance are left out when the query selects instances.
    let needs_instances = sel.timerel.is_some() || sel.attrs.is_some() || sel.dataset_ids.is_some();
    let whole = query.q.is_some() || query.scope.is_some() || query.geo.is_some() || query.attrs.is_some();
    let (mut matched, mut views) = (0usize, Vec::new());
    let mut more = false;
    // With orderBy every match is needed before the page can be cut.
    let mut ordered: Vec<(Entity, View)> = Vec::new();
    b.temporal.scan(tenant, |e| {
        let head = Entity {
            id: e.id.as_str().into(),
            types: e.types.iter().map(|t| crate::model::intern(t)).collect(),
            scope: e.scope.clone().map(Box::new),
            attrs: Default::default(),
            created_at: e.created_at,
            modified_at: e.modified_at,
        };
        if !query.selectors.is_empty() && !query.selectors.iter().any(|s| s.matches(&head)) {
            return true;
        }
        let view = sel.select(e);
        if needs_instances && view.attrs.is_empty() {
            return true;
        }
        let whole_entity = (whole || query.order.is_some()).then(|| view.as_entity());
        let ok = match &whole_entity {
            Some(full) => query.matches(full),
            None => query.scope.as_ref().is_none_or(|s| s.matches(head.scopes())),
        };
        if !ok {
            return true;
        }
        matched += 1;
        if query.order.is_some() {
            ordered.push((whole_entity.unwrap_or(head), view));
            return true;
        }
        if matched > p.offset {
            if views.len() < limit {
                views.push(view);
            } else {
                more = true;
                // Without a count, nothing after the page is needed.
                return p.count;
            }
        }
        true
    });
    if let Some(order) = &query.order {
        ordered.sort_by(|a, b| order.compare(&a.0, &b.0));
        more = ordered.len() > p.offset + limit;
        views = ordered.into_iter().skip(p.offset).take(limit).map(|(_, v)| v).collect();
    }
    Ok(TemporalPage { views, total: p.count.then_some(matched), more })
}
