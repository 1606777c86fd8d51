//! Delete Entity (GS CIM 009 §5.6.6). When context sources are registered for the entity the
//! operation is distributed (§5.6.6.4): each source's answer, each registration that holds a
//! part the operation cannot reach, and the broker's own deletion are parts of one outcome.
//! All parts succeeding is a plain success; some failing is a partial success listing the
//! failures (207); all failing is the first failure.

use super::{Broker, check_entity_id, entity_not_found};
use crate::error::{NgsiError, NgsiResult};
use crate::store::{Mutation, Write};

/// Returns the failed parts of a partial success (empty: everything succeeded).
pub async fn run(b: &Broker, tenant: &str, id: &str, dist: &crate::forward::Dist) -> NgsiResult<Vec<NgsiError>> {
    check_entity_id(id)?;
    if !b.forwarder.active(tenant, dist) {
        b.require_tenant(tenant).await?;
        b.write_one(tenant, false, delete_write(id)).await?;
        return Ok(Vec::new());
    }
    let local = b.store.get(tenant, id).await?;
    let types = local.as_ref().map(|e| e.type_names()).unwrap_or_default();
    let parts = b.forwarder.delete(dist, tenant, id, &types).await;
    if parts.is_empty() {
        b.require_tenant(tenant).await?;
        b.write_one(tenant, false, delete_write(id)).await?;
        return Ok(Vec::new());
    }
    let proxied_done = parts.iter().any(|p| p.proxied && p.result.is_ok());
    let mut succeeded = parts.iter().any(|p| p.result.is_ok());
    let mut errors: Vec<NgsiError> = parts.into_iter().filter_map(|p| p.result.err()).collect();
    // The broker's part: its copy, if it has one. Without one, an exclusive or redirect source
    // that deleted the entity held what there was.
    match local {
        Some(_) => match b.write_one(tenant, false, delete_write(id)).await {
            Ok(_) => succeeded = true,
            Err(e) => errors.push(e),
        },
        None if proxied_done => {}
        None => errors.push(entity_not_found(id)),
    }
    match succeeded {
        true => Ok(errors),
        false => Err(errors.into_iter().next().unwrap_or_else(|| entity_not_found(id))),
    }
}

/// The write that deletes `id`, or fails with 404.
pub fn delete_write(id: &str) -> Write {
    let owned = id.to_owned();
    Write::new(id, move |cur| match cur {
        Some(_) => Ok(Mutation::Delete),
        None => Err(entity_not_found(&owned)),
    })
}
