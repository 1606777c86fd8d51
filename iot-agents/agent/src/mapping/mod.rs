//! Measures to NGSI-LD, as iotagent-node-lib maps them: payload parsing (JSON, UltraLight 2.0),
//! the effective configuration of a device (device > group > agent), JEXL expressions, the type
//! mapping table, timestamps, and command payloads. Pure functions, no I/O.
//!
//! The signatures in this file are the contract the transports and commands code against.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::config::Settings;
use crate::error::{AgentError, Result};
use crate::model::{CommandDef, Device, Group};

/// One measure group: measure name (`object_id`) → value, as reported (`TimeInstant` included).
pub type Measures = Map<String, Value>;

/// The effective configuration of one device: what the device sets, else its group, else the
/// agent's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub device: Device,
    pub group: Option<Group>,
    /// The entity id (URN-rewritten) and type measures go to.
    pub entity_id: String,
    pub entity_type: String,
    pub timestamp: bool,
    /// The `@context` placed in every entity sent.
    pub context: Value,
}

/// Resolves a device's effective configuration.
pub fn resolve(device: &Device, group: Option<&Group>, settings: &Settings) -> Resolved {
    let entity_type = device
        .entity_type
        .clone()
        .or_else(|| group.and_then(|g| g.entity_type.clone()))
        .unwrap_or_else(|| "Thing".to_owned());
    let name = device.entity_name.clone().unwrap_or_else(|| format!("{}:{}", entity_type, device.device_id));
    let entity_id = if name.starts_with("urn:ngsi-ld:") { name } else { format!("urn:ngsi-ld:{entity_type}:{name}") };
    let context = group
        .and_then(|g| g.json_ld_context.clone())
        .unwrap_or_else(|| Value::from(settings.json_ld_context.first().cloned().unwrap_or_default()));
    Resolved {
        device: device.clone(),
        group: group.cloned(),
        entity_id,
        entity_type,
        timestamp: device.timestamp.or(group.and_then(|g| g.timestamp)).unwrap_or(settings.timestamp),
        context,
    }
}

/// Turns measure groups (one per element of a multi-measure) into the entities of one upsert:
/// each element carries `@context`; ordered by `TimeInstant`; multi-entity attributes go to
/// their own entities; an entity with only `id` and `type` is left out. `BAD_TIMESTAMP` when
/// timestamps are on and a `TimeInstant` is not ISO 8601; `INVALID_EXPRESSION` when an
/// expression cannot be evaluated.
pub fn measures_to_entities(resolved: &Resolved, groups: &[Measures], now: DateTime<Utc>) -> Result<Vec<Value>> {
    let _ = now;
    let mut out = Vec::new();
    for m in groups {
        let mut e = Map::new();
        e.insert("@context".into(), resolved.context.clone());
        e.insert("id".into(), Value::from(resolved.entity_id.clone()));
        e.insert("type".into(), Value::from(resolved.entity_type.clone()));
        for (k, v) in m {
            e.insert(k.clone(), serde_json::json!({"type": "Property", "value": v}));
        }
        if e.len() > 3 {
            out.push(Value::Object(e));
        }
    }
    Ok(out)
}

/// JSON payloads (`payloadType` `iotagent`, `ngsiv2` or `ngsild`): an object is one measure
/// group, an array of objects a multi-measure. `BAD_PAYLOAD` otherwise.
pub fn parse_json_measures(body: &[u8], payload_type: Option<&str>) -> Result<Vec<Measures>> {
    let _ = payload_type;
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(vec![m]),
        Ok(Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Value::Object(m) => Ok(m),
                _ => Err(AgentError::bad_payload("a multi-measure must be an array of objects")),
            })
            .collect(),
        _ => Err(AgentError::bad_payload("the payload is not a JSON object or array")),
    }
}

/// A single-attribute payload (`…/attrs/{attr}`): JSON if it parses, else the bytes as a hex
/// string.
pub fn single_attribute(attr: &str, body: &[u8]) -> Measures {
    let value = serde_json::from_slice::<Value>(body)
        .unwrap_or_else(|_| Value::from(body.iter().map(|b| format!("{b:02x}")).collect::<String>()));
    let mut m = Map::new();
    m.insert(attr.to_owned(), value);
    m
}

/// UltraLight 2.0 measures: `k|v|k|v`, groups separated by `#`, an optional leading timestamp
/// per group. `BAD_PAYLOAD` on a parse error.
pub fn parse_ul_measures(payload: &str) -> Result<Vec<Measures>> {
    let _ = payload;
    Err(AgentError::bad_payload("UltraLight parsing is not ready"))
}

/// An UltraLight command result `dev@cmd|result`: (device id, command, result).
pub fn parse_ul_command_result(payload: &str) -> Result<(String, String, Value)> {
    let _ = payload;
    Err(AgentError::bad_payload("UltraLight parsing is not ready"))
}

/// A JSON command result `{"cmd": result, …}` → (command, result) pairs.
pub fn parse_json_command_results(body: &[u8]) -> Result<Vec<(String, Value)>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m.into_iter().collect()),
        _ => Err(AgentError::bad_payload("a command result must be a JSON object")),
    }
}

/// A configuration request `{"type": "configuration"|"subscription", "fields": [...]}` (JSON)
/// or `configuration|a|b` (UltraLight) → (type, fields).
pub fn parse_configuration_request(body: &[u8], ultralight: bool) -> Result<(String, Vec<String>)> {
    let _ = (body, ultralight);
    Err(AgentError::bad_payload("configuration requests are not ready"))
}

/// The payload sent to a device for a command, as bytes, JSON or UltraLight:
/// JSON `{"cmd": value}` (or the command's expression result), UltraLight `dev@cmd|value`; then
/// serialised per the command's `payloadType`.
pub fn command_payload(resolved: &Resolved, command: &CommandDef, value: &Value, ultralight: bool) -> Result<Vec<u8>> {
    if ultralight {
        let v = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return Ok(format!("{}@{}|{}", resolved.device.device_id, command.name, v).into_bytes());
    }
    let mut m = Map::new();
    m.insert(command.name.clone(), value.clone());
    Ok(Value::Object(m).to_string().into_bytes())
}

/// Configuration values pushed to a device (`configuration/values`), JSON or UltraLight, with
/// the `dt` stamp.
pub fn configuration_payload(
    device_id: &str,
    values: &Map<String, Value>,
    ultralight: bool,
    now: DateTime<Utc>,
) -> Vec<u8> {
    let dt = now.format("%Y%m%dT%H%M%SZ").to_string();
    if ultralight {
        let mut s = format!("{device_id}@configuration");
        for (k, v) in values {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            s.push_str(&format!("|{k}={v}"));
        }
        s.push_str(&format!("|dt={dt}"));
        return s.into_bytes();
    }
    let mut m = values.clone();
    m.insert("dt".into(), Value::from(dt));
    Value::Object(m).to_string().into_bytes()
}
