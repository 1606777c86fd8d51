//! Batch Entity Creation (GS CIM 009 §5.6.7): each entity is created or reported on its own;
//! all valid ones are written in one store call. Entities and attributes registered for
//! `createBatch` are created on their context sources first (§4.3.6).

use std::sync::Arc;

use serde_json::Value;

use super::create_entity::create_write;
use super::{BatchOutcome, Broker, batch_items, element_context, element_id};
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::now_millis;
use crate::model::parse::{Purpose, parse_entity};

/// `contexts` holds one context per element (each element may carry its own `@context`).
pub async fn run(
    b: &Broker,
    tenant: &str,
    body: &Value,
    contexts: &[NgsiResult<Arc<Context>>],
    dist: &crate::forward::Dist,
) -> NgsiResult<BatchOutcome> {
    let items = batch_items(body)?;
    let now = now_millis();
    let mut out = BatchOutcome::default();
    let mut writes = Vec::new();
    let op = crate::registry::registration::Op::CreateBatch;
    let path = "/ngsi-ld/v1/entityOperations/create";
    let elements = super::distribute_batch(b, tenant, items, contexts, dist, op, path, true).await?;
    for (i, (given, element)) in items.iter().zip(elements).enumerate() {
        // A redirect source that took the entity created it.
        let Some(item) = out.settle(given, element, true) else { continue };
        let item = &*item;
        match element_context(contexts, i).and_then(|ctx| parse_entity(item, ctx, Purpose::Create, now)) {
            Ok(input) => match input.id.clone() {
                Some(id) => writes.push(create_write(input.into_entity(id, now))),
                None => out.errors.push((element_id(item), NgsiError::bad_data("an entity needs an id"))),
            },
            Err(e) => out.errors.push((element_id(item), e)),
        }
    }
    if !writes.is_empty() {
        let ids: Vec<String> = writes.iter().map(|w| w.id.clone()).collect();
        for (id, r) in ids.into_iter().zip(b.store.write(tenant, true, writes).await?) {
            match r {
                Ok(_) => {
                    out.created.push(id.clone());
                    out.success.push(id);
                }
                Err(e) => out.errors.push((id, e)),
            }
        }
    }
    Ok(out)
}
