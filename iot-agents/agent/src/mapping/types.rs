//! The attribute type table of iotagent-node-lib's NGSI-LD output (`convertAttrNGSILD`): the
//! provisioned type, matched case-insensitively, decides the NGSI-LD attribute shape (Property,
//! GeoProperty, Relationship, LanguageProperty, …) and the coercion of the value.

use serde_json::{Map, Value};

use super::js;
use crate::error::{AgentError, Result};

/// One attribute in NGSI-LD form, or `None` when the value is dropped (`null`, `NaN`, a number
/// type whose value is not a number). `BAD_GEOCOORDINATES` when a geo type's text or array holds
/// an odd number of coordinates (upstream rejects the whole update then).
pub fn to_ngsi_ld(attr_type: Option<&str>, value: Value) -> Result<Option<Map<String, Value>>> {
    if value.is_null() {
        return Ok(None);
    }
    let lower = attr_type.unwrap_or("Text").to_ascii_lowercase();
    let mut out = Map::new();
    let (kind, member, v) = match lower.as_str() {
        "boolean" => ("Property", "value", Value::Bool(js::truthy(&value))),
        "float" | "integer" | "number" => {
            let kind = match lower.as_str() {
                "float" => Num::Float,
                "integer" => Num::Integer,
                _ => Num::Guess,
            };
            match number(&value, kind) {
                Some(n) => ("Property", "value", n),
                None => return Ok(None),
            }
        }
        "object" | "array" => ("Property", "value", parse_json(value)),
        "datetime" => ("Property", "value", temporal(value, "%Y-%m-%dT%H:%M:%S%.3fZ")),
        "date" => ("Property", "value", temporal(value, "%Y-%m-%d")),
        "time" => ("Property", "value", temporal(value, "%H:%M:%S")),
        "geoproperty" | "point" | "geo:point" | "geo:json" => ("GeoProperty", "value", geometry("Point", value)?),
        "linestring" | "geo:linestring" => ("GeoProperty", "value", geometry("LineString", value)?),
        "polygon" | "geo:polygon" => ("GeoProperty", "value", geometry("Polygon", value)?),
        "multipoint" | "geo:multipoint" => ("GeoProperty", "value", geometry("MultiPoint", value)?),
        "multilinestring" | "geo:multilinestring" => ("GeoProperty", "value", geometry("MultiLineString", value)?),
        "multipolygon" | "geo:multipolygon" => ("GeoProperty", "value", geometry("MultiPolygon", value)?),
        "relationship" => ("Relationship", "object", value),
        "languageproperty" => ("LanguageProperty", "languageMap", parse_json(value)),
        "vocabproperty" => ("VocabProperty", "vocab", value),
        "jsonproperty" => ("JsonProperty", "json", parse_json(value)),
        "listproperty" => ("ListProperty", "listValue", parse_json(value)),
        "listrelationship" => ("ListRelationship", "listObject", parse_json(value)),
        _ => ("Property", "value", value),
    };
    out.insert("type".into(), Value::from(kind));
    out.insert(member.into(), v);
    Ok(Some(out))
}

#[derive(Clone, Copy)]
enum Num {
    Float,
    Integer,
    /// `Number`: `parseFloat` when the text has a `.`, else `parseInt` (so `"1e3"` is 1).
    Guess,
}

/// `isNaN(v)` drops the attribute; otherwise `parseInt` or `parseFloat` as upstream.
fn number(v: &Value, kind: Num) -> Option<Value> {
    if js::to_number(v).is_nan() {
        return None;
    }
    let float = match kind {
        Num::Float => true,
        Num::Integer => false,
        Num::Guess => js::to_js_string(v).contains('.'),
    };
    let f = if float { js::parse_float(v) } else { js::parse_int(v) };
    match js::num(f) {
        Value::Null => None,
        n => Some(n),
    }
}

/// A JSON text is parsed; anything else is kept.
fn parse_json(v: Value) -> Value {
    match &v {
        Value::String(s) => serde_json::from_str(s).unwrap_or(v),
        _ => v,
    }
}

