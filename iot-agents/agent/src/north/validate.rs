//! Validation of provisioning bodies, as iotagent-node-lib's JSON-schema templates do it: the
//! attribute, lazy and command items of devices are strict (only the listed keys, names matching
//! `^([^<>();'=\"]+)+$`), every violation is `WRONG_SYNTAX`, and the JEXL strings (expressions,
//! `entityNameExp`, `explicitAttrs`) must parse. Works on the raw JSON, before it is
//! deserialised, because serde would silently drop unknown keys.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::error::{AgentError, Result};

/// Characters upstream forbids in `object_id`, `name` and `type`.
static NAME: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r#"^[^<>();'="]+$"#).ok());
/// Multi-entity `entity_name` / `entity_type` may contain parentheses.
static ENTITY: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r#"^[^<>;'="]+$"#).ok());

const ATTRIBUTE_KEYS: &[&str] =
    &["object_id", "name", "type", "expression", "skipValue", "entity_name", "entity_type", "metadata"];
const LAZY_KEYS: &[&str] = &["object_id", "name", "type"];
const COMMAND_KEYS: &[&str] =
    &["object_id", "name", "type", "value", "expression", "payloadType", "contentType", "headers", "mqtt"];

fn matches(re: &LazyLock<Option<Regex>>, s: &str) -> bool {
    re.as_ref().is_some_and(|r| r.is_match(s))
}

/// The body as a JSON object, or `WRONG_SYNTAX`.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(AgentError::wrong_syntax("the body must be a JSON object")),
        Err(e) => Err(AgentError::wrong_syntax(format!("the body is not valid JSON: {e}"))),
    }
}

/// The array under `key` of a creation body (`devices`, `groups`, `services`).
pub fn items<'a>(body: &'a Map<String, Value>, key: &str) -> Result<&'a Vec<Value>> {
    match body.get(key) {
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(AgentError::wrong_syntax(format!("{key} must be an array"))),
        None => Err(AgentError::wrong_syntax(format!("the body must contain the {key} array"))),
    }
}

/// A JEXL string must parse (the mapping library's parser, the one measures are evaluated with).
pub fn check_jexl(what: &str, expr: &str) -> Result<()> {
    crate::mapping::jexl::validate(expr)
        .map_err(|_| AgentError::invalid_expression(format!("Invalid expression in {what}: {expr}")))
}

fn optional_string(item: &Map<String, Value>, key: &str, list: &str) -> Result<Option<String>> {
    match item.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        _ => Err(AgentError::wrong_syntax(format!("{list}: {key} must be a string"))),
    }
}

fn check_item(item: &Value, list: &str, allowed: &[&str], strict: bool) -> Result<()> {
    let Value::Object(item) = item else {
        return Err(AgentError::wrong_syntax(format!("every item of {list} must be an object")));
    };
    if strict && let Some(k) = item.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(AgentError::wrong_syntax(format!("{list}: unknown property {k}")));
    }
    for key in ["object_id", "name", "type"] {
        if let Some(s) = optional_string(item, key, list)?
            && !matches(&NAME, &s)
        {
            return Err(AgentError::wrong_syntax(format!("{list}: {key} {s:?} has forbidden characters")));
        }
    }
    for key in ["entity_name", "entity_type"] {
        if allowed.contains(&key)
            && let Some(s) = optional_string(item, key, list)?
            && !matches(&ENTITY, &s)
        {
            return Err(AgentError::wrong_syntax(format!("{list}: {key} {s:?} has forbidden characters")));
        }
    }
    for key in ["payloadType", "contentType"] {
        if allowed.contains(&key) {
            optional_string(item, key, list)?;
        }
    }
    if let Some(m) = item.get("metadata")
        && !m.is_object()
    {
        return Err(AgentError::wrong_syntax(format!("{list}: metadata must be an object")));
    }
    if let Some(h) = item.get("headers")
        && !h.is_object()
    {
        return Err(AgentError::wrong_syntax(format!("{list}: headers must be an object")));
    }
    if let Some(mqtt) = item.get("mqtt") {
        check_mqtt(mqtt, list)?;
    }
    if let Some(e) = optional_string(item, "expression", list)? {
        check_jexl(&format!("{list} expression"), &e)?;
    }
    Ok(())
}

fn check_mqtt(mqtt: &Value, list: &str) -> Result<()> {
    let Value::Object(m) = mqtt else {
        return Err(AgentError::wrong_syntax(format!("{list}: mqtt must be an object")));
    };
    for (k, v) in m {
        let ok = match (k.as_str(), v) {
            ("retain", Value::Bool(_)) => true,
            ("qos", Value::String(s)) => matches!(s.as_str(), "0" | "1" | "2"),
            ("qos", Value::Number(n)) => n.as_u64().is_some_and(|q| q <= 2),
            _ => false,
        };
        if !ok {
            return Err(AgentError::wrong_syntax(format!("{list}: mqtt.{k} is not valid")));
        }
    }
    Ok(())
}

