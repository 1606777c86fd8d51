//! Retrieve Entity (GS CIM 009 §5.7.1): one entity by id; rendering options are applied by the
//! HTTP layer.

use std::sync::Arc;

use super::{Broker, check_entity_id, entity_not_found};
use crate::error::NgsiResult;
use crate::model::Entity;

pub async fn run(b: &Broker, tenant: &str, id: &str) -> NgsiResult<Arc<Entity>> {
    check_entity_id(id)?;
    b.require_tenant(tenant).await?;
    b.store.get(tenant, id).await?.ok_or_else(|| entity_not_found(id))
}
