//! Retrieve EntityMap (GS CIM 009 §5.14.1): a live map of the tenant as §5.2.39 shows it.

use serde_json::Value;

use super::Broker;
use crate::error::{NgsiError, NgsiResult};

pub fn run(b: &Broker, tenant: &str, id: &str) -> NgsiResult<Value> {
    super::check_id(id, "entity map")?;
    b.entity_maps.get(tenant, id).map(|m| m.to_json()).ok_or_else(|| not_found(id))
}

/// The error for a map that does not exist, has expired or belongs to another tenant.
pub fn not_found(id: &str) -> NgsiError {
    NgsiError::not_found(format!("entity map {id} not found"))
}
