//! Batch Entity Update (GS CIM 009 §5.6.9): appends attributes to existing entities
//! (`options=noOverwrite` keeps existing instances); a missing entity is an error for that entity.
//! An entity where noOverwrite kept some attributes is reported among the errors, naming them,
//! since the update was not applied in full (the other attributes are written). Attributes
//! registered for `updateBatch` go to their context sources first (§4.3.6).

use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use super::{BatchOutcome, Broker, batch_items, element_context, element_id, entity_not_found};
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::now_millis;
use crate::model::parse::{Purpose, parse_entity};
use crate::store::{Mutation, Write};

/// An entity whose existing attributes noOverwrite kept, with those attributes' names.
type Kept = (String, Vec<String>);

pub async fn run(
    b: &Broker,
    tenant: &str,
    body: &Value,
    contexts: &[NgsiResult<Arc<Context>>],
    no_overwrite: bool,
    dist: &crate::forward::Dist,
) -> NgsiResult<BatchOutcome> {
    let items = batch_items(body)?;
    // With context sources, elements they take need no local tenant: checked before writing.
    let forwarding = b.forwarder.active(tenant, dist);
    if !forwarding {
        b.require_tenant(tenant).await?;
    }
    let op = crate::registry::registration::Op::UpdateBatch;
    let path = match no_overwrite {
        true => "/ngsi-ld/v1/entityOperations/update?options=noOverwrite",
        false => "/ngsi-ld/v1/entityOperations/update",
    };
    let elements = super::distribute_batch(b, tenant, items, contexts, dist, op, path, false).await?;
    let now = now_millis();
    let mut out = BatchOutcome::default();
    let mut writes = Vec::new();
    let kept: Arc<Mutex<Vec<Kept>>> = Arc::default();
    for (i, (given, element)) in items.iter().zip(elements).enumerate() {
        let Some(item) = out.settle(given, element, false) else { continue };
        let item = &*item;
        let input = match element_context(contexts, i).and_then(|ctx| parse_entity(item, ctx, Purpose::Fragment, now)) {
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
        let kept = kept.clone();
        writes.push(Write::new(id, move |cur| {
            let mut e = cur.ok_or_else(|| entity_not_found(&owned))?.clone();
            e.add_types(&input.types);
            let mut skipped = Vec::new();
            for (name, instances) in &input.attrs {
                for inst in instances {
                    if no_overwrite && e.instance(name, inst.dataset_id()).is_some() {
                        skipped.push(name.to_string());
                        continue;
                    }
                    e.put_instance(name, inst.clone());
                }
            }
            if !skipped.is_empty() {
                kept.lock().push((owned.clone(), skipped));
            }
            e.modified_at = now;
            Ok(Mutation::Put(e))
        }));
    }
    if forwarding && !writes.is_empty() {
        b.require_tenant(tenant).await?;
    }
    let mut out = super::batch_merge::collect(b, tenant, writes, out).await?;
    for (id, names) in kept.lock().drain(..) {
        if out.errors.iter().any(|(e, _)| e == &id) {
            continue;
        }
        out.success.retain(|s| s != &id);
        let detail = format!("attributes {} exist and noOverwrite was given", names.join(", "));
        out.errors.push((id, NgsiError::bad_data(detail)));
    }
    Ok(out)
}
