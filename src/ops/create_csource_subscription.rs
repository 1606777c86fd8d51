//! Create Context Source Registration Subscription (GS CIM 009 §5.11.2): validates the body with
//! the request's context and hands it to the notifier, which persists it and sends it the
//! registrations it already matches.

use std::sync::Arc;

use serde_json::Value;

use super::Broker;
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::notify::Kind;

pub async fn run(b: &Broker, tenant: &str, body: &Value, ctx: Arc<Context>) -> NgsiResult<String> {
    let mut obj =
        body.as_object().cloned().ok_or_else(|| NgsiError::invalid("a subscription must be a JSON object"))?;
    obj.remove("@context");
    b.notifier().create_of(Kind::Csource, tenant, obj, ctx).await
}
