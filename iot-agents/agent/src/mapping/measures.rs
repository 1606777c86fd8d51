//! From measures to NGSI-LD entities: the effective configuration of a device (device > group >
//! agent settings), its entity id, and the rules of iotagent-node-lib's update path: attribute
//! mapping, JEXL expressions in attribute order, `explicitAttrs`, `skipValue`, metadata,
//! timestamps (`TimeInstant` → `observedAt`), static attributes, multi-entity attributes, and the
//! ordering of a multi-measure by `TimeInstant`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::jexl::{self, Scope};
use super::{Measures, Resolved, js, types};
use crate::config::Settings;
use crate::error::{AgentError, Result};
use crate::model::{Attribute, Device, Group, StaticAttribute};

const URN: &str = "urn:ngsi-ld:";
const TIME_INSTANT: &str = "TimeInstant";

/// Resolves a device's effective configuration (see [`Resolved`]).
pub fn resolve(device: &Device, group: Option<&Group>, settings: &Settings) -> Resolved {
    let entity_type = device
        .entity_type
        .clone()
        .or_else(|| group.and_then(|g| g.entity_type.clone()))
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

/// The entity id one measure group goes to: the group's `entityNameExp` evaluated with the
/// measures when it yields a name, else the resolved entity id.
pub fn entity_id_for(resolved: &Resolved, measures: &Measures) -> String {
    if resolved.entity_name_exp.is_none() {
        return resolved.entity_id.clone();
    }
    entity_id_with(resolved, &device_context(resolved), measures)
}

fn entity_id_with(resolved: &Resolved, fixed: &Map<String, Value>, measures: &Measures) -> String {
    let Some(exp) = &resolved.entity_name_exp else {
        return resolved.entity_id.clone();
    };
    let ctx = Ctx { results: &Map::new(), fixed, measures };
    match jexl::compile(exp).map(|n| jexl::eval(&n, &ctx)) {
        Ok(Ok(Value::String(s))) if !s.is_empty() => urn(&resolved.entity_type, &s),
        Ok(Ok(v @ Value::Number(_))) => urn(&resolved.entity_type, &js::to_js_string(&v)),
        other => {
            tracing::debug!(expression = %exp, result = ?other, "entityNameExp gave no name; using the default entity id");
            resolved.entity_id.clone()
        }
    }
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

/// Expression scope: results of earlier expressions, then the fixed identifiers, then the
/// measures. Nothing is copied per attribute.
struct Ctx<'a> {
    results: &'a Map<String, Value>,
    fixed: &'a Map<String, Value>,
    measures: &'a Measures,
}

impl Scope for Ctx<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.results.get(name).or_else(|| {
            // The device's fields shadow measures of the same name, except static attributes,
            // which measures override.
            let fixed = self.fixed.get(name);
            let is_device_field = matches!(
                name,
                "id" | "entity_name" | "type" | "service" | "subservice" | "staticAttributes" | "metadata"
            );
            if is_device_field { fixed.or_else(|| self.measures.get(name)) } else { self.measures.get(name).or(fixed) }
        })
    }
}

/// Which attributes `explicitAttrs` lets through.
enum Explicit {
    All,
    Provisioned,
    Named(Vec<String>),
}

impl Explicit {
    fn from_value(v: &Value, ctx: &Ctx<'_>) -> Result<Explicit> {
        Ok(match v {
            Value::Bool(false) | Value::Null => Explicit::All,
            Value::Bool(true) => Explicit::Provisioned,
            Value::Array(items) => Explicit::Named(names(items)),
            Value::String(s) => {
                let node = jexl::compile(s)?;
                match jexl::eval(&node, ctx) {
                    Ok(Value::Array(items)) => Explicit::Named(names(&items)),
                    Ok(other) if js::truthy(&other) => Explicit::Provisioned,
                    Ok(_) => Explicit::All,
                    Err(e) => {
                        tracing::debug!(expression = %s, error = %e, "explicitAttrs failed; sending every attribute");
                        Explicit::All
                    }
                }
            }
            other => {
                if js::truthy(other) {
                    Explicit::Provisioned
                } else {
                    Explicit::All
                }
            }
        })
    }

    fn keeps(&self, provisioned: bool, name: &str, object_id: Option<&str>) -> bool {
        match self {
            Explicit::All => true,
            Explicit::Provisioned => provisioned,
            Explicit::Named(list) => list.iter().any(|n| n == name || Some(n.as_str()) == object_id),
        }
    }
}

