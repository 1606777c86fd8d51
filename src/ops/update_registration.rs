//! Update Context Source Registration (GS CIM 009 §5.9.3): a fragment replaces the members it
//! names; the result is validated and conflict-checked as a new registration would be.

use std::sync::Arc;

use serde_json::Value;

use super::Broker;
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;

pub async fn run(b: &Broker, tenant: &str, id: &str, body: &Value, ctx: Arc<Context>) -> NgsiResult<()> {
    super::check_id(id, "registration")?;
    let mut obj = body.as_object().cloned().ok_or_else(|| NgsiError::invalid("a fragment must be a JSON object"))?;
    obj.remove("@context");
    b.registry.update(tenant, id, obj, ctx).await
}
