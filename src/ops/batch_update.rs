//! Batch Entity Update (GS CIM 009 §5.6.9): appends attributes to existing entities
//! (`options=noOverwrite` keeps existing instances); a missing entity is an error for that entity.

use std::sync::Arc;

use serde_json::Value;

use super::{BatchOutcome, Broker, batch_items, element_id, entity_not_found};
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::now_millis;
use crate::model::parse::{Purpose, parse_entity};
use crate::store::{Mutation, Write};

pub async fn run(
    b: &Broker,
    tenant: &str,
    body: &Value,
    contexts: &[Arc<Context>],
    no_overwrite: bool,
) -> NgsiResult<BatchOutcome> {
    let items = batch_items(body)?;
    b.require_tenant(tenant).await?;
    let now = now_millis();
    let mut out = BatchOutcome::default();
    let mut writes = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let input = match parse_entity(item, &contexts[i.min(contexts.len() - 1)], Purpose::Fragment, now) {
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
            let mut e = cur.ok_or_else(|| entity_not_found(&owned))?.clone();
            e.add_types(&input.types);
            for (name, instances) in &input.attrs {
                for inst in instances {
                    if no_overwrite && e.instance(name, inst.dataset_id()).is_some() {
                        continue;
                    }
                    e.put_instance(name, inst.clone());
                }
            }
            e.modified_at = now;
            Ok(Mutation::Put(e))
        }));
    }
    super::batch_merge::collect(b, tenant, writes, out).await
}
