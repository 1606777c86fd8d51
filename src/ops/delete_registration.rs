//! Delete Context Source Registration (GS CIM 009 §5.9.4).

use super::Broker;
use crate::error::NgsiResult;

pub async fn run(b: &Broker, tenant: &str, id: &str) -> NgsiResult<()> {
    super::check_id(id, "registration")?;
    b.registry.delete(tenant, id).await
}
