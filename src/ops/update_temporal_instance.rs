//! Modify Attribute Instance in Temporal Representation of an Entity (GS CIM 009 §5.6.14): the
//! members given replace those of one instance, which keeps its instanceId and createdAt.

use serde_json::Value;

use super::{Broker, check_attr_name, check_entity_id, check_id};
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::now_millis;
use crate::model::parse::parse_attribute;
use crate::temporal::{Delta, not_found};

pub async fn run(
    b: &Broker,
    tenant: &str,
    id: &str,
    attr: &str,
    instance_id: &str,
    body: &Value,
    ctx: &Context,
) -> NgsiResult<()> {
    check_entity_id(id)?;
    check_attr_name(attr)?;
    check_id(instance_id, "instance")?;
    let obj = body.as_object().ok_or_else(|| NgsiError::bad_data("an attribute instance must be a JSON object"))?;
    // The instance itself, or a fragment holding it under the attribute's name.
    let fragment = match obj.get(attr) {
        Some(inner) if inner.is_object() => inner,
        _ => body,
    };
    let now = now_millis();
    let mut fragment = fragment.clone();
    if let Value::Object(m) = &mut fragment {
        m.remove("@context");
    }
    let patch = parse_attribute(attr, &fragment, ctx, now)?;
    let name = ctx.expand(attr);
    super::require_temporal_tenant(b, tenant).await?;
    let _writing = b.temporal.lock().await;
    let current = b
        .temporal
        .with_entity(tenant, id, |e| {
            e.attrs.get(&name).map(|l| l.iter().find(|i| i.instance_id == instance_id).cloned())
        })
        .ok_or_else(|| not_found(id))?;
    let mut inst = match current {
        None => return Err(NgsiError::not_found(format!("temporal entity {id} has no attribute {attr}"))),
        Some(None) => {
            return Err(NgsiError::not_found(format!("attribute {attr} of {id} has no instance {instance_id}")));
        }
        Some(Some(i)) => i,
    };
    inst.attr.merge_from(patch, now);
    if let Some(d) = fragment.get("datasetId").and_then(Value::as_str) {
        inst.attr.set_dataset_id(Some(d.to_owned()));
    }
    b.temporal.commit(vec![Delta::Put { tenant: tenant.to_owned(), id: id.to_owned(), attr: name, inst }]).await
}
