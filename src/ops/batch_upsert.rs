//! Batch Entity Create or Update (Upsert) (GS CIM 009 §5.6.8): new entities are created;
//! existing ones are replaced (`options=replace`, the default) or have the given attributes
//! updated (`options=update`). Entities and attributes registered for `upsertBatch` go to their
//! context sources first (§4.3.6).

use std::sync::Arc;

use serde_json::Value;

use super::{BatchOutcome, Broker, batch_items, element_context, element_id};
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::now_millis;
use crate::model::parse::{Purpose, parse_entity};
use crate::store::{Mutation, Write};

pub async fn run(
    b: &Broker,
    tenant: &str,
    body: &Value,
    contexts: &[NgsiResult<Arc<Context>>],
    update: bool,
    dist: &crate::forward::Dist,
) -> NgsiResult<BatchOutcome> {
    let items = batch_items(body)?;
    let op = crate::registry::registration::Op::UpsertBatch;
    let path = match update {
        true => "/ngsi-ld/v1/entityOperations/upsert?options=update",
        false => "/ngsi-ld/v1/entityOperations/upsert",
    };
    let elements = super::distribute_batch(b, tenant, items, contexts, dist, op, path, true).await?;
    let now = now_millis();
    let mut out = BatchOutcome::default();
    let mut writes = Vec::new();
    for (i, (given, element)) in items.iter().zip(elements).enumerate() {
        let Some(item) = out.settle(given, element, false) else { continue };
        let item = &*item;
        let input = match element_context(contexts, i).and_then(|ctx| parse_entity(item, ctx, Purpose::Create, now)) {
            Ok(input) => input,
            Err(e) => {
                out.errors.push((element_id(item), e));
                continue;
            }
        };
        let Some(id) = input.id.clone() else {
            out.errors.push((element_id(item), NgsiError::bad_data("an entity needs an id")));
            continue;
        };
        let owned = id.clone();
        writes.push(Write::new(id, move |cur| {
            let Some(cur) = cur else {
                return Ok(Mutation::Put(input.clone().into_entity(owned.clone(), now)));
            };
            let mut e = cur.clone();
            if update {
                e.add_types(&input.types);
                if let Some(s) = &input.scope {
                    e.scope = Some(Box::new(s.clone()));
                }
                for (name, instances) in &input.attrs {
                    for inst in instances {
                        e.put_instance(name, inst.clone());
                    }
                }
                e.modified_at = now;
            } else {
                e = input.clone().into_entity(owned.clone(), now);
                e.created_at = cur.created_at;
                // The store's index keys share the stored id's allocation.
                e.id = cur.id.clone();
            }
            Ok(Mutation::Put(e))
        }));
    }
    if !writes.is_empty() {
        let ids: Vec<String> = writes.iter().map(|w| w.id.clone()).collect();
        for (id, r) in ids.into_iter().zip(b.store.write(tenant, true, writes).await?) {
            match r {
                Ok(change) => {
                    if change.old.is_none() && !out.created.contains(&id) {
                        out.created.push(id.clone());
                    }
                    out.success.push(id);
                }
                Err(e) => out.errors.push((id, e)),
            }
        }
    }
    Ok(out)
}
