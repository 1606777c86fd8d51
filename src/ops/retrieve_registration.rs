//! Retrieve Context Source Registration (GS CIM 009 §5.10.1).

use serde_json::Value;

use super::Broker;
use crate::error::NgsiResult;
use crate::jsonld::Context;

pub fn run(b: &Broker, tenant: &str, id: &str, ctx: &Context, sys_attrs: bool) -> NgsiResult<Value> {
    super::check_id(id, "registration")?;
    b.registry.get(tenant, id, ctx, sys_attrs)
}
