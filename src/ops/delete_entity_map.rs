//! Delete EntityMap (GS CIM 009 §5.14.3): forgets a live map of the tenant.

use super::Broker;
use crate::error::NgsiResult;

pub fn run(b: &Broker, tenant: &str, id: &str) -> NgsiResult<()> {
    super::check_id(id, "entity map")?;
    if b.entity_maps.remove(tenant, id) { Ok(()) } else { Err(super::retrieve_entity_map::not_found(id)) }
}
