//! Update Entity Attributes (GS CIM 009 §5.6.2, PATCH /entities/{id}/attrs): replaces existing
//! attribute instances; attributes the entity lacks are reported as not updated.

use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use super::{AttrOutcome, Broker, check_entity_id, entity_not_found};
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::now_millis;
use crate::model::parse::{Purpose, parse_entity};
use crate::store::{Mutation, Write};

pub async fn run(b: &Broker, tenant: &str, id: &str, body: &Value, ctx: &Arc<Context>) -> NgsiResult<AttrOutcome> {
    check_entity_id(id)?;
    b.require_tenant(tenant).await?;
    let now = now_millis();
    let input = parse_entity(body, ctx, Purpose::Fragment, now)?;
    if input.id.as_deref().is_some_and(|given| given != id) {
        return Err(NgsiError::bad_data("the body's id differs from the id in the path"));
    }
    if input.attrs.is_empty() {
        return Err(NgsiError::bad_data("no attribute to update"));
    }
    let outcome = Arc::new(Mutex::new(AttrOutcome::default()));
    let out = outcome.clone();
    let owned = id.to_owned();
    b.write_one(
        tenant,
        false,
        Write::new(id, move |cur| {
            let mut e = cur.ok_or_else(|| entity_not_found(&owned))?.clone();
            let mut result = AttrOutcome::default();
            for (name, instances) in &input.attrs {
                let mut wrote = false;
                for inst in instances {
                    if e.instance(name, inst.dataset_id.as_deref()).is_some() {
                        e.put_instance(name, inst.clone());
                        wrote = true;
                    }
                }
                if wrote {
                    result.updated.push(name.clone());
                } else {
                    result.not_updated.push((name.clone(), "attribute (or datasetId) does not exist".into()));
                }
            }
            if result.updated.is_empty() {
                *out.lock() = result;
                return Ok(Mutation::Keep);
            }
            e.modified_at = now;
            *out.lock() = result;
            Ok(Mutation::Put(e))
        }),
    )
    .await?;
    let result = outcome.lock().clone();
    Ok(result)
}