/// The names an `explicitAttrs` array selects: strings, or objects with `object_id` / `name`.
fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| match i {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o.get("object_id").or_else(|| o.get("name")).and_then(Value::as_str).map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// A `TimeInstant` as strict ISO 8601 (a date, or a date and time with or without an offset).
pub fn strict_iso(v: &Value) -> Option<DateTime<Utc>> {
    let s = v.as_str()?.trim();
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' || !b[..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if b.len() > 10 && b[10] != b'T' {
        return None;
    }
    js::to_date(&Value::from(s))
}

/// One entity under construction.
struct Out {
    id: String,
    entity_type: String,
    attrs: Map<String, Value>,
}

/// See [`super::measures_to_entities`].
pub fn measures_to_entities(resolved: &Resolved, groups: &[Measures], now: DateTime<Utc>) -> Result<Vec<Value>> {
    let fixed = device_context(resolved);
    let mut batches: Vec<(DateTime<Utc>, Vec<Out>)> = Vec::with_capacity(groups.len());
    for m in groups {
        let order = time_instant(resolved, m).and_then(|v| js::to_date(&v)).unwrap_or(now);
        batches.push((order, group_to_entities(resolved, &fixed, m, now)?));
    }
    // A stable sort keeps reception order between measures of the same instant.
    batches.sort_by_key(|(t, _)| *t);
    let mut out = Vec::new();
    for (_, entities) in batches {
        for e in entities {
            if e.attrs.is_empty() {
                continue;
            }
            let mut obj = Map::with_capacity(e.attrs.len() + 3);
            if !resolved.context.is_null() {
                obj.insert("@context".into(), resolved.context.clone());
            }
            obj.insert("id".into(), Value::String(e.id));
            obj.insert("type".into(), Value::String(e.entity_type));
            obj.extend(e.attrs);
            out.push(Value::Object(obj));
        }
    }
    Ok(out)
}

/// The `TimeInstant` of a measure group: the measure itself, or a measure mapped to an
/// attribute named `TimeInstant`.
fn time_instant(r: &Resolved, m: &Measures) -> Option<Value> {
    if let Some(v) = m.get(TIME_INSTANT) {
        return Some(v.clone());
    }
    r.attributes
        .iter()
        .find(|a| a.name == TIME_INSTANT)
        .and_then(|a| m.get(a.object_id.as_deref().unwrap_or(&a.name)).cloned())
}

fn group_to_entities(r: &Resolved, fixed: &Map<String, Value>, m: &Measures, now: DateTime<Utc>) -> Result<Vec<Out>> {
    let observed = if r.timestamp {
        Some(match time_instant(r, m) {
            Some(v) => {
                let t = strict_iso(&v).ok_or_else(|| {
                    AgentError::bad_timestamp(format!("TimeInstant {v} is not an ISO 8601 date and time"))
                })?;
                js::iso(&t)
            }
            None => js::iso(&now),
        })
    } else {
        None
    };

    let mut results = Map::new();
    let explicit = Explicit::from_value(&r.explicit_attrs, &Ctx { results: &results, fixed, measures: m })?;
    let main_id = entity_id_with(r, fixed, m);
    let mut entities = vec![Out { id: main_id, entity_type: r.entity_type.clone(), attrs: Map::new() }];

    // Provisioned attributes, in order; each expression sees the results before it.
    let mut mapped_keys: Vec<&str> = Vec::with_capacity(r.attributes.len());
    for a in &r.attributes {
        let key = a.object_id.as_deref().unwrap_or(&a.name);
        mapped_keys.push(key);
        if a.name == TIME_INSTANT {
            continue;
        }
        let measured = m.get(key);
        let value = match &a.expression {
            Some(exp) => {
                let node = jexl::compile(exp)?;
                match jexl::eval(&node, &Ctx { results: &results, fixed, measures: m }) {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::debug!(attribute = %a.name, expression = %exp, error = %e, "expression failed; attribute dropped");
                        Value::Null
                    }
                }
            }
            None => match measured {
                Some(v) => v.clone(),
                None => continue,
            },
        };
        if !value.is_null() {
            results.insert(a.name.clone(), value.clone());
        }
        let skip = a.skip_value.as_ref().unwrap_or(&Value::Null);
        if value.is_null() || js::strict_eq(&value, skip) {
            continue;
        }
        if !explicit.keeps(true, &a.name, a.object_id.as_deref()) {
            continue;
        }
        let Some(attr) = attribute(a.attr_type.as_deref(), value, a.metadata.as_ref(), observed.as_deref()) else {
            continue;
        };
        let target = target_entity(r, a, &mut entities, &Ctx { results: &results, fixed, measures: m });
        entities[target].attrs.insert(a.name.clone(), Value::Object(attr));
    }

    // Measures no attribute maps pass through as Properties, unless explicitAttrs.
    for (k, v) in m {
        if k == TIME_INSTANT || mapped_keys.contains(&k.as_str()) {
            continue;
        }
        let name = match k.as_str() {
            "id" => "measure_id",
            "type" => "measure_type",
            other => other,
        };
        if entities[0].attrs.contains_key(name) || !explicit.keeps(false, name, Some(k)) {
            continue;
        }
        if let Some(attr) = attribute(None, v.clone(), None, observed.as_deref()) {
            entities[0].attrs.insert(name.to_owned(), Value::Object(attr));
        }
    }

    // Static attributes go with every update, unless explicitAttrs leaves them out.
    for s in &r.static_attributes {
        if !explicit.keeps(true, &s.name, None) {
            continue;
        }
        if let Some(attr) = static_attribute(s, observed.as_deref()) {
            entities[0].attrs.insert(s.name.clone(), Value::Object(attr));
        }
    }
    Ok(entities)
}

