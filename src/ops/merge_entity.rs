//! Merge Entity (GS CIM 009 §5.6.17, PATCH /entities/{id}): JSON merge-patch semantics on an
//! entity. Attributes given are merged into existing instances (sub-attributes too), new ones
//! are added, `urn:ngsi-ld:null` deletes; types are added; untouched attributes stay.

use std::sync::Arc;

use serde_json::Value;

use super::{Broker, entity_not_found};
use crate::error::NgsiResult;
use crate::jsonld::Context;
use crate::model::parse::EntityInput;
use crate::model::{Entity, now_millis};
use crate::store::{Mutation, Write};

pub async fn run(
    b: &Broker,
    tenant: &str,
    id: &str,
    body: &Value,
    ctx: &Arc<Context>,
    dist: &crate::forward::Dist,
) -> NgsiResult<()> {
    let now = now_millis();
    let mut body = std::borrow::Cow::Borrowed(body);
    let path = format!("/ngsi-ld/v1/entities/{}", crate::forward::segment(id));
    let op = crate::registry::registration::Op::MergeEntity;
    if let Some(f) =
        super::forward_fragment(b, tenant, id, &body, ctx, dist, op, reqwest::Method::PATCH, &path, false).await?
    {
        super::refused(&f)?;
        if !f.attrs_left() {
            return Ok(());
        }
        body = std::borrow::Cow::Owned(Value::Object(f.rest));
    }
    let input = super::fragment_for(b, tenant, id, &body, ctx, now).await?;
    b.write_one(tenant, false, merge_write(id, input, now)).await?;
    Ok(())
}

/// The write that merges `input` into entity `id` (404 when it does not exist).
pub fn merge_write(id: &str, input: EntityInput, now: i64) -> Write {
    let owned = id.to_owned();
    Write::new(id, move |cur| {
        let cur = cur.ok_or_else(|| entity_not_found(&owned))?;
        let mut e = cur.clone();
        apply_merge(&mut e, &input, now);
        Ok(Mutation::Put(e))
    })
}

/// Applies merge-patch semantics in place.
pub fn apply_merge(e: &mut Entity, input: &EntityInput, now: i64) {
    e.add_types(&input.types);
    if input.scope_null {
        e.scope = None;
    } else if let Some(s) = &input.scope {
        e.scope = Some(Box::new(s.clone()));
    }
    for (name, instances) in &input.attrs {
        for inst in instances {
            if inst.is_null_marker() {
                e.remove_instance(name, inst.dataset_id(), false);
                continue;
            }
            match e.instance_mut(name, inst.dataset_id()) {
                Some(existing) => existing.merge_from(inst.clone(), now),
                None => {
                    e.put_instance(name, inst.clone());
                }
            }
        }
    }
    e.modified_at = now;
}
