//! Purge Entities (GS CIM 009 §5.6.21, DELETE /entities): deletes every entity a query matches,
//! or with `drop`/`keep` removes (or keeps only) the named attributes of each. Matches are
//! taken in pages and written in batches; each write re-checks the query, so an entity changed
//! meanwhile to no longer match is left alone. Context sources registered for `purgeEntity` on
//! the types asked for get the same request (§4.3.6).

use std::sync::Arc;

use super::Broker;
use super::query_entities::{QueryParams, compile};
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::now_millis;
use crate::store::{Mutation, Write};

/// What to do with each matching entity.
#[derive(Debug, Clone)]
pub enum Purge {
    Delete,
    /// Remove these (expanded) attributes.
    Drop(Vec<String>),
    /// Remove every attribute except these.
    Keep(Vec<String>),
}

const PAGE: usize = 1000;

/// Returns the number of entities deleted or changed.
pub async fn run(
    b: &Broker,
    tenant: &str,
    p: &QueryParams,
    ctx: &Context,
    what: Purge,
    dist: &crate::forward::Dist,
) -> NgsiResult<usize> {
    let query = compile(p, ctx)?;
    if query.is_unrestricted() && !p.local {
        return Err(NgsiError::bad_data("purge needs a query (id, idPattern, type, attrs, q, scopeQ) or local=true"));
    }
    if b.forwarder.active(tenant, dist) {
        let types: Vec<String> =
            query.selectors.iter().filter_map(|s| s.types.as_ref().and_then(|t| t.candidates())).flatten().collect();
        b.forwarder.purge(dist, tenant, &types, ctx).await;
        // The sources may hold what the broker does not: no local tenant is no error then.
        if !b.store.tenant_exists(tenant).await? {
            return Ok(0);
        }
    }
    b.require_tenant(tenant).await?;
    let query = Arc::new(query);
    let mut done = 0usize;
    let mut offset = 0usize;
    loop {
        let filter = (*query).clone().into_filter();
        let page = b.store.query(tenant, &filter, offset, PAGE, false).await?;
        if page.entities.is_empty() {
            break;
        }
        let n = page.entities.len();
        let mut writes = Vec::with_capacity(n);
        for e in &page.entities {
            let (q, what) = (query.clone(), what.clone());
            writes.push(Write::new(e.id.to_string(), move |cur| {
                let Some(cur) = cur else { return Ok(Mutation::Keep) };
                if !q.matches(cur) {
                    return Ok(Mutation::Keep);
                }
                match &what {
                    Purge::Delete => Ok(Mutation::Delete),
                    Purge::Drop(names) | Purge::Keep(names) => {
                        let mut next = cur.clone();
                        let keep = matches!(what, Purge::Keep(_));
                        next.attrs.retain(|name, _| names.iter().any(|n| **n == **name) == keep);
                        if next.attrs.len() == cur.attrs.len() {
                            return Ok(Mutation::Keep);
                        }
                        next.modified_at = now_millis();
                        Ok(Mutation::Put(next))
                    }
                }
            }));
        }
        let results = b.store.write(tenant, false, writes).await?;
        let changed = results.iter().filter(|r| r.as_ref().is_ok_and(changed)).count();
        done += changed;
        // Deleted entities leave the result set; changed or kept ones stay, so skip past them.
        if matches!(what, Purge::Delete) {
            offset += n - results.iter().filter(|r| r.as_ref().is_ok_and(|c| c.new.is_none())).count();
        } else {
            offset += n;
        }
        if n < PAGE {
            break;
        }
    }
    Ok(done)
}

/// Whether a write changed anything (a kept entity comes back as the same `Arc`).
fn changed(c: &crate::store::Change) -> bool {
    match (&c.old, &c.new) {
        (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
        (None, None) => false,
        _ => true,
    }
}
