//! Measures to NGSI-LD, as iotagent-node-lib maps them: payload parsing (JSON, UltraLight 2.0),
//! the effective configuration of a device (device > group > agent), JEXL expressions, the type
//! mapping table, timestamps, and command payloads. Pure functions, no I/O.
//!
//! The signatures in this file are the contract the transports and commands code against. A
//! measure's way through: [`parse_json_measures`] / [`parse_ul`] (or [`single_attribute`]) →
//! [`resolve`] the device with its group → [`measures_to_entities`] → the upsert body. With
//! `payloadType` `ngsiv2`/`ngsild`, [`parse_json_measures_typed`] and
//! [`measures_to_entities_typed`] keep the attribute types. Commands: [`command_payload`],
//! [`parse_json_command_results`] / [`parse_ul_command_result`]; configuration:
//! [`parse_configuration_request`], [`configuration_payload`]. Other expressions (command
//! headers, endpoints): [`apply_expression`] over [`device_context`]; the provisioning API checks
//! expressions with [`validate`].
//!
//! Files: `resolve.rs` (effective configuration, entity id), `measures.rs` (the update rules),
//! `types.rs` (type table), `iso8601.rs` (timestamps), `jexl.rs` + `transforms.rs` + `js.rs`
//! (expressions with JavaScript semantics), `payload.rs` (JSON), `ultralight.rs`, `command.rs`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::config::Settings;
use crate::error::Result;
use crate::model::{Attribute, CommandDef, Device, Group, LazyAttribute, StaticAttribute};

mod command;
pub mod iso8601;
pub mod jexl;
mod js;
mod measures;
mod payload;
mod resolve;
mod transforms;
pub mod types;
pub mod ultralight;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod robustness;

pub use iso8601::strict_iso;
pub use jexl::{apply as apply_expression, evaluate, validate};
pub use js::Val;
pub use measures::entity_id_for;
pub use resolve::{device_context, urn};
pub use ultralight::{UlMessage, format_command as ul_command, parse_ul};

/// One measure group: measure name (`object_id`) → value, as reported (`TimeInstant` included).
pub type Measures = Map<String, Value>;

/// A measure group with the NGSI type each measure arrived with (`payloadType` `ngsiv2` /
/// `ngsild`), so a Relationship or a GeoProperty reported by a device stays one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypedMeasures {
    pub measures: Measures,
    /// Measure name → NGSI attribute type; measures without one are absent.
    pub types: std::collections::HashMap<String, String>,
}

impl TypedMeasures {
    pub fn untyped(measures: Measures) -> Self {
        TypedMeasures { measures, types: Default::default() }
    }
}

/// The effective configuration of one device: what the device sets, else its group, else the
/// agent's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub device: Device,
    pub group: Option<Group>,
    /// The entity id (URN-rewritten) and type measures go to. With an `entityNameExp`, the id
    /// of a given measure group comes from [`entity_id_for`].
    pub entity_id: String,
    pub entity_type: String,
    pub timestamp: bool,
    /// The `@context` placed in every entity sent (`null`: none configured).
    pub context: Value,
    /// `explicitAttrs`: a boolean, a JEXL string, or an array of names.
    pub explicit_attrs: Value,
    pub autoprovision: bool,
    /// `defaultEntityNameConjunction` (`:`), between type and device id in the default id.
    pub conjunction: String,
    /// The group's `entityNameExp`.
    pub entity_name_exp: Option<String>,
    /// Active attributes, static attributes, commands and lazy attributes: the device's, then
    /// the group's that the device does not redefine (by name).
    pub attributes: Vec<Attribute>,
    pub static_attributes: Vec<StaticAttribute>,
    pub commands: Vec<CommandDef>,
    pub lazy: Vec<LazyAttribute>,
    /// `payloadType` (`iotagent`, `ngsiv2`, `ngsild`).
    pub payload_type: Option<String>,
    pub timezone: Option<String>,
    /// `transport` (`MQTT`, `HTTP`, `AMQP`), `endpoint` (HTTP push commands; may be JEXL) and
    /// `cmdMode`, device first, then group.
    pub transport: Option<String>,
    pub endpoint: Option<String>,
    pub cmd_mode: Option<String>,
}

