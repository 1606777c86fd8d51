//! Retrieve Context Source Registration Subscription (GS CIM 009 §5.11.4).

use serde_json::Value;

use super::Broker;
use crate::error::NgsiResult;
use crate::jsonld::Context;
use crate::notify::Kind;

pub async fn run(b: &Broker, tenant: &str, id: &str, ctx: &Context, sys_attrs: bool) -> NgsiResult<Value> {
    super::check_entity_id(id)?;
    b.notifier().get_of(Kind::Csource, tenant, id, ctx, sys_attrs)
}
