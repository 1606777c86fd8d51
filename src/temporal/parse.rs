//! Validated construction of temporal entity representations (GS CIM 009 §4.5.7) from client
//! JSON: like an entity, except that each attribute is an array of instances (or one
//! instance), several of which may share a datasetId. Each instance is parsed exactly as an
//! attribute of the entity API (`model::parse::parse_attribute`) and gets an `instanceId` unless
//! it brings one.

use serde_json::Value;

use super::{Instance, new_instance_id};
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::parse::{is_uri, parse_attribute, parse_scope, parse_types, valid_name};

/// Members of a temporal entity that are never attributes.
const RESERVED: &[&str] = &["id", "@id", "type", "@type", "@context", "scope", "createdAt", "modifiedAt", "deletedAt"];

/// A temporal entity (or fragment) as posted.
#[derive(Debug, Clone)]
pub struct TemporalInput {
    pub id: Option<String>,
    /// Expanded types (empty when not given).
    pub types: Vec<String>,
    pub scope: Option<Vec<String>>,
    /// Expanded attribute name → its new instances.
    pub attrs: Vec<(String, Vec<Instance>)>,
}

/// Parses a temporal entity (`whole`: id and type required) or a fragment of attributes.
pub fn parse(body: &Value, ctx: &Context, whole: bool, now: i64) -> NgsiResult<TemporalInput> {
    let obj = body.as_object().ok_or_else(|| NgsiError::bad_data("a temporal entity must be a JSON object"))?;
    let id = match obj.get("id").or_else(|| obj.get("@id")) {
        None if whole => return Err(NgsiError::bad_data("a temporal entity needs an id")),
        None => None,
        Some(Value::String(s)) if is_uri(s) => Some(s.clone()),
        Some(Value::String(s)) => return Err(NgsiError::bad_data(format!("entity id {s:?} is not a URI"))),
        Some(_) => return Err(NgsiError::bad_data("entity id must be a string")),
    };
    let types = match obj.get("type").or_else(|| obj.get("@type")) {
        None if whole => return Err(NgsiError::bad_data("a temporal entity needs a type")),
        None => Vec::new(),
        Some(t) => parse_types(t, ctx)?,
    };
    let scope = obj.get("scope").map(parse_scope).transpose()?;
    let mut attrs: Vec<(String, Vec<Instance>)> = Vec::new();
    for (key, v) in obj {
        if RESERVED.contains(&key.as_str()) {
            continue;
        }
        if !valid_name(key) {
            return Err(NgsiError::bad_data(format!("{key:?} is not a valid attribute name")));
        }
        let items: Vec<&Value> = match v {
            Value::Array(items) if items.iter().all(Value::is_object) => items.iter().collect(),
            Value::Object(_) => vec![v],
            _ => {
                return Err(NgsiError::bad_data(format!(
                    "attribute {key}: a temporal attribute is an array of instances (objects)"
                )));
            }
        };
        let mut list = Vec::with_capacity(items.len());
        for item in items {
            let attr = parse_attribute(key, item, ctx, now)?;
            let instance_id = match item.get("instanceId") {
                None => new_instance_id(),
                Some(Value::String(s)) if is_uri(s) => s.clone(),
                Some(_) => return Err(NgsiError::bad_data(format!("attribute {key}: instanceId must be a URI"))),
            };
            if list.iter().any(|i: &Instance| i.instance_id == instance_id) {
                return Err(NgsiError::bad_data(format!("attribute {key}: instanceId {instance_id} is given twice")));
            }
            list.push(Instance { instance_id, attr, deleted_at: None });
        }
        let name = ctx.expand(key);
        match attrs.iter_mut().find(|(n, _)| *n == name) {
            Some((_, l)) => l.extend(list),
            None => attrs.push((name, list)),
        }
    }
    Ok(TemporalInput { id, types, scope, attrs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonld::CORE;
    use serde_json::json;

    #[test]
    fn instances_arrays_and_single_instances() {
        let body = json!({
            "id": "urn:ngsi-ld:V:1", "type": "V",
            "speed": [{"type": "Property", "value": 1, "observedAt": "2020-01-01T00:00:00Z"},
                      {"type": "Property", "value": 2, "observedAt": "2020-01-01T00:01:00Z"}],
            "owner": {"type": "Relationship", "object": "urn:p:1", "instanceId": "urn:i:given"}
        });
        let t = parse(&body, &CORE, true, 0).unwrap();
        assert_eq!(t.id.as_deref(), Some("urn:ngsi-ld:V:1"));
        assert_eq!(t.attrs.len(), 2);
        assert_eq!(t.attrs[0].1.len(), 2);
        assert!(t.attrs[0].1[0].instance_id.starts_with("urn:ngsi-ld:attribute:instance:"));
        assert_eq!(t.attrs[1].1[0].instance_id, "urn:i:given");
    }

    #[test]
    fn refusals() {
        assert!(parse(&json!({"type": "V"}), &CORE, true, 0).is_err());
        assert!(parse(&json!({"id": "nouri", "type": "V"}), &CORE, true, 0).is_err());
        assert!(parse(&json!({"id": "urn:a"}), &CORE, true, 0).is_err());
        assert!(parse(&json!({"id": "urn:a", "type": "V", "p": 3}), &CORE, true, 0).is_err());
        assert!(parse(&json!({"id": "urn:a", "type": "V", "p": [{"type": "Nope"}]}), &CORE, true, 0).is_err());
        assert!(parse(&json!({"p": [{"value": 1, "instanceId": "x"}]}), &CORE, false, 0).is_err());
        assert!(parse(&json!([1]), &CORE, false, 0).is_err());
        // A fragment needs neither id nor type.
        assert!(parse(&json!({"p": [{"value": 1}]}), &CORE, false, 0).is_ok());
    }
}