/// Checks the mapping lists and JEXL strings of one device or group (`strict` for devices).
pub fn check_mappings(item: &Map<String, Value>, strict: bool) -> Result<()> {
    for (list, allowed) in [("attributes", ATTRIBUTE_KEYS), ("lazy", LAZY_KEYS), ("commands", COMMAND_KEYS)] {
        match item.get(list) {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                for i in a {
                    check_item(i, list, allowed, strict)?;
                    if i.get("name").is_none() {
                        return Err(AgentError::wrong_syntax(format!("{list}: every item needs a name")));
                    }
                }
            }
            Some(_) => return Err(AgentError::wrong_syntax(format!("{list} must be an array"))),
        }
    }
    match item.get("static_attributes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            if a.iter().any(|s| s.get("name").and_then(Value::as_str).is_none()) {
                return Err(AgentError::wrong_syntax("static_attributes: every item needs a name"));
            }
        }
        Some(_) => return Err(AgentError::wrong_syntax("static_attributes must be an array")),
    }
    match item.get("explicitAttrs") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        Some(Value::String(s)) => check_jexl("explicitAttrs", s)?,
        Some(_) => return Err(AgentError::wrong_syntax("explicitAttrs must be a boolean or a JEXL string")),
    }
    if let Some(v) = item.get("entityNameExp") {
        match v {
            Value::String(s) => check_jexl("entityNameExp", s)?,
            Value::Null => {}
            _ => return Err(AgentError::wrong_syntax("entityNameExp must be a string")),
        }
    }
    Ok(())
}

/// A string field, if present, must be a string (other JSON types are `WRONG_SYNTAX`).
pub fn string_field<'a>(item: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>> {
    match item.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AgentError::wrong_syntax(format!("{key} must be a string"))),
    }
}

/// Deserialises a checked item into a model record (a type mismatch is `WRONG_SYNTAX`).
pub fn into_record<T: serde::de::DeserializeOwned>(item: Map<String, Value>) -> Result<T> {
    serde_json::from_value(Value::Object(item)).map_err(|e| AgentError::wrong_syntax(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn device_items_are_strict_and_names_are_checked() {
        let ok = obj(json!({"attributes": [{"object_id": "t", "name": "temperature", "type": "Number",
            "expression": "t * 2", "metadata": {"unitCode": {"type": "Text", "value": "CEL"}}}],
            "lazy": [{"name": "l", "type": "Number"}],
            "commands": [{"name": "ping", "type": "command", "mqtt": {"qos": "1", "retain": false},
                "expression": "{ set: id + '_reset_' + ping }"}],
            "explicitAttrs": "['a','b']"}));
        check_mappings(&ok, true).unwrap();

        let extra = obj(json!({"lazy": [{"name": "l", "unit": "x"}]}));
        assert_eq!(check_mappings(&extra, true).unwrap_err().name, "WRONG_SYNTAX");
        assert!(check_mappings(&extra, false).is_ok(), "groups accept unknown item keys");

        let bad_name = obj(json!({"attributes": [{"name": "temp<script>"}]}));
        assert_eq!(check_mappings(&bad_name, false).unwrap_err().name, "WRONG_SYNTAX");
        let bad_qos = obj(json!({"commands": [{"name": "c", "mqtt": {"qos": "3"}}]}));
        assert_eq!(check_mappings(&bad_qos, true).unwrap_err().name, "WRONG_SYNTAX");
        let no_name = obj(json!({"commands": [{"type": "command"}]}));
        assert_eq!(check_mappings(&no_name, true).unwrap_err().name, "WRONG_SYNTAX");
    }

    #[test]
    fn jexl_strings_must_parse() {
        let bad = obj(json!({"attributes": [{"name": "t", "expression": "t * * 2"}]}));
        assert_eq!(check_mappings(&bad, true).unwrap_err().name, "INVALID_EXPRESSION");
        let bad = obj(json!({"entityNameExp": "id + "}));
        assert_eq!(check_mappings(&bad, false).unwrap_err().name, "INVALID_EXPRESSION");
        assert!(check_mappings(&obj(json!({"entityNameExp": "id + '__' + sn"})), false).is_ok());
    }

    #[test]
    fn bodies_must_be_objects_with_the_array() {
        assert_eq!(parse_object(b"[1]").unwrap_err().name, "WRONG_SYNTAX");
        assert_eq!(parse_object(b"{").unwrap_err().name, "WRONG_SYNTAX");
        let b = parse_object(br#"{"devices": {}}"#).unwrap();
        assert_eq!(items(&b, "devices").unwrap_err().name, "WRONG_SYNTAX");
    }
}
