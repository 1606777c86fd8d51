//! Register Context Source (GS CIM 009 §5.9.2): validates the body with the request's context
//! and hands it to the registry, which checks conflicts, persists it and serves lookups.

use std::sync::Arc;

use serde_json::Value;

use super::Broker;
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;

pub async fn run(b: &Broker, tenant: &str, body: &Value, ctx: Arc<Context>) -> NgsiResult<String> {
    let mut obj =
        body.as_object().cloned().ok_or_else(|| NgsiError::invalid("a registration must be a JSON object"))?;
    obj.remove("@context");
    b.registry.create(tenant, obj, ctx).await
}
