//! Update Subscription (GS CIM 009 §5.8.2): a fragment replaces the members it names.

use std::sync::Arc;

use serde_json::Value;

use super::Broker;
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;

pub async fn run(b: &Broker, tenant: &str, id: &str, body: &Value, ctx: Arc<Context>) -> NgsiResult<()> {
    super::check_entity_id(id)?;
    let mut obj = body.as_object().cloned().ok_or_else(|| NgsiError::invalid("a fragment must be a JSON object"))?;
    obj.remove("@context");
    b.notifier().update(tenant, id, obj, ctx).await
}
