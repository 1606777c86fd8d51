//! Retrieve Subscription (GS CIM 009 §5.8.3).

use serde_json::Value;

use super::Broker;
use crate::error::NgsiResult;
use crate::jsonld::Context;

pub async fn run(b: &Broker, tenant: &str, id: &str, ctx: &Context, sys_attrs: bool) -> NgsiResult<Value> {
    super::check_entity_id(id)?;
    b.notifier().get(tenant, id, ctx, sys_attrs)
}
