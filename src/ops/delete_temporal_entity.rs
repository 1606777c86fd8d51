//! Delete Temporal Representation of an Entity (GS CIM 009 §5.6.16): the entity's whole
//! history goes.

use super::{Broker, check_entity_id};
use crate::error::NgsiResult;
use crate::temporal::{Delta, not_found};

pub async fn run(b: &Broker, tenant: &str, id: &str) -> NgsiResult<()> {
    check_entity_id(id)?;
    super::require_temporal_tenant(b, tenant).await?;
    let _writing = b.temporal.lock().await;
    if b.temporal.with_entity(tenant, id, |_| ()).is_none() {
        return Err(not_found(id));
    }
    b.temporal.commit(vec![Delta::Drop { tenant: tenant.to_owned(), id: id.to_owned() }]).await
}
