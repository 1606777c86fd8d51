//! Delete Attribute Instance from Temporal Representation of an Entity (GS CIM 009 §5.6.15).

use super::{Broker, check_attr_name, check_entity_id, check_id};
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::temporal::{Delta, not_found};

pub async fn run(b: &Broker, tenant: &str, id: &str, attr: &str, instance_id: &str, ctx: &Context) -> NgsiResult<()> {
    check_entity_id(id)?;
    check_attr_name(attr)?;
    check_id(instance_id, "instance")?;
    let name = ctx.expand(attr);
    super::require_temporal_tenant(b, tenant).await?;
    let _writing = b.temporal.lock().await;
    let has = b
        .temporal
        .with_entity(tenant, id, |e| e.attrs.get(&name).map(|l| l.iter().any(|i| i.instance_id == instance_id)))
        .ok_or_else(|| not_found(id))?;
    match has {
        None => Err(NgsiError::not_found(format!("temporal entity {id} has no attribute {attr}"))),
        Some(false) => Err(NgsiError::not_found(format!("attribute {attr} of {id} has no instance {instance_id}"))),
        Some(true) => {
            let d = Delta::Remove {
                tenant: tenant.to_owned(),
                id: id.to_owned(),
                attr: name,
                instance_id: instance_id.to_owned(),
            };
            b.temporal.commit(vec![d]).await
        }
    }
}
