//! Delete Subscription (GS CIM 009 §5.8.5).

use super::Broker;
use crate::error::NgsiResult;

pub async fn run(b: &Broker, tenant: &str, id: &str) -> NgsiResult<()> {
    super::check_entity_id(id)?;
    b.notifier().delete(tenant, id).await
}
