//! Update EntityMap (GS CIM 009 §5.14.2): a partial update of a live map. Only `expiresAt`
//! can change (the broker bounds it by the maximum lifetime; a past instant expires the map);
//! the output-only members (`id`, `type`, `entityMap`, `linkedMaps`) are ignored.

use serde_json::Value;

use super::Broker;
use crate::error::{NgsiError, NgsiResult};

pub fn run(b: &Broker, tenant: &str, id: &str, body: &Value) -> NgsiResult<()> {
    super::check_id(id, "entity map")?;
    let obj = body.as_object().ok_or_else(|| NgsiError::bad_data("an EntityMap fragment must be a JSON object"))?;
    let expires_at = match obj.get("expiresAt") {
        None => None,
        Some(Value::String(s)) => Some(
            crate::model::parse_datetime(s)
                .ok_or_else(|| NgsiError::bad_data(format!("expiresAt {s:?} is not a DateTime")))?,
        ),
        Some(other) => return Err(NgsiError::bad_data(format!("expiresAt must be a DateTime string, not {other}"))),
    };
    let applied = match expires_at {
        Some(at) => b.entity_maps.set_expiry(tenant, id, at),
        None => b.entity_maps.get(tenant, id).is_some(),
    };
    if applied { Ok(()) } else { Err(super::retrieve_entity_map::not_found(id)) }
}