/// A date or time rendered in UTC; a value that is no date is kept as given.
fn temporal(v: Value, format: &str) -> Value {
    match js::to_date(&v) {
        Some(d) => Value::String(d.format(format).to_string()),
        None => v,
    }
}

/// A GeoJSON geometry as upstream's `getLngLats` builds it: a value that is neither text nor an
/// array (GeoJSON) is kept; otherwise every comma-separated or nested number is taken in order
/// (no latitude/longitude swap): two numbers are the coordinates, more are paired. A JSON text
/// of an object is parsed first (an Orbis extension).
fn geometry(kind: &str, v: Value) -> Result<Value> {
    if let Value::String(s) = &v
        && let Ok(parsed @ Value::Object(_)) = serde_json::from_str::<Value>(s)
    {
        return Ok(parsed);
    }
    if !matches!(v, Value::String(_) | Value::Array(_)) {
        return Ok(v);
    }
    let mut nums = Vec::new();
    flatten(&v, &mut nums);
    let coordinates = if nums.len() == 2 {
        Value::Array(nums.into_iter().map(js::num).collect())
    } else if nums.len() % 2 != 0 {
        return Err(AgentError::new(
            "BAD_GEOCOORDINATES",
            400,
            format!("{v} is not a list of coordinate pairs for a {kind}"),
        ));
    } else {
        Value::Array(nums.chunks(2).map(|p| Value::Array(p.iter().map(|f| js::num(*f)).collect())).collect())
    };
    let mut g = Map::new();
    g.insert("type".into(), Value::from(kind));
    g.insert("coordinates".into(), coordinates);
    Ok(Value::Object(g))
}

