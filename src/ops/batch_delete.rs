//! Batch Entity Delete (GS CIM 009 §5.6.10): the body is a list of entity ids. Context sources
//! registered for `deleteBatch` on some of the entities delete them too (§4.3.6): an entity a
//! source deleted counts as deleted even when the broker did not hold it, and the refusal of
//! an exclusive or redirect source (which holds part of the entity) is that entity's error,
//! while the broker still deletes its own copy (§5.6.6.4: each part goes on its own).

use serde_json::Value;

use super::delete_entity::delete_write;
use super::{BatchOutcome, Broker, batch_items, local_types};
use crate::error::{ErrorKind, NgsiError, NgsiResult};
use crate::model::parse::is_uri;

pub async fn run(b: &Broker, tenant: &str, body: &Value, dist: &crate::forward::Dist) -> NgsiResult<BatchOutcome> {
    let items = batch_items(body)?;
    let forwarding = b.forwarder.active(tenant, dist);
    if !forwarding {
        b.require_tenant(tenant).await?;
    }
    let mut out = BatchOutcome::default();
    let mut ids = Vec::new();
    for item in items {
        match item.as_str() {
            Some(id) if is_uri(id) => ids.push(id),
            Some(id) => out.errors.push((id.to_owned(), NgsiError::bad_data(format!("{id:?} is not a URI")))),
            None => out.errors.push((String::new(), NgsiError::bad_data("batch delete takes a list of entity ids"))),
        }
    }
    if !forwarding {
        let writes = ids.into_iter().map(delete_write).collect();
        return super::batch_merge::collect(b, tenant, writes, out).await;
    }
    let mut entities = Vec::with_capacity(ids.len());
    for id in &ids {
        entities.push((*id, local_types(b, tenant, id).await?));
    }
    let remote = b.forwarder.batch_delete(dist, tenant, &entities).await;
    let tenant_exists = b.store.tenant_exists(tenant).await?;
    let mut writes = Vec::new();
    let mut deleted_remotely = Vec::new();
    let mut refused_by_source: Vec<(String, NgsiError)> = Vec::new();
    for (id, (deleted, refused)) in ids.into_iter().zip(remote) {
        if let Some(e) = refused {
            refused_by_source.push((id.to_owned(), e));
            if tenant_exists {
                writes.push(delete_write(id));
            }
            continue;
        }
        if deleted {
            deleted_remotely.push(id);
        }
        if tenant_exists {
            writes.push(delete_write(id));
        } else if deleted {
            out.success.push(id.to_owned());
        } else {
            out.errors.push((id.to_owned(), super::entity_not_found(id)));
        }
    }
    let mut out = super::batch_merge::collect(b, tenant, writes, out).await?;
    // What the broker did not hold but a source deleted was deleted.
    let (found, mut errors): (Vec<_>, Vec<_>) = std::mem::take(&mut out.errors)
        .into_iter()
        .partition(|(id, e)| e.kind == ErrorKind::ResourceNotFound && deleted_remotely.contains(&id.as_str()));
    out.success.extend(found.into_iter().map(|(id, _)| id));
    out.errors.append(&mut errors);
    // An entity a source refused is that entity's error, whatever became of the broker's copy.
    let refused = |id: &str| refused_by_source.iter().any(|(r, _)| r == id);
    out.success.retain(|id| !refused(id));
    out.errors.retain(|(id, _)| !refused(id));
    out.errors.extend(refused_by_source);
    Ok(out)
}
