//! The path every southbound message takes, whatever its transport: find the config group of its
//! API key, find (or autoprovision) the device, parse the payload in the device's protocol, then
//! hand measures to the northbound writer, command results and configuration requests to the
//! command module. Transports only frame messages and decide when to acknowledge them.

use chrono::Utc;
use serde_json::{Map, Value, json};

use crate::error::{AgentError, Result};
use crate::mapping::{self, Measures, TypedMeasures};
use crate::metrics::Metrics;
use crate::model::{Device, Group};
use crate::ngsi::client::Tenant;
use crate::ngsi::writer::Accepted;
use crate::south::topic::{Kind, Protocol};
use crate::startup::Agent;

/// The `protocol` recorded on autoprovisioned devices, as the FIWARE agents name them.
pub const JSON_PROTOCOL: &str = "IoTA-JSON";
pub const UL_PROTOCOL: &str = "PDI-IoTA-UltraLight";

/// Where a message goes: its protocol, its group (if any) and its device.
#[derive(Debug, Clone)]
pub struct Target {
    pub protocol: Protocol,
    pub apikey: String,
    pub group: Option<Group>,
    pub device: Device,
}

/// The group resource of a protocol (`/iot/json`, `/iot/d`).
pub fn resource(agent: &Agent, protocol: Protocol) -> &str {
    match protocol {
        Protocol::Json => &agent.settings.default_resource,
        Protocol::Ul => &agent.settings.ul_resource,
    }
}

/// The group of an API key: the one with the protocol's resource, else any with that key. When
/// the message names no protocol, the JSON resource is tried, then the UltraLight one, and the
/// protocol is the found group's.
pub async fn find_group(agent: &Agent, hint: Option<Protocol>, apikey: &str) -> Result<(Protocol, Option<Group>)> {
    let order: &[Protocol] = match hint {
        Some(Protocol::Json) => &[Protocol::Json],
        Some(Protocol::Ul) => &[Protocol::Ul],
        None => &[Protocol::Json, Protocol::Ul],
    };
    for &p in order {
        if let Some(g) = agent.registry.find_group(resource(agent, p), apikey).await? {
            return Ok((p, Some(g)));
        }
    }
    if let Some(g) = agent.registry.find_group_by_apikey(apikey).await? {
        let p = hint.unwrap_or(if g.resource == agent.settings.ul_resource { Protocol::Ul } else { Protocol::Json });
        return Ok((p, Some(g)));
    }
    Ok((hint.unwrap_or(Protocol::Json), None))
}

/// The provisioned device a message comes from: looked up by API key and id, or by id alone
/// under the default API key.
async fn existing_device(agent: &Agent, apikey: &str, device_id: &str) -> Result<Option<Device>> {
    let key = if agent.settings.default_key.as_deref() == Some(apikey) { None } else { Some(apikey) };
    agent.registry.find_device(key, device_id).await
}

/// Checks that a message can be served before its payload is read: a known device, or a group
/// that allows autoprovisioning.
fn check_known(
    agent: &Agent,
    apikey: &str,
    device_id: &str,
    group: Option<&Group>,
    device: Option<&Device>,
) -> Result<()> {
    if device.is_some() {
        return Ok(());
    }
    let Some(group) = group else {
        return Err(AgentError::group_not_found(format!("Couldn't find device group for apikey {apikey}")));
    };
    if !group.autoprovision.unwrap_or(agent.settings.autoprovision) {
        return Err(AgentError::device_not_found(format!("No device was found with id:{device_id}")));
    }
    Ok(())
}

/// The stored device, or a new one created from the group (only the keys: the group's settings
/// are inherited at run time). Concurrent first messages of one device create it once.
async fn provision(
    agent: &Agent,
    protocol: Protocol,
    apikey: &str,
    device_id: &str,
    group: Option<&Group>,
    existing: Option<Device>,
    transport: &str,
) -> Result<Device> {
    if let Some(d) = existing {
        return Ok(d);
    }
    let Some(group) = group else {
        return Err(AgentError::group_not_found(format!("Couldn't find device group for apikey {apikey}")));
    };
    let device = Device {
        device_id: device_id.to_owned(),
        service: group.service.clone(),
        service_path: group.subservice.clone(),
        apikey: Some(apikey.to_owned()),
        protocol: Some(match protocol {
            Protocol::Json => JSON_PROTOCOL.to_owned(),
            Protocol::Ul => UL_PROTOCOL.to_owned(),
        }),
        transport: Some(transport.to_owned()),
        ..Default::default()
    };
    agent.registry.create_device_if_absent(device).await
}

/// Finds the group and the device of a message whose payload has been validated (the HTTP
/// routes parse first), autoprovisioning the device when allowed.
pub async fn locate(
    agent: &Agent,
    protocol: Protocol,
    apikey: &str,
    device_id: &str,
    transport: &str,
) -> Result<Target> {
    let (protocol, group) = find_group(agent, Some(protocol), apikey).await?;
    let existing = existing_device(agent, apikey, device_id).await?;
    check_known(agent, apikey, device_id, group.as_ref(), existing.as_ref())?;
    let device = provision(agent, protocol, apikey, device_id, group.as_ref(), existing, transport).await?;
    Ok(Target { protocol, apikey: apikey.to_owned(), group, device })
}

