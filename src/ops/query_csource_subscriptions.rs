//! Query Context Source Registration Subscriptions (GS CIM 009 §5.11.5): a tenant's
//! registration subscriptions, oldest first, paged.

use serde_json::Value;

use super::Broker;
use crate::error::{ErrorKind, NgsiError, NgsiResult};
use crate::notify::Kind;

pub fn run(
    b: &Broker,
    tenant: &str,
    ctx: &crate::jsonld::Context,
    offset: usize,
    limit: usize,
    max: usize,
    sys_attrs: bool,
) -> NgsiResult<(Vec<Value>, usize)> {
    if limit > max {
        return Err(NgsiError::new(ErrorKind::TooManyResults, format!("limit {limit} is above the maximum of {max}")));
    }
    Ok(b.notifier().list_of(Kind::Csource, tenant, ctx, offset, limit, sys_attrs))
}
