//! Partial Attribute Update (GS CIM 009 §5.6.4, PATCH /entities/{id}/attrs/{attrId}): merges
//! the fragment into one existing instance (chosen by `datasetId`). A fragment whose value is
//! the NGSI-LD null deletes that instance; a fragment naming another attribute type than the
//! stored one is rejected, since a partial update cannot change what the attribute is.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Broker, check_attr_name, check_entity_id, entity_not_found};
use crate::error::{NgsiError, NgsiResult};
use crate::forward::Dist;
use crate::jsonld::Context;
use crate::model::parse::parse_attribute;
use crate::model::{AttrKind, now_millis};
use crate::store::{Mutation, Write};

pub async fn run(
    b: &Broker,
    tenant: &str,
    id: &str,
    attr: &str,
    body: &Value,
    ctx: &Arc<Context>,
    dist: &Dist,
) -> NgsiResult<Vec<NgsiError>> {
    check_entity_id(id)?;
    check_attr_name(attr)?;
    // Attributes registered by context sources go to them (IoT agent commands, §4.3.6).
    let mut done_remotely = false;
    if b.forwarder.active(tenant, dist) {
        let types = b.store.get(tenant, id).await?.map(|e| e.type_names()).unwrap_or_default();
        let f = b.forwarder.update_attr(dist, tenant, id, &types, &ctx.expand(attr), body, ctx).await?;
        if !f.keep_local {
            return Ok(Vec::new());
        }
        done_remotely = f.done_remotely;
    }
    // The broker's part; an attribute only an inclusive source holds was handled there.
    let local: NgsiResult<()> = async {
        b.require_tenant(tenant).await?;
        let obj = body.as_object().ok_or_else(|| NgsiError::bad_data("an attribute fragment must be a JSON object"))?;
        let dataset_id = match obj.get("datasetId") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(NgsiError::bad_data("datasetId must be a URI")),
        };
        let name = ctx.expand(attr);
        let now = now_millis();
        let (owned, body, ctx, attr) = (id.to_owned(), body.clone(), ctx.clone(), attr.to_owned());
        b.write_one(
            tenant,
            false,
            Write::new(id, move |cur| {
                let mut e = cur.ok_or_else(|| entity_not_found(&owned))?.clone();
                let existing = e
                    .instance_mut(&name, dataset_id.as_deref())
                    .ok_or_else(|| NgsiError::not_found(format!("attribute {attr} not found in {owned}")))?;
                if let Some(t) = body.get("type").and_then(Value::as_str)
                    && AttrKind::parse(t).is_some_and(|k| k != existing.kind)
                {
                    return Err(NgsiError::bad_data(format!(
                        "attribute {attr} is a {}, a partial update cannot make it a {t}",
                        existing.kind.name()
                    )));
                }
                // A fragment without a type keeps the attribute's kind.
                let mut fragment = body;
                if let Some(o) = fragment.as_object_mut()
                    && !o.contains_key("type")
                {
                    let key = existing.kind.value_key();
                    if o.contains_key(key) {
                        o.insert("type".into(), json!(existing.kind.name()));
                    } else if !o.contains_key("value") {
                        // Only sub-attributes or metadata change: keep the value.
                        o.insert("type".into(), json!(existing.kind.name()));
                        o.insert(key.into(), existing.value_for_patch());
                    }
                }
                let patch = parse_attribute(&attr, &fragment, &ctx, now)?;
                if patch.is_null_marker() {
                    e.remove_instance(&name, dataset_id.as_deref(), false);
                } else {
                    existing.merge_from(patch, now);
                }
                e.modified_at = now;
                Ok(Mutation::Put(e))
            }),
        )
        .await?;
        Ok(())
    }
    .await;
    super::with_local_part(local, done_remotely)
}