/// Handles one framed message (MQTT, AMQP): the returned future resolves once its measures are
/// in the broker (at once for command results and configuration requests). Errors are counted.
pub async fn handle(
    agent: &Agent,
    hint: Option<Protocol>,
    apikey: &str,
    device_id: &str,
    kind: &Kind,
    body: &[u8],
    transport: &str,
) -> Result<Accepted> {
    Metrics::inc(&agent.metrics.messages_received);
    let r = handle_inner(agent, hint, apikey, device_id, kind, body, transport).await;
    if r.is_err() {
        Metrics::inc(&agent.metrics.messages_rejected);
    }
    r
}

async fn handle_inner(
    agent: &Agent,
    hint: Option<Protocol>,
    apikey: &str,
    device_id: &str,
    kind: &Kind,
    body: &[u8],
    transport: &str,
) -> Result<Accepted> {
    let (protocol, group) = find_group(agent, hint, apikey).await?;
    let existing = existing_device(agent, apikey, device_id).await?;
    check_known(agent, apikey, device_id, group.as_ref(), existing.as_ref())?;
    let payload_type = existing
        .as_ref()
        .and_then(|d| d.payload_type.clone())
        .or_else(|| group.as_ref().and_then(|g| g.payload_type.clone()));
    // The payload is read before the device is created, so garbage provisions nothing.
    let parsed = parse(protocol, kind, body, payload_type.as_deref())?;
    let device = provision(agent, protocol, apikey, device_id, group.as_ref(), existing, transport).await?;
    let target = Target { protocol, apikey: apikey.to_owned(), group, device };
    dispatch_via(agent, &target, parsed, true).await
}

/// Command results a device reported: (command, result) pairs.
pub type CommandResults = Vec<(String, Value)>;

/// A payload read in its protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Measure groups, and (UltraLight) command results found among them.
    Measures {
        groups: Vec<TypedMeasures>,
        results: Vec<(String, Value)>,
    },
    Results(Vec<(String, Value)>),
    Configuration {
        kind: String,
        fields: Vec<String>,
    },
}

/// Reads a payload of the given kind in the given protocol; `BAD_PAYLOAD` when it does not parse.
pub fn parse(protocol: Protocol, kind: &Kind, body: &[u8], payload_type: Option<&str>) -> Result<Parsed> {
    match (protocol, kind) {
        (Protocol::Json, Kind::Measures) => {
            let groups = mapping::parse_json_measures_typed(body, payload_type)?;
            Ok(Parsed::Measures { groups, results: Vec::new() })
        }
        (Protocol::Ul, Kind::Measures) => {
            let text = utf8(body)?;
            let (groups, results) = parse_ul(text)?;
            Ok(Parsed::Measures { groups: groups.into_iter().map(TypedMeasures::untyped).collect(), results })
        }
        (Protocol::Json, Kind::Attribute(attr)) => {
            let groups = vec![TypedMeasures::untyped(mapping::single_attribute(attr, body))];
            Ok(Parsed::Measures { groups, results: Vec::new() })
        }
        (Protocol::Ul, Kind::Attribute(attr)) => {
            let mut m = Map::new();
            m.insert(attr.clone(), Value::from(utf8(body)?));
            Ok(Parsed::Measures { groups: vec![TypedMeasures::untyped(m)], results: Vec::new() })
        }
        (Protocol::Json, Kind::CommandResult) => Ok(Parsed::Results(mapping::parse_json_command_results(body)?)),
        (Protocol::Ul, Kind::CommandResult) => {
            let text = utf8(body)?;
            let mut results = Vec::new();
            for group in text.split('#').map(str::trim).filter(|g| !g.is_empty()) {
                let (_, cmd, value) = mapping::parse_ul_command_result(group)?;
                results.push((cmd, value));
            }
            if results.is_empty() {
                return Err(AgentError::bad_payload("empty command result"));
            }
            Ok(Parsed::Results(results))
        }
        (_, Kind::Configuration) => {
            let (kind, fields) = mapping::parse_configuration_request(body, protocol == Protocol::Ul)?;
            Ok(Parsed::Configuration { kind, fields })
        }
    }
}

fn utf8(body: &[u8]) -> Result<&str> {
    std::str::from_utf8(body).map_err(|_| AgentError::bad_payload("the payload is not UTF-8 text"))
}

