//! Southbound JSON payloads (iotagent-json): measures (plain, NGSIv2 or NGSI-LD shaped), single
//! attributes, command results, configuration requests, and the configuration values pushed
//! back to devices in JSON or UltraLight.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use std::collections::HashMap;

use super::{Measures, TypedMeasures, ultralight};
use crate::error::{AgentError, Result};

/// See [`super::parse_json_measures`].
pub fn parse_json_measures(body: &[u8], payload_type: Option<&str>) -> Result<Vec<Measures>> {
    Ok(parse_json_measures_typed(body, payload_type)?.into_iter().map(|t| t.measures).collect())
}

/// See [`super::parse_json_measures_typed`].
pub fn parse_json_measures_typed(body: &[u8], payload_type: Option<&str>) -> Result<Vec<TypedMeasures>> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| AgentError::bad_payload(format!("the payload is not valid JSON: {e}")))?;
    let kind = payload_type.map(str::to_ascii_lowercase);
    match kind.as_deref() {
        Some("ngsiv2") | Some("ngsild") => {
            let ld = kind.as_deref() == Some("ngsild");
            let entities = match v {
                // An NGSIv2 batch `{actionType, entities: [...]}`.
                Value::Object(mut m) if m.get("entities").is_some_and(Value::is_array) => match m.remove("entities") {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                },
                Value::Object(m) => vec![Value::Object(m)],
                Value::Array(a) => a,
                _ => return Err(AgentError::bad_payload("an NGSI payload must be an entity or an array of entities")),
            };
            entities
                .into_iter()
                .map(|e| match e {
                    Value::Object(m) => Ok(ngsi_entity_to_measures(m, ld)),
                    _ => Err(AgentError::bad_payload("an NGSI payload must be an entity or an array of entities")),
                })
                .collect()
        }
        _ => match v {
            Value::Object(m) => Ok(vec![TypedMeasures::untyped(m)]),
            Value::Array(a) => a
                .into_iter()
                .map(|v| match v {
                    Value::Object(m) => Ok(TypedMeasures::untyped(m)),
                    _ => Err(AgentError::bad_payload("a multi-measure must be an array of objects")),
                })
                .collect(),
            _ => Err(AgentError::bad_payload("the payload is not a JSON object or array")),
        },
    }
}

/// An NGSI entity's attributes as measures: `id`/`type` become `measure_id`/`measure_type`,
/// each attribute its value (`object` of a Relationship, `languageMap`, …), and the first
/// `observedAt` (NGSI-LD) or `TimeInstant` metadata (NGSIv2) the measure group's `TimeInstant`.
fn ngsi_entity_to_measures(entity: Map<String, Value>, ld: bool) -> TypedMeasures {
    let mut out = Map::new();
    let mut types = HashMap::new();
    let mut time: Option<Value> = None;
    for (k, v) in entity {
        match k.as_str() {
            "@context" => {}
            "id" => {
                out.insert("measure_id".into(), v);
            }
            "type" => {
                out.insert("measure_type".into(), v);
            }
            "TimeInstant" => {
                let t = match v {
                    Value::Object(mut o) => o.remove("value").unwrap_or(Value::Null),
                    other => other,
                };
                out.insert("TimeInstant".into(), t);
            }
            _ => {
                let value = match v {
                    Value::Object(mut o) if is_ngsi_attribute(&o, ld) => {
                        if let Some(t) = o.get("type").and_then(Value::as_str) {
                            types.insert(k.clone(), t.to_owned());
                        }
                        if time.is_none() {
                            time = o.remove("observedAt").or_else(|| {
                                o.get("metadata")
                                    .and_then(|md| md.get("TimeInstant"))
                                    .and_then(|t| t.get("value"))
                                    .cloned()
                            });
                        }
                        ["value", "object", "languageMap", "vocab", "json", "listValue", "listObject"]
                            .iter()
                            .find_map(|member| o.remove(*member))
                            .unwrap_or(Value::Null)
                    }
                    other => other,
                };
                out.insert(k, value);
            }
        }
    }
    if let Some(t) = time
        && !out.contains_key("TimeInstant")
    {
        out.insert("TimeInstant".into(), t);
    }
    TypedMeasures { measures: out, types }
}