/// The index in `entities` of the entity a multi-entity attribute goes to (0: the device's).
fn target_entity(r: &Resolved, a: &Attribute, entities: &mut Vec<Out>, ctx: &Ctx<'_>) -> usize {
    let Some(name) = a.entity_name.as_deref().filter(|n| !n.is_empty()) else {
        return 0;
    };
    let entity_type = a.entity_type.clone().unwrap_or_else(|| r.entity_type.clone());
    // Upstream evaluates the name as an expression and falls back to the literal text.
    let name = match jexl::compile(name).map(|n| jexl::eval(&n, ctx)) {
        Ok(Ok(Value::String(s))) if !s.is_empty() => s,
        _ => name.to_owned(),
    };
    let id = urn(&entity_type, &name);
    if let Some(i) = entities.iter().position(|e| e.id == id && e.entity_type == entity_type) {
        return i;
    }
    entities.push(Out { id, entity_type, attrs: Map::new() });
    entities.len() - 1
}

/// An attribute in NGSI-LD form with its metadata as sub-properties and `observedAt`.
fn attribute(
    attr_type: Option<&str>,
    value: Value,
    metadata: Option<&Map<String, Value>>,
    observed: Option<&str>,
) -> Option<Map<String, Value>> {
    let mut attr = types::to_ngsi_ld(attr_type, value)?;
    if let Some(md) = metadata {
        for (k, v) in md {
            match k.as_str() {
                TIME_INSTANT => {}
                "unitCode" => {
                    let code = v.get("value").cloned().unwrap_or_else(|| v.clone());
                    attr.insert("unitCode".into(), Value::String(js::to_js_string(&code)));
                }
                _ => {
                    let (t, val) = match v {
                        Value::Object(o) if o.contains_key("value") => {
                            (o.get("type").and_then(Value::as_str), o.get("value").cloned().unwrap_or(Value::Null))
                        }
                        other => (None, other.clone()),
                    };
                    if let Some(sub) = types::to_ngsi_ld(t, val) {
                        attr.insert(k.clone(), Value::Object(sub));
                    }
                }
            }
        }
    }
    if let Some(at) = observed {
        attr.insert("observedAt".into(), Value::from(at));
    }
    Some(attr)
}

fn static_attribute(s: &StaticAttribute, observed: Option<&str>) -> Option<Map<String, Value>> {
    attribute(s.attr_type.as_deref(), s.value.clone(), s.metadata.as_ref(), observed)
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
    fn strict_iso_8601() {
        for ok in ["2024-01-02T03:04:05Z", "2024-01-02T03:04:05.123+02:00", "2024-01-02T03:04:05", "2024-01-02"] {
            assert!(strict_iso(&json!(ok)).is_some(), "{ok}");
        }
        for bad in [
            json!("2024-01-02 03:04:05"),
            json!("Tue, 1 Jul 2003 10:52:37 +0200"),
            json!(1_700_000_000),
            json!("2024-13-01"),
            json!("24-01-02"),
        ] {
            assert!(strict_iso(&bad).is_none(), "{bad}");
        }
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