/// `_.flatten(splitLngLat(v))`: text split on commas, arrays recursed, each leaf `parseFloat`.
fn flatten(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::String(s) if s.contains(',') => {
            for part in s.split(',') {
                out.push(js::parse_float(&Value::from(part)));
            }
        }
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(js::parse_float(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ld(t: &str, v: Value) -> Option<Value> {
        match to_ngsi_ld(Some(t), v) {
            Ok(attr) => attr.map(Value::Object),
            Err(e) => panic!("{t}: {e}"),
        }
    }

    #[test]
    fn properties_keep_their_value() {
        for t in ["Property", "String", "Text", "TextUnrestricted", "text", "SomethingElse"] {
            assert_eq!(ld(t, json!("x")), Some(json!({"type": "Property", "value": "x"})), "{t}");
        }
        assert_eq!(
            to_ngsi_ld(None, json!(5)).ok().flatten().map(Value::Object),
            Some(json!({"type": "Property", "value": 5}))
        );
        assert_eq!(ld("Text", Value::Null), None);
    }

    #[test]
    fn booleans_are_coerced_by_truthiness() {
        assert_eq!(ld("Boolean", json!(1)), Some(json!({"type": "Property", "value": true})));
        assert_eq!(ld("boolean", json!("")), Some(json!({"type": "Property", "value": false})));
    }

    #[test]
    fn numbers_are_parsed_and_nan_dropped() {
        assert_eq!(ld("Number", json!("21.5")), Some(json!({"type": "Property", "value": 21.5})));
        assert_eq!(ld("Integer", json!("21.5")), Some(json!({"type": "Property", "value": 21})));
        assert_eq!(ld("Float", json!("7")), Some(json!({"type": "Property", "value": 7})));
        assert_eq!(ld("Number", json!("1e3")), Some(json!({"type": "Property", "value": 1})));
        assert_eq!(ld("Float", json!("1e3")), Some(json!({"type": "Property", "value": 1000})));
        assert_eq!(ld("NUMBER", json!(3)), Some(json!({"type": "Property", "value": 3})));
        assert_eq!(ld("Number", json!("abc")), None);
        assert_eq!(ld("Integer", json!("12abc")), None);
    }

    #[test]
    fn objects_and_arrays_parse_json_text() {
        assert_eq!(ld("Object", json!("{\"a\":1}")), Some(json!({"type": "Property", "value": {"a": 1}})));
        assert_eq!(ld("Array", json!("[1,2]")), Some(json!({"type": "Property", "value": [1, 2]})));
        assert_eq!(ld("Array", json!("not json")), Some(json!({"type": "Property", "value": "not json"})));
    }

    #[test]
    fn temporal_values_are_utc() {
        assert_eq!(
            ld("DateTime", json!("2020-01-01T01:00:00+01:00")),
            Some(json!({"type": "Property", "value": "2020-01-01T00:00:00.000Z"}))
        );
        assert_eq!(ld("Date", json!("2020-03-04T10:00:00Z")), Some(json!({"type": "Property", "value": "2020-03-04"})));
        assert_eq!(ld("Time", json!("2020-03-04T10:11:12Z")), Some(json!({"type": "Property", "value": "10:11:12"})));
    }

    #[test]
    fn geo_strings_keep_their_order() {
        let p = json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [40.4, -3.7]}});
        assert_eq!(ld("geo:point", json!("40.4, -3.7")), Some(p.clone()));
        assert_eq!(ld("Point", json!("40.4,-3.7")), Some(p.clone()));
        assert_eq!(ld("GeoProperty", json!([40.4, -3.7])), Some(p.clone()));
        assert_eq!(ld("GeoProperty", json!(["40.4", "-3.7"])), Some(p.clone()));
        assert_eq!(ld("geo:json", json!({"type": "Point", "coordinates": [40.4, -3.7]})), Some(p.clone()));
        assert_eq!(ld("geo:json", json!("{\"type\":\"Point\",\"coordinates\":[40.4,-3.7]}")), Some(p));
        // More than two numbers are paired, whatever the geometry (as upstream).
        assert_eq!(
            ld("geo:linestring", json!("1,2,3,4")),
            Some(json!({"type": "GeoProperty", "value": {"type": "LineString", "coordinates": [[1, 2], [3, 4]]}}))
        );
        assert_eq!(
            ld("Polygon", json!([[0, 0], [0, 1], [1, 1], [0, 0]])),
            Some(
                json!({"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [[0, 0], [0, 1], [1, 1], [0, 0]]}})
            )
        );
        assert_eq!(
            ld("geo:multipoint", json!(["1,2", "3,4"])),
            Some(json!({"type": "GeoProperty", "value": {"type": "MultiPoint", "coordinates": [[1, 2], [3, 4]]}}))
        );
        assert!(ld("multilinestring", json!("1,2,3,4")).is_some());
        assert!(ld("geo:multipolygon", json!("1,2,3,4")).is_some());
        let odd = to_ngsi_ld(Some("geo:point"), json!("1,2,3")).err().map(|e| e.name);
        assert_eq!(odd, Some("BAD_GEOCOORDINATES"));
        assert_eq!(to_ngsi_ld(Some("geo:point"), json!("")).err().map(|e| e.name), Some("BAD_GEOCOORDINATES"));
    }

    #[test]
    fn linked_and_structured_types() {
        assert_eq!(
            ld("Relationship", json!("urn:ngsi-ld:Store:1")),
            Some(json!({"type": "Relationship", "object": "urn:ngsi-ld:Store:1"}))
        );
        assert_eq!(
            ld("LanguageProperty", json!({"en": "hi"})),
            Some(json!({"type": "LanguageProperty", "languageMap": {"en": "hi"}}))
        );
        assert_eq!(ld("VocabProperty", json!("x")), Some(json!({"type": "VocabProperty", "vocab": "x"})));
        assert_eq!(ld("JsonProperty", json!({"a": 1})), Some(json!({"type": "JsonProperty", "json": {"a": 1}})));
        assert_eq!(ld("ListProperty", json!([1, 2])), Some(json!({"type": "ListProperty", "listValue": [1, 2]})));
        assert_eq!(
            ld("ListRelationship", json!(["urn:a"])),
            Some(json!({"type": "ListRelationship", "listObject": ["urn:a"]}))
        );
    }
}