/// Whether an object is an attribute in normalized form (not a key-value object value).
fn is_ngsi_attribute(o: &Map<String, Value>, ld: bool) -> bool {
    if ld {
        o.get("type").and_then(Value::as_str).is_some_and(|t| {
            matches!(
                t,
                "Property"
                    | "GeoProperty"
                    | "Relationship"
                    | "LanguageProperty"
                    | "VocabProperty"
                    | "JsonProperty"
                    | "ListProperty"
                    | "ListRelationship"
            )
        })
    } else {
        o.contains_key("value")
    }
}

/// See [`super::single_attribute`].
pub fn single_attribute(attr: &str, body: &[u8]) -> Measures {
    let value = serde_json::from_slice::<Value>(body).unwrap_or_else(|_| Value::from(hex(body)));
    let mut m = Map::new();
    m.insert(attr.to_owned(), value);
    m
}

fn hex(body: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(body.len() * 2);
    for b in body {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// See [`super::parse_json_command_results`].
pub fn parse_json_command_results(body: &[u8]) -> Result<Vec<(String, Value)>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) if !m.is_empty() => Ok(m.into_iter().collect()),
        Ok(Value::Object(_)) => Err(AgentError::bad_payload("a command result names at least one command")),
        _ => Err(AgentError::bad_payload("a command result must be a JSON object")),
    }
}

