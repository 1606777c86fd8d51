//! The NGSI-LD information model as the broker stores it: entities whose attribute names and
//! types are expanded IRIs, attributes of every kind, multi-attribute instances keyed by
//! `datasetId`, and system timestamps.
//!
//! Constructors in `parse` validate everything a client sends; a value of these types is
//! always a valid NGSI-LD entity. This module does no I/O.

pub mod geo;
pub mod parse;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Formats a timestamp the way NGSI-LD renders DateTime values.
pub fn format_millis(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => "1970-01-01T00:00:00.000Z".to_owned(),
    }
}

/// Parses an ISO 8601 DateTime (with a zone, or UTC assumed) to milliseconds.
pub fn parse_datetime(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), fmt) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    None
}

/// The attribute kinds of NGSI-LD 1.8+.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
pub enum AttrKind {
    Property,
    Relationship,
    GeoProperty,
    LanguageProperty,
    VocabProperty,
    JsonProperty,
    ListProperty,
    ListRelationship,
}

impl AttrKind {
    pub fn parse(s: &str) -> Option<AttrKind> {
        Some(match s {
            "Property" | "https://uri.etsi.org/ngsi-ld/Property" => AttrKind::Property,
            "Relationship" | "https://uri.etsi.org/ngsi-ld/Relationship" => AttrKind::Relationship,
            "GeoProperty" | "https://uri.etsi.org/ngsi-ld/GeoProperty" => AttrKind::GeoProperty,
            "LanguageProperty" | "https://uri.etsi.org/ngsi-ld/LanguageProperty" => AttrKind::LanguageProperty,
            "VocabProperty" | "https://uri.etsi.org/ngsi-ld/VocabProperty" => AttrKind::VocabProperty,
            "JsonProperty" | "https://uri.etsi.org/ngsi-ld/JsonProperty" => AttrKind::JsonProperty,
            "ListProperty" | "https://uri.etsi.org/ngsi-ld/ListProperty" => AttrKind::ListProperty,
            "ListRelationship" | "https://uri.etsi.org/ngsi-ld/ListRelationship" => AttrKind::ListRelationship,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            AttrKind::Property => "Property",
            AttrKind::Relationship => "Relationship",
            AttrKind::GeoProperty => "GeoProperty",
            AttrKind::LanguageProperty => "LanguageProperty",
            AttrKind::VocabProperty => "VocabProperty",
            AttrKind::JsonProperty => "JsonProperty",
            AttrKind::ListProperty => "ListProperty",
            AttrKind::ListRelationship => "ListRelationship",
        }
    }

    /// The member that carries this kind's value.
    pub fn value_key(self) -> &'static str {
        match self {
            AttrKind::Property | AttrKind::GeoProperty => "value",
            AttrKind::Relationship => "object",
            AttrKind::LanguageProperty => "languageMap",
            AttrKind::VocabProperty => "vocab",
            AttrKind::JsonProperty => "json",
            AttrKind::ListProperty => "valueList",
            AttrKind::ListRelationship => "objectList",
        }
    }
}

/// One attribute instance (or sub-attribute).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribute {
    pub kind: AttrKind,
    /// The payload under [`AttrKind::value_key`]; VocabProperty values are expanded IRIs.
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_code: Option<String>,
    /// Other members kept verbatim (`objectType`, `lang`, …).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
    /// Sub-attributes by expanded name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub sub: IndexMap<String, Attribute>,
    pub created_at: i64,
    pub modified_at: i64,
}

impl Attribute {
    /// Merges a partial update into this instance: the value and members given replace the
    /// old ones, sub-attributes are merged by name; `createdAt` is kept.
    pub fn merge_from(&mut self, patch: Attribute, now: i64) {
        self.kind = patch.kind;
        self.value = patch.value;
        if patch.observed_at.is_some() {
            self.observed_at = patch.observed_at;
        }
        if patch.unit_code.is_some() {
            self.unit_code = patch.unit_code;
        }
        for (k, v) in patch.extra {
            self.extra.insert(k, v);
        }
        for (name, sub) in patch.sub {
            if sub.is_null_marker() {
                self.sub.shift_remove(&name);
            } else {
                match self.sub.get_mut(&name) {
                    Some(existing) => {
                        let created = existing.created_at;
                        *existing = sub;
                        existing.created_at = created;
                    }
                    None => {
                        self.sub.insert(name, sub);
                    }
                }
            }
        }
        self.modified_at = now;
    }

    /// True for the NGSI-LD null (`urn:ngsi-ld:null`) that deletes in merge-patch.
    pub fn is_null_marker(&self) -> bool {
        match &self.value {
            Value::String(s) => s == NULL_URN,
            Value::Array(a) => a.len() == 1 && a[0].as_str() == Some(NULL_URN),
            Value::Object(o) => o.values().all(|v| v.as_str() == Some(NULL_URN)) && !o.is_empty(),
            _ => false,
        }
    }
}

/// The NGSI-LD null, used by merge operations to delete.
pub const NULL_URN: &str = "urn:ngsi-ld:null";

/// An entity as stored: expanded names and types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub id: String,
    pub types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Vec<String>>,
    /// Attribute instances by expanded name; the default instance (no datasetId) first when present.
    pub attrs: IndexMap<String, Vec<Attribute>>,
    pub created_at: i64,
    pub modified_at: i64,
}

impl Entity {
    /// Puts one instance, replacing the instance with the same datasetId. Returns true when an
    /// instance was replaced.
    pub fn put_instance(&mut self, name: &str, mut attr: Attribute) -> bool {
        let list = self.attrs.entry(name.to_owned()).or_default();
        if let Some(existing) = list.iter_mut().find(|a| a.dataset_id == attr.dataset_id) {
            attr.created_at = existing.created_at;
            *existing = attr;
            true
        } else {
            list.push(attr);
            false
        }
    }

    /// The instance of `name` with `dataset_id`.
    pub fn instance(&self, name: &str, dataset_id: Option<&str>) -> Option<&Attribute> {
        self.attrs.get(name)?.iter().find(|a| a.dataset_id.as_deref() == dataset_id)
    }

    pub fn instance_mut(&mut self, name: &str, dataset_id: Option<&str>) -> Option<&mut Attribute> {
        self.attrs.get_mut(name)?.iter_mut().find(|a| a.dataset_id.as_deref() == dataset_id)
    }

    /// Removes one instance (or all with `all`); returns whether anything was removed.
    pub fn remove_instance(&mut self, name: &str, dataset_id: Option<&str>, all: bool) -> bool {
        let Some(list) = self.attrs.get_mut(name) else {
            return false;
        };
        let before = list.len();
        if all {
            list.clear();
        } else {
            list.retain(|a| a.dataset_id.as_deref() != dataset_id);
        }
        let removed = list.len() != before;
        if list.is_empty() {
            self.attrs.shift_remove(name);
        }
        removed
    }

    /// Adds types not yet present (merge semantics keep existing types).
    pub fn add_types(&mut self, types: &[String]) {
        for t in types {
            if !self.types.contains(t) {
                self.types.push(t.clone());
            }
        }
    }
}

impl Attribute {
    /// The stored value as a client would send it back (VocabProperty values stay expanded,
    /// which expansion leaves untouched).
    pub fn value_for_patch(&self) -> Value {
        self.value.clone()
    }
}
