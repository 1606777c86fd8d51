//! The effective configuration of a device: what the device sets, else its group, else the
//! agent's settings, decided at run time (a device record never copies its group's values), and
//! the entity id it reports to.

use serde_json::{Map, Value};

use super::Resolved;
use crate::config::Settings;
use crate::model::{Device, Group};

const URN: &str = "urn:ngsi-ld:";

/// Resolves a device's effective configuration (see [`Resolved`]).
pub fn resolve(device: &Device, group: Option<&Group>, settings: &Settings) -> Resolved {
    let entity_type = device
        .entity_type
        .clone()
        .filter(|t| !t.is_empty())
        .or_else(|| group.and_then(|g| g.entity_type.clone()).filter(|t| !t.is_empty()))
        .unwrap_or_else(|| "Thing".to_owned());
    let conjunction = group.and_then(|g| g.default_entity_name_conjunction.clone()).unwrap_or_else(|| ":".to_owned());
    let entity_id = match &device.entity_name {
        Some(name) if !name.is_empty() => urn(&entity_type, name),
        _ => format!("{URN}{entity_type}{conjunction}{}", device.device_id),
    };
    let context = match group.and_then(|g| g.json_ld_context.clone()) {
        Some(c) => c,
        None => match settings.json_ld_context.as_slice() {
            [] => Value::Null,
            [one] => Value::from(one.clone()),
            many => Value::from(many.to_vec()),
        },
    };
    let explicit_attrs = device
        .explicit_attrs
        .clone()
        .or_else(|| group.and_then(|g| g.explicit_attrs.clone()))
        .unwrap_or(Value::Bool(settings.explicit_attrs));
    Resolved {
        entity_id,
        timestamp: device.timestamp.or(group.and_then(|g| g.timestamp)).unwrap_or(settings.timestamp),
        context,
        explicit_attrs,
        autoprovision: device.autoprovision.or(group.and_then(|g| g.autoprovision)).unwrap_or(settings.autoprovision),
        conjunction,
        entity_name_exp: group.and_then(|g| g.entity_name_exp.clone()).filter(|e| !e.trim().is_empty()),
        attributes: merge(&device.attributes, group.map(|g| g.attributes.as_slice()), |a| &a.name),
        static_attributes: merge(&device.static_attributes, group.map(|g| g.static_attributes.as_slice()), |a| &a.name),
        commands: merge(&device.commands, group.map(|g| g.commands.as_slice()), |a| &a.name),
        lazy: merge(&device.lazy, group.map(|g| g.lazy.as_slice()), |a| &a.name),
        payload_type: device.payload_type.clone().or_else(|| group.and_then(|g| g.payload_type.clone())),
        timezone: device.timezone.clone().or_else(|| group.and_then(|g| g.timezone.clone())),
        transport: device.transport.clone().or_else(|| group.and_then(|g| g.transport.clone())),
        endpoint: device.endpoint.clone().or_else(|| group.and_then(|g| g.endpoint.clone())),
        cmd_mode: device.cmd_mode.clone().or_else(|| group.and_then(|g| g.cmd_mode.clone())),
        entity_type,
        device: device.clone(),
        group: group.cloned(),
    }
}

/// The device's items first, then the group's whose name the device does not define.
fn merge<T: Clone>(device: &[T], group: Option<&[T]>, name: impl Fn(&T) -> &String) -> Vec<T> {
    let mut out = device.to_vec();
    for g in group.unwrap_or_default() {
        if !device.iter().any(|d| name(d) == name(g)) {
            out.push(g.clone());
        }
    }
    out
}

/// `urn:ngsi-ld:<type>:<name>` unless `name` already is an NGSI-LD URN.
pub fn urn(entity_type: &str, name: &str) -> String {
    if name.starts_with(URN) { name.to_owned() } else { format!("{URN}{entity_type}:{name}") }
}

/// The identifiers every expression sees besides the measures: `id` (the device id),
/// `entity_name` (the entity id), `type`, `service`, `subservice`, `staticAttributes`,
/// `metadata.<attribute>.<name>`, and each static attribute by name. For the expressions of
/// command headers, HTTP endpoints and the like.
pub fn device_context(r: &Resolved) -> Map<String, Value> {
    let mut m = Map::new();
    // Static attributes by name come first so the device's own fields win over them.
    for s in &r.static_attributes {
        m.insert(s.name.clone(), s.value.clone());
    }
    m.insert("id".into(), Value::from(r.device.device_id.clone()));
    m.insert("entity_name".into(), Value::from(r.entity_id.clone()));
    m.insert("type".into(), Value::from(r.entity_type.clone()));
    m.insert("service".into(), Value::from(r.device.service.clone()));
    m.insert("subservice".into(), Value::from(r.device.service_path.clone()));
    m.insert(
        "staticAttributes".into(),
        Value::Array(r.static_attributes.iter().filter_map(|s| serde_json::to_value(s).ok()).collect()),
    );
    let mut metadata = Map::new();
    for a in &r.attributes {
        if let Some(md) = &a.metadata {
            let flat: Map<String, Value> =
                md.iter().map(|(k, v)| (k.clone(), v.get("value").cloned().unwrap_or_else(|| v.clone()))).collect();
            metadata.insert(a.name.clone(), Value::Object(flat));
        }
    }
    m.insert("metadata".into(), Value::Object(metadata));
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urn_rewriting() {
        assert_eq!(urn("T", "x"), "urn:ngsi-ld:T:x");
        assert_eq!(urn("T", "urn:ngsi-ld:U:x"), "urn:ngsi-ld:U:x");
        assert_eq!(urn("T", "T:x"), "urn:ngsi-ld:T:T:x");
    }

    #[test]
    fn the_device_context_names_the_device() {
        let d = Device { device_id: "d".into(), service: "s".into(), service_path: "/p".into(), ..Default::default() };
        let r = resolve(&d, None, &Settings::default());
        let c = Value::Object(device_context(&r));
        assert_eq!(c["id"], json!("d"));
        assert_eq!(c["type"], json!("Thing"));
        assert_eq!(c["entity_name"], json!("urn:ngsi-ld:Thing:d"));
        assert_eq!(c["service"], json!("s"));
        assert_eq!(c["subservice"], json!("/p"));
        assert_eq!(c["staticAttributes"], json!([]));
    }
}
