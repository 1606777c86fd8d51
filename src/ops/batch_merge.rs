//! Batch Entity Merge (GS CIM 009 §5.6.20): Merge Entity applied to each element. Attributes
//! registered for `mergeBatch` go to their context sources first (§4.3.6).

use std::sync::Arc;

use serde_json::Value;

use super::merge_entity::merge_write;
use super::{BatchOutcome, Broker, batch_items, element_context, element_id};
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::now_millis;
use crate::model::parse::{Purpose, parse_entity};
use crate::store::Write;

pub async fn run(
    b: &Broker,
    tenant: &str,
    body: &Value,
    contexts: &[NgsiResult<Arc<Context>>],
    dist: &crate::forward::Dist,
) -> NgsiResult<BatchOutcome> {
    let items = batch_items(body)?;
    // With context sources, elements they take need no local tenant: checked before writing.
    let forwarding = b.forwarder.active(tenant, dist);
    if !forwarding {
        b.require_tenant(tenant).await?;
    }
    let op = crate::registry::registration::Op::MergeBatch;
    let path = "/ngsi-ld/v1/entityOperations/merge";
    let elements = super::distribute_batch(b, tenant, items, contexts, dist, op, path, false).await?;
    let now = now_millis();
    let mut out = BatchOutcome::default();
    let mut writes = Vec::new();
    for (i, (given, element)) in items.iter().zip(elements).enumerate() {
        let Some(item) = out.settle(given, element, false) else { continue };
        let item = &*item;
        match element_context(contexts, i).and_then(|ctx| parse_entity(item, ctx, Purpose::Fragment, now)) {
            Ok(input) => match input.id.clone() {
                Some(id) => writes.push(merge_write(&id, input, now)),
                None => out.errors.push((element_id(item), NgsiError::bad_data("an entity needs an id"))),
            },
            Err(e) => out.errors.push((element_id(item), e)),
        }
    }
    if forwarding && !writes.is_empty() {
        b.require_tenant(tenant).await?;
    }
    collect(b, tenant, writes, out).await
}

/// Writes a batch and sorts the results into successes and errors.
pub async fn collect(b: &Broker, tenant: &str, writes: Vec<Write>, mut out: BatchOutcome) -> NgsiResult<BatchOutcome> {
    if writes.is_empty() {
        return Ok(out);
    }
    let ids: Vec<String> = writes.iter().map(|w| w.id.clone()).collect();
    for (id, r) in ids.into_iter().zip(b.store.write(tenant, false, writes).await?) {
        match r {
            Ok(_) => out.success.push(id),
            Err(e) => out.errors.push((id, e)),
        }
    }
    Ok(out)
}