/// Resolves a device's effective configuration. The default entity id is
/// `urn:ngsi-ld:<entity_type><conjunction><device_id>`; an `entity_name` that is not an NGSI-LD
/// URN becomes `urn:ngsi-ld:<entity_type>:<entity_name>`.
pub fn resolve(device: &Device, group: Option<&Group>, settings: &Settings) -> Resolved {
    resolve::resolve(device, group, settings)
}

/// Turns measure groups (one per element of a multi-measure) into the entities of one upsert:
/// each element carries `@context`; ordered by `TimeInstant`; multi-entity attributes go to
/// their own entities; an entity with only `id` and `type` is left out. `BAD_TIMESTAMP` when
/// timestamps are on and a `TimeInstant` is not ISO 8601; `INVALID_EXPRESSION` when an
/// expression cannot be evaluated.
pub fn measures_to_entities(resolved: &Resolved, groups: &[Measures], now: DateTime<Utc>) -> Result<Vec<Value>> {
    measures::measures_to_entities(resolved, groups, now)
}

/// JSON payloads (`payloadType` `iotagent`, `ngsiv2` or `ngsild`): an object is one measure
/// group, an array of objects a multi-measure. `BAD_PAYLOAD` otherwise.
pub fn parse_json_measures(body: &[u8], payload_type: Option<&str>) -> Result<Vec<Measures>> {
    payload::parse_json_measures(body, payload_type)
}

/// [`parse_json_measures`] keeping each NGSI attribute's type (empty for `iotagent` payloads);
/// pass the result to [`measures_to_entities_typed`].
pub fn parse_json_measures_typed(body: &[u8], payload_type: Option<&str>) -> Result<Vec<TypedMeasures>> {
    payload::parse_json_measures_typed(body, payload_type)
}

/// [`measures_to_entities`] for measures that carry their NGSI types: a measure no attribute
/// maps (or an attribute provisioned without a type) takes the type it arrived with.
pub fn measures_to_entities_typed(
    resolved: &Resolved,
    groups: &[TypedMeasures],
    now: DateTime<Utc>,
) -> Result<Vec<Value>> {
    measures::measures_to_entities_typed(resolved, groups, now)
}

/// A single-attribute payload (`…/attrs/{attr}`): JSON if it parses, else the bytes as a hex
/// string.
pub fn single_attribute(attr: &str, body: &[u8]) -> Measures {
    payload::single_attribute(attr, body)
}

/// UltraLight 2.0 measures: `k|v|k|v`, groups separated by `#`, an optional leading timestamp
/// per group. `BAD_PAYLOAD` on a parse error.
pub fn parse_ul_measures(payload: &str) -> Result<Vec<Measures>> {
    ultralight::parse_ul_measures(payload)
}

/// An UltraLight command result `dev@cmd|result`: (device id, command, result).
pub fn parse_ul_command_result(payload: &str) -> Result<(String, String, Value)> {
    ultralight::parse_ul_command_result(payload)
}

/// A JSON command result `{"cmd": result, …}` → (command, result) pairs.
pub fn parse_json_command_results(body: &[u8]) -> Result<Vec<(String, Value)>> {
    payload::parse_json_command_results(body)
}

/// A configuration request `{"type": "configuration"|"subscription", "fields": [...]}` (JSON)
/// or `configuration|a|b` (UltraLight) → (type, fields).
pub fn parse_configuration_request(body: &[u8], ultralight: bool) -> Result<(String, Vec<String>)> {
    payload::parse_configuration_request(body, ultralight)
}

/// The payload sent to a device for a command, as bytes, JSON or UltraLight:
/// JSON `{"cmd": value}` (or the command's expression result), UltraLight `dev@cmd|value`; then
/// serialised per the command's `payloadType`.
pub fn command_payload(resolved: &Resolved, command: &CommandDef, value: &Value, ultralight: bool) -> Result<Vec<u8>> {
    command::command_payload(resolved, command, value, ultralight)
}

/// Configuration values pushed to a device (`configuration/values`), JSON or UltraLight, with
/// the `dt` stamp.
pub fn configuration_payload(
    device_id: &str,
    values: &Map<String, Value>,
    ultralight: bool,
    now: DateTime<Utc>,
) -> Vec<u8> {
    payload::configuration_payload(device_id, values, ultralight, now)
}
