//! The provisioning records (config groups, devices, pending commands) under the field names of
//! iotagent-node-lib's provisioning API, so a request body deserialises straight into them and a
//! record serialises back into the shape `GET` returns.
//!
//! Every optional setting stays an `Option`: a device inherits what it leaves unset from its
//! group, and the group from the agent's configuration, at run time (`resolve.rs` decides the
//! precedence), never by copying values at provisioning time.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An active attribute: a measure (`object_id`) mapped to an entity attribute (`name`, `type`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Attribute {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub attr_type: Option<String>,
    /// A JEXL expression whose result replaces the measured value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    /// A value that makes the attribute be skipped (`null` by default).
    #[serde(rename = "skipValue", default, skip_serializing_if = "Option::is_none")]
    pub skip_value: Option<Value>,
    /// Multi-entity: the attribute goes to this entity instead of the device's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_type: Option<String>,
    /// NGSI metadata, rendered as NGSI-LD sub-attributes (`unitCode` as a plain string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// A lazy attribute: read from the device when the broker forwards a retrieval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LazyAttribute {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub attr_type: Option<String>,
}

/// Per-command MQTT delivery options (`qos` is a string `"0"`..`"2"` upstream; numbers are accepted).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MqttOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain: Option<bool>,
}

/// A command the device accepts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandDef {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub attr_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// A JEXL expression producing the payload sent to the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    /// `json` | `text` | `binaryfromstring` | `binaryfromhex` | `binaryfromjson`.
    #[serde(rename = "payloadType", default, skip_serializing_if = "Option::is_none")]
    pub payload_type: Option<String>,
    #[serde(rename = "contentType", default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Extra headers of an HTTP push; values may be JEXL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttOptions>,
}

/// A static attribute: added to every update of the device's entity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StaticAttribute {
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub attr_type: Option<String>,
    #[serde(default)]
    pub value: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// A config group ("service group"): defaults for every device reporting with its API key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// The registry's record id (MongoDB's `_id` in iotagent-node-lib's layout).
    #[serde(rename = "_id", default, skip_serializing_if = "String::is_empty")]
    pub record_id: String,
    /// Always taken from `fiware-service`, lower-cased.
    #[serde(default)]
    pub service: String,
    /// Always taken from `fiware-servicepath`.
    #[serde(default)]
    pub subservice: String,
    pub apikey: String,
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_type: Option<String>,
    #[serde(rename = "cbHost", default, skip_serializing_if = "Option::is_none")]
    pub cb_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoprovision: Option<bool>,
    /// A boolean or a JEXL string.
    #[serde(rename = "explicitAttrs", default, skip_serializing_if = "Option::is_none")]
    pub explicit_attrs: Option<Value>,
    #[serde(rename = "entityNameExp", default, skip_serializing_if = "Option::is_none")]
    pub entity_name_exp: Option<String>,
    #[serde(rename = "defaultEntityNameConjunction", default, skip_serializing_if = "Option::is_none")]
    pub default_entity_name_conjunction: Option<String>,
    #[serde(rename = "ngsiVersion", default, skip_serializing_if = "Option::is_none")]
    pub ngsi_version: Option<String>,
    #[serde(rename = "payloadType", default, skip_serializing_if = "Option::is_none")]
    pub payload_type: Option<String>,
    #[serde(rename = "useCBflowControl", default, skip_serializing_if = "Option::is_none")]
    pub use_cb_flow_control: Option<bool>,
    #[serde(rename = "storeLastMeasure", default, skip_serializing_if = "Option::is_none")]
    pub store_last_measure: Option<bool>,
    #[serde(rename = "cmdMode", default, skip_serializing_if = "Option::is_none")]
    pub cmd_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Orbis extension: the JSON-LD `@context` of this group's entities (a URL or an array), in
    /// place of the agent-wide one (FIWARE/tutorials.IoT-Agent#31).
    #[serde(rename = "jsonLdContext", default, skip_serializing_if = "Option::is_none")]
    pub json_ld_context: Option<Value>,
    #[serde(default)]
    pub attributes: Vec<Attribute>,
    #[serde(default)]
    pub lazy: Vec<LazyAttribute>,
    #[serde(default)]
    pub commands: Vec<CommandDef>,
    #[serde(default)]
    pub static_attributes: Vec<StaticAttribute>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub internal_attributes: Value,
}

/// A provisioned (or autoprovisioned) device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub device_id: String,
    /// Always taken from `fiware-service`, lower-cased.
    #[serde(default)]
    pub service: String,
    /// Always taken from `fiware-servicepath`.
    #[serde(default)]
    pub service_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apikey: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polling: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default)]
    pub attributes: Vec<Attribute>,
    #[serde(default)]
    pub lazy: Vec<LazyAttribute>,
    #[serde(default)]
    pub commands: Vec<CommandDef>,
    #[serde(default)]
    pub static_attributes: Vec<StaticAttribute>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub internal_attributes: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoprovision: Option<bool>,
    #[serde(rename = "explicitAttrs", default, skip_serializing_if = "Option::is_none")]
    pub explicit_attrs: Option<Value>,
    #[serde(rename = "ngsiVersion", default, skip_serializing_if = "Option::is_none")]
    pub ngsi_version: Option<String>,
    #[serde(rename = "payloadType", default, skip_serializing_if = "Option::is_none")]
    pub payload_type: Option<String>,
    #[serde(rename = "useCBflowControl", default, skip_serializing_if = "Option::is_none")]
    pub use_cb_flow_control: Option<bool>,
    #[serde(rename = "storeLastMeasure", default, skip_serializing_if = "Option::is_none")]
    pub store_last_measure: Option<bool>,
    #[serde(rename = "lastMeasure", default, skip_serializing_if = "Option::is_none")]
    pub last_measure: Option<Value>,
    #[serde(rename = "cmdMode", default, skip_serializing_if = "Option::is_none")]
    pub cmd_mode: Option<String>,
    /// The id of the context source registration made for the device's commands.
    #[serde(rename = "registrationId", default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<String>,
    /// Broker subscriptions made for the device's configuration retrieval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<DeviceSubscription>,
}

/// A broker subscription made for a device (`{id, triggers}`, as iotagent-node-lib stores it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceSubscription {
    pub id: String,
    /// The attributes watched (sorted).
    pub triggers: Vec<String>,
}

/// The state of a command sent to a device (`<cmd>_status` in the broker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CommandStatus {
    Pending,
    Delivered,
    Ok,
    Error,
}

impl CommandStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Pending => "PENDING",
            CommandStatus::Delivered => "DELIVERED",
            CommandStatus::Ok => "OK",
            CommandStatus::Error => "ERROR",
        }
    }
}

/// A command accepted from the broker and not yet answered by the device. Kept in the registry
/// so it survives a restart and any agent instance can serve a polling device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingCommand {
    /// Unique id of this command instance.
    pub id: String,
    pub service: String,
    pub subservice: String,
    pub device_id: String,
    pub apikey: String,
    pub name: String,
    pub value: Value,
    pub status: CommandStatus,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// When the command expires without an answer (milliseconds since the Unix epoch).
    pub expires_ms: i64,
}