/// See [`super::parse_configuration_request`].
pub fn parse_configuration_request(body: &[u8], ultralight: bool) -> Result<(String, Vec<String>)> {
    if ultralight {
        let text = std::str::from_utf8(body).map_err(|_| AgentError::bad_payload("the payload is not UTF-8"))?;
        return ultralight::parse_configuration_request(text);
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| AgentError::bad_payload(format!("a configuration request must be JSON: {e}")))?;
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    if kind != "configuration" && kind != "subscription" {
        return Err(AgentError::bad_payload("a configuration request's type is 'configuration' or 'subscription'"));
    }
    let fields = v
        .get("fields")
        .and_then(Value::as_array)
        .ok_or_else(|| AgentError::bad_payload("a configuration request needs a 'fields' array"))?;
    let names = fields
        .iter()
        .map(|f| {
            f.as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| AgentError::bad_payload("configuration fields must be non-empty strings"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((kind.to_owned(), names))
}

/// See [`super::configuration_payload`].
pub fn configuration_payload(
    device_id: &str,
    values: &Map<String, Value>,
    ultralight: bool,
    now: DateTime<Utc>,
) -> Vec<u8> {
    let dt = now.format("%Y%m%dT%H%M%SZ").to_string();
    if ultralight {
        let mut m = values.clone();
        m.insert("dt".into(), Value::from(dt));
        return ultralight::format_command(device_id, "configuration", &Value::Object(m)).into_bytes();
    }
    let mut m = values.clone();
    m.insert("dt".into(), Value::from(dt));
    Value::Object(m).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(body: Value, kind: Option<&str>) -> Vec<Value> {
        parse_json_measures(body.to_string().as_bytes(), kind)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(Value::Object)
            .collect()
    }

    #[test]
    fn plain_measures_and_multi_measures() {
        assert_eq!(parsed(json!({"t": 1}), None), vec![json!({"t": 1})]);
        assert_eq!(parsed(json!([{"t": 1}, {"t": 2}]), Some("iotagent")), vec![json!({"t": 1}), json!({"t": 2})]);
        for bad in [&b"[1]"[..], b"12", b"{bad", b"\"s\""] {
            assert_eq!(parse_json_measures(bad, None).err().map(|e| e.name), Some("BAD_PAYLOAD"));
        }
    }

    #[test]
    fn ngsiv2_entities_become_measures() {
        let body = json!({
            "id": "e1", "type": "T",
            "temperature": {"type": "Number", "value": 21, "metadata": {"TimeInstant": {"type": "DateTime", "value": "2020-01-01T00:00:00Z"}}},
            "raw": 5
        });
        assert_eq!(
            parsed(body, Some("ngsiv2")),
            vec![
                json!({"measure_id": "e1", "measure_type": "T", "temperature": 21, "raw": 5, "TimeInstant": "2020-01-01T00:00:00Z"})
            ]
        );
        let batch = json!({"actionType": "append", "entities": [{"id": "a", "x": {"value": 1}}, {"id": "b", "x": {"value": 2}}]});
        assert_eq!(
            parsed(batch, Some("ngsiv2")),
            vec![json!({"measure_id": "a", "x": 1}), json!({"measure_id": "b", "x": 2})]
        );
    }

    #[test]
    fn ngsild_entities_become_measures() {
        let body = json!([{
            "@context": "http://ctx", "id": "urn:ngsi-ld:T:1", "type": "T",
            "temperature": {"type": "Property", "value": 21, "observedAt": "2020-01-01T00:00:00Z"},
            "owner": {"type": "Relationship", "object": "urn:ngsi-ld:P:1"},
            "name": {"type": "LanguageProperty", "languageMap": {"en": "x"}},
            "kv": {"a": 1}
        }]);
        assert_eq!(
            parsed(body, Some("ngsild")),
            vec![json!({
                "measure_id": "urn:ngsi-ld:T:1", "measure_type": "T", "temperature": 21,
                "owner": "urn:ngsi-ld:P:1", "name": {"en": "x"}, "kv": {"a": 1},
                "TimeInstant": "2020-01-01T00:00:00Z"
            })]
        );
        assert!(parse_json_measures(b"[1]", Some("ngsild")).is_err());
    }

    #[test]
    fn ngsi_payloads_keep_their_attribute_types() {
        let body = json!({"id": "x", "owner": {"type": "Relationship", "object": "urn:ngsi-ld:P:1"},
                          "t": {"type": "Property", "value": 1}, "raw": 2});
        let typed = parse_json_measures_typed(body.to_string().as_bytes(), Some("ngsild")).unwrap_or_default();
        assert_eq!(typed.len(), 1);
        assert_eq!(typed[0].types.get("owner").map(String::as_str), Some("Relationship"));
        assert_eq!(typed[0].types.get("t").map(String::as_str), Some("Property"));
        assert_eq!(typed[0].types.get("raw"), None);
        let plain = parse_json_measures_typed(br#"{"a": 1}"#, None).unwrap_or_default();
        assert!(plain[0].types.is_empty());
    }

    #[test]
    fn single_attributes_are_json_or_hex() {
        assert_eq!(Value::Object(single_attribute("t", b"21.5")), json!({"t": 21.5}));
        assert_eq!(Value::Object(single_attribute("l", b"[1,2]")), json!({"l": [1, 2]}));
        assert_eq!(Value::Object(single_attribute("raw", b"\x01\xffab")), json!({"raw": "01ff6162"}));
    }

    #[test]
    fn command_results_and_configuration_requests() {
        assert_eq!(parse_json_command_results(br#"{"ping": "ok"}"#).ok(), Some(vec![("ping".into(), json!("ok"))]));
        assert!(parse_json_command_results(b"{}").is_err());
        assert!(parse_json_command_results(b"[1]").is_err());
        assert_eq!(
            parse_configuration_request(
                br#"{"type": "configuration", "fields": ["sleepTime", "warningLevel"]}"#,
                false
            )
            .ok(),
            Some(("configuration".into(), vec!["sleepTime".into(), "warningLevel".into()]))
        );
        assert_eq!(
            parse_configuration_request(br#"{"type": "subscription", "fields": ["a"]}"#, false).ok(),
            Some(("subscription".into(), vec!["a".into()]))
        );
        for bad in [
            &br#"{"type": "other", "fields": []}"#[..],
            br#"{"type": "configuration"}"#,
            br#"{"type": "configuration", "fields": [1]}"#,
            b"x",
        ] {
            assert_eq!(parse_configuration_request(bad, false).err().map(|e| e.name), Some("BAD_PAYLOAD"));
        }
        assert_eq!(
            parse_configuration_request(b"configuration|a|b", true).ok(),
            Some(("configuration".into(), vec!["a".into(), "b".into()]))
        );
    }

    #[test]
    fn configuration_values() {
        let now =
            DateTime::parse_from_rfc3339("2016-01-25T09:27:03Z").map(|d| d.with_timezone(&Utc)).unwrap_or_default();
        let mut values = Map::new();
        values.insert("sleepTime".into(), json!("200"));
        values.insert("warningLevel".into(), json!(80));
        let json_body: Value =
            serde_json::from_slice(&configuration_payload("d1", &values, false, now)).unwrap_or_default();
        assert_eq!(json_body, json!({"sleepTime": "200", "warningLevel": 80, "dt": "20160125T092703Z"}));
        assert_eq!(
            String::from_utf8_lossy(&configuration_payload("device_1", &values, true, now)),
            "device_1@configuration|sleepTime=200|warningLevel=80|dt=20160125T092703Z"
        );
    }
}
