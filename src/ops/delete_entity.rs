//! Delete Entity (GS CIM 009 §5.6.6).

use super::{Broker, check_entity_id, entity_not_found};
use crate::error::NgsiResult;
use crate::store::{Mutation, Write};

pub async fn run(b: &Broker, tenant: &str, id: &str, dist: &crate::forward::Dist) -> NgsiResult<()> {
    check_entity_id(id)?;
    if b.forwarder.active(tenant, dist) {
        let local = b.store.get(tenant, id).await?;
        let types = local.as_ref().map(|e| e.types.clone()).unwrap_or_default();
        // Context sources registered for the entity delete it too (§4.3.6).
        let (remote_had_it, _) = b.forwarder.delete(dist, tenant, id, &types).await;
        if local.is_none() && remote_had_it {
            return Ok(());
        }
    }
    b.require_tenant(tenant).await?;
    b.write_one(tenant, false, delete_write(id)).await?;
    Ok(())
}

/// The write that deletes `id`, or fails with 404.
pub fn delete_write(id: &str) -> Write {
    let owned = id.to_owned();
    Write::new(id, move |cur| match cur {
        Some(_) => Ok(Mutation::Delete),
        None => Err(entity_not_found(&owned)),
    })
}
