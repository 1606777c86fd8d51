//! Update Context Source Registration Subscription (GS CIM 009 §5.11.3): a fragment replaces the
//! members it names; the subscription is then sent every registration it matches.

use std::sync::Arc;

use serde_json::Value;

use super::Broker;
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::notify::Kind;

pub async fn run(b: &Broker, tenant: &str, id: &str, body: &Value, ctx: Arc<Context>) -> NgsiResult<()> {
    super::check_entity_id(id)?;
    let mut obj = body.as_object().cloned().ok_or_else(|| NgsiError::invalid("a fragment must be a JSON object"))?;
    obj.remove("@context");
    b.notifier().update_of(Kind::Csource, tenant, id, obj, ctx).await
}