/// Splits an UltraLight payload into measure groups and command results: a group whose first
/// field holds `@` after its first character (`dev@cmd|result`) is a command result.
pub fn parse_ul(text: &str) -> Result<(Vec<Measures>, CommandResults)> {
    let mut measures = Vec::new();
    let mut results = Vec::new();
    for group in text.trim().split('#') {
        let first = group.split('|').next().unwrap_or_default();
        if first.find('@').is_some_and(|i| i > 0) {
            let (_, cmd, value) = mapping::parse_ul_command_result(group.trim())?;
            results.push((cmd, value));
        } else {
            measures.push(group);
        }
    }
    let groups = if measures.is_empty() { Vec::new() } else { mapping::parse_ul_measures(&measures.join("#"))? };
    Ok((groups, results))
}

/// Acts on a parsed payload for its device; measures go straight to the writer, so the returned
/// future resolves once the broker accepted them (the HTTP southbound answers then).
pub async fn dispatch(agent: &Agent, target: &Target, parsed: Parsed) -> Result<Accepted> {
    dispatch_via(agent, target, parsed, false).await
}

/// [`dispatch`], with measures going through the durable buffer when `buffered` and the agent has
/// one: the returned future is then resolved once they are on the agent's disk (MQTT and AMQP
/// acknowledge then).
pub async fn dispatch_via(agent: &Agent, target: &Target, parsed: Parsed, buffered: bool) -> Result<Accepted> {
    match parsed {
        Parsed::Measures { groups, results } => {
            if !results.is_empty() {
                crate::commands::on_results(agent, &target.apikey, &target.device.device_id, results).await?;
            }
            if groups.is_empty() {
                return Ok(Accepted::ready());
            }
            write_measures(agent, target, groups, buffered).await
        }
        Parsed::Results(results) => {
            crate::commands::on_results(agent, &target.apikey, &target.device.device_id, results).await?;
            Ok(Accepted::ready())
        }
        Parsed::Configuration { kind, fields } => {
            crate::commands::on_configuration_request(agent, &target.apikey, &target.device.device_id, &kind, fields)
                .await?;
            Ok(Accepted::ready())
        }
    }
}

/// Maps measure groups to entities and queues them for the broker (the group's `cbHost`, else the
/// agent's), waiting while the writer's queue is full. Keeps the last measure on the device when
/// `storeLastMeasure` is on.
pub async fn write_measures(
    agent: &Agent,
    target: &Target,
    groups: Vec<TypedMeasures>,
    buffered: bool,
) -> Result<Accepted> {
    let device = &target.device;
    let group = target.group.as_ref();
    if device.store_last_measure.or(group.and_then(|g| g.store_last_measure)).unwrap_or(false) {
        let measure = if groups.len() == 1 {
            Value::Object(groups[0].measures.clone())
        } else {
            Value::Array(groups.iter().map(|g| Value::Object(g.measures.clone())).collect())
        };
        let mut stored = device.clone();
        stored.last_measure = Some(
            json!({ "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "measure": measure }),
        );
        agent.registry.update_device(stored).await?;
    }
    let resolved = mapping::resolve(device, group, &agent.settings);
    let entities = mapping::measures_to_entities_typed(&resolved, &groups, Utc::now())?;
    let tenant = Tenant::new(device.service.clone(), device.service_path.clone());
    let base = group.and_then(|g| g.cb_host.as_deref()).filter(|h| !h.is_empty()).map(broker_url);
    Metrics::add(&agent.metrics.measures_accepted, groups.len() as u64);
    if buffered && let Some(buffer) = &agent.buffer {
        return buffer.append(base.as_deref(), &tenant, entities).await;
    }
    Ok(agent.writer.submit(base.as_deref(), tenant, entities).await)
}

/// A group's `cbHost` as a URL: iotagent-node-lib accepts `host:port` and adds `http://`.
pub fn broker_url(cb_host: &str) -> String {
    if cb_host.contains("://") { cb_host.to_owned() } else { format!("http://{cb_host}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_payloads_parse_by_kind() {
        let p = parse(Protocol::Json, &Kind::Measures, br#"{"t": 21}"#, None).expect("object");
        let Parsed::Measures { groups, results } = p else { panic!("measures") };
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].measures["t"], json!(21));
        assert!(results.is_empty());
        assert!(parse(Protocol::Json, &Kind::Measures, b"not json", None).is_err());
        let p = parse(Protocol::Json, &Kind::CommandResult, br#"{"ping": "ok"}"#, None).expect("result");
        assert_eq!(p, Parsed::Results(vec![("ping".into(), json!("ok"))]));
    }

    #[test]
    fn a_cb_host_without_scheme_is_http() {
        assert_eq!(broker_url("orion:1026"), "http://orion:1026");
        assert_eq!(broker_url("https://b.example/"), "https://b.example/");
    }

    #[test]
    fn an_ultralight_single_attribute_keeps_its_text() {
        let p = parse(Protocol::Ul, &Kind::Attribute("t".into()), b"21.5", None).expect("text");
        let Parsed::Measures { groups, .. } = p else { panic!("measures") };
        assert_eq!(groups[0].measures["t"], json!("21.5"));
        assert!(parse(Protocol::Ul, &Kind::Attribute("t".into()), &[0xff, 0xfe], None).is_err());
    }
}
