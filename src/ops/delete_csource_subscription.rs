//! Delete Context Source Registration Subscription (GS CIM 009 §5.11.6).

use super::Broker;
use crate::error::NgsiResult;
use crate::notify::Kind;

pub async fn run(b: &Broker, tenant: &str, id: &str) -> NgsiResult<()> {
    super::check_entity_id(id)?;
    b.notifier().delete_of(Kind::Csource, tenant, id).await
}
