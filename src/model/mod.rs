//! The NGSI-LD information model as the broker stores it: entities whose attribute names and
//! types are expanded IRIs, attributes of every kind, multi-attribute instances keyed by
//! `datasetId`, and system timestamps.
//!
//! Constructors in `parse` validate everything a client sends; a value of these types is
//! always a valid NGSI-LD entity. This module does no I/O.

mod attr_map;
pub mod geo;
mod instances;
pub mod parse;
pub mod stamp;
mod stored;
pub mod text;

pub use attr_map::AttrMap;
pub use instances::Instances;
pub use stamp::Stamp;

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use indexmap::IndexMap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use smallvec::SmallVec;

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
    /// Every kind, in declaration order (`ALL[k as usize] == k`).
    pub const ALL: [AttrKind; 8] = [
        AttrKind::Property,
        AttrKind::Relationship,
        AttrKind::GeoProperty,
        AttrKind::LanguageProperty,
        AttrKind::VocabProperty,
        AttrKind::JsonProperty,
        AttrKind::ListProperty,
        AttrKind::ListRelationship,
    ];

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

/// An interned name (attribute names, entity types): every entity holding the same name
/// shares one allocation.
pub type Name = Arc<str>;

/// The interned form of `s`. The table forgets names no entity holds any more whenever it has
/// doubled since the last sweep, so it stays bounded by the live names.
pub fn intern(s: &str) -> Name {
    static TABLE: LazyLock<Mutex<(HashSet<Name>, usize)>> = LazyLock::new(|| Mutex::new((HashSet::new(), 1024)));
    let mut guard = TABLE.lock();
    let (set, sweep_at) = &mut *guard;
    if let Some(n) = set.get(s) {
        return n.clone();
    }
    if set.len() >= *sweep_at {
        set.retain(|n| Arc::strong_count(n) > 1);
        *sweep_at = (set.len() * 2).max(1024);
    }
    let n: Name = Arc::from(s);
    set.insert(n.clone());
    n
}

/// Members of an attribute most instances do not have, kept out of line (40 bytes): a datasetId
/// and a unitCode (interned: entities of a kind share their units), the rarer ones one box
/// further.
#[derive(Debug, Clone, PartialEq, Default)]
struct AttrMeta {
    dataset_id: Option<Box<str>>,
    unit_code: Option<Name>,
    rare: Option<Box<Rare>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Rare {
    /// The text of an observedAt that does not pack (see [`stamp`]).
    observed_at: Option<Box<str>>,
    extra: Option<Box<Map<String, Value>>>,
    sub: Option<Box<IndexMap<Name, Attribute>>>,
}

/// The stored `meta` member as it is read.
#[derive(Deserialize)]
struct MetaIn {
    #[serde(default)]
    dataset_id: Option<Box<str>>,
    #[serde(default)]
    observed_at: Option<Box<str>>,
    #[serde(default, deserialize_with = "intern_opt")]
    unit_code: Option<Name>,
    #[serde(default)]
    extra: Option<Box<Map<String, Value>>>,
    #[serde(default, deserialize_with = "intern_sub")]
    sub: Option<Box<IndexMap<Name, Attribute>>>,
}

fn intern_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Name>, D::Error> {
    let raw: Option<std::borrow::Cow<'de, str>> = Option::deserialize(d)?;
    Ok(raw.map(|s| intern(&s)))
}

fn intern_sub<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<IndexMap<Name, Attribute>>>, D::Error> {
    let raw: Option<IndexMap<String, Attribute>> = Option::deserialize(d)?;
    Ok(raw.map(|m| Box::new(m.into_iter().map(|(k, v)| (intern(&k), v)).collect())))
}

impl AttrMeta {
    fn is_empty(&self) -> bool {
        self.dataset_id.is_none() && self.unit_code.is_none() && self.rare.is_none()
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Default::default)
    }
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.observed_at.is_none() && self.extra.is_none() && self.sub.is_none()
    }
}

static EMPTY_MAP: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);
static EMPTY_SUB: LazyLock<IndexMap<Name, Attribute>> = LazyLock::new(IndexMap::new);

/// One attribute instance (or sub-attribute). The value is kept as compact JSON text, an
/// observedAt in its usual spelling packed beside the kind, and the rare members out of line,
/// so an attribute costs 48 bytes plus its text.
#[derive(Debug, Clone)]
pub struct Attribute {
    pub kind: AttrKind,
    observed: stamp::Packed,
    /// The payload under [`AttrKind::value_key`]; VocabProperty values are expanded IRIs.
    value: Box<RawValue>,
    meta: Option<Box<AttrMeta>>,
    pub created_at: i64,
    pub modified_at: i64,
}

impl PartialEq for Attribute {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.observed == other.observed
            && self.value.get() == other.value.get()
            && self.meta == other.meta
            && self.created_at == other.created_at
            && self.modified_at == other.modified_at
    }
}

/// The stored form, as the derived one of the earlier layout wrote it: a packed observedAt is
/// written in `meta` as text.
#[derive(Serialize)]
struct AttrOut<'a> {
    kind: AttrKind,
    value: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<MetaOut<'a>>,
    created_at: i64,
    modified_at: i64,
}

#[derive(Serialize)]
struct MetaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    dataset_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_at: Option<Stamp<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a IndexMap<Name, Attribute>>,
}

#[derive(Deserialize)]
struct AttrIn {
    kind: AttrKind,
    value: Box<RawValue>,
    #[serde(default)]
    meta: Option<MetaIn>,
    created_at: i64,
    modified_at: i64,
}

impl Serialize for Attribute {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.meta.as_deref();
        let meta = (m.is_some() || self.observed.is_set()).then(|| MetaOut {
            dataset_id: m.and_then(|m| m.dataset_id.as_deref()),
            observed_at: self.observed_at(),
            unit_code: m.and_then(|m| m.unit_code.as_deref()),
            extra: m.and_then(|m| m.rare.as_ref()?.extra.as_deref()),
            sub: m.and_then(|m| m.rare.as_ref()?.sub.as_deref()),
        });
        AttrOut {
            kind: self.kind,
            value: &self.value,
            meta,
            created_at: self.created_at,
            modified_at: self.modified_at,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Attribute {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Attribute, D::Error> {
        let a = AttrIn::deserialize(d)?;
        let mut attr = Attribute {
            kind: a.kind,
            observed: stamp::Packed::NONE,
            value: a.value,
            meta: None,
            created_at: a.created_at,
            modified_at: a.modified_at,
        };
        if let Some(m) = a.meta {
            let rare = Rare { observed_at: None, extra: m.extra, sub: m.sub };
            attr.meta = Some(Box::new(AttrMeta {
                dataset_id: m.dataset_id,
                unit_code: m.unit_code,
                rare: (!rare.is_empty()).then(|| Box::new(rare)),
            }));
            if let Some(t) = m.observed_at {
                attr.set_observed_at(Some(t.into()));
            }
        }
        attr.tidy();
        Ok(attr)
    }
}

fn raw(v: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"))
}

impl Attribute {
    /// A new instance with no optional members.
    pub fn new(kind: AttrKind, value: &Value, now: i64) -> Attribute {
        Attribute::with_text(kind, raw(value), now)
    }

    /// A new instance whose value is given as compact JSON text, as [`Attribute::new`] would
    /// write it.
    pub fn with_text(kind: AttrKind, value: Box<RawValue>, now: i64) -> Attribute {
        Attribute { kind, observed: stamp::Packed::NONE, value, meta: None, created_at: now, modified_at: now }
    }

    /// The value, parsed.
    pub fn value(&self) -> Value {
        serde_json::from_str(self.value.get()).unwrap_or(Value::Null)
    }

    /// The value as JSON text.
    pub fn value_text(&self) -> &str {
        self.value.get()
    }

    pub fn set_value(&mut self, v: &Value) {
        self.value = raw(v);
    }

    fn meta_mut(&mut self) -> &mut AttrMeta {
        self.meta.get_or_insert_with(Default::default)
    }

    fn tidy(&mut self) {
        if let Some(m) = self.meta.as_mut()
            && m.rare.as_ref().is_some_and(|r| r.is_empty())
        {
            m.rare = None;
        }
        if self.meta.as_ref().is_some_and(|m| m.is_empty()) {
            self.meta = None;
        }
    }

    pub fn dataset_id(&self) -> Option<&str> {
        self.meta.as_ref()?.dataset_id.as_deref()
    }

    pub fn set_dataset_id(&mut self, v: Option<String>) {
        self.meta_mut().dataset_id = v.map(String::into_boxed_str);
        self.tidy();
    }

    /// The observedAt exactly as the client sent it.
    pub fn observed_at(&self) -> Option<Stamp<'_>> {
        if self.observed.is_set() {
            return self.observed.stamp();
        }
        Some(Stamp::Text(self.meta.as_ref()?.rare.as_ref()?.observed_at.as_deref()?))
    }

    /// Sets observedAt from its text; `false`, and nothing set, when the text is no DateTime.
    /// The usual spelling is packed without parsing it twice or copying it.
    pub fn set_observed_text(&mut self, text: &str) -> bool {
        match stamp::Packed::of(text) {
            Some(p) => self.set_stamp(p, None),
            None if parse_datetime(text).is_some() => self.set_stamp(stamp::Packed::NONE, Some(text.into())),
            None => return false,
        }
        true
    }

    pub fn set_observed_at(&mut self, v: Option<String>) {
        match v {
            None => self.set_stamp(stamp::Packed::NONE, None),
            Some(t) => match stamp::Packed::of(&t) {
                Some(p) => self.set_stamp(p, None),
                None => self.set_stamp(stamp::Packed::NONE, Some(t.into_boxed_str())),
            },
        }
    }

    /// The packed observedAt, or the text of one that does not pack.
    fn set_stamp(&mut self, packed: stamp::Packed, text: Option<Box<str>>) {
        self.observed = packed;
        match text {
            Some(t) => self.meta_mut().rare_mut().observed_at = Some(t),
            None => {
                if let Some(r) = self.meta.as_mut().and_then(|m| m.rare.as_mut()) {
                    r.observed_at = None;
                }
            }
        }
        self.tidy();
    }

    pub fn unit_code(&self) -> Option<&str> {
        self.meta.as_ref()?.unit_code.as_deref()
    }

    pub fn set_unit_code(&mut self, v: Option<String>) {
        self.meta_mut().unit_code = v.map(|u| intern(&u));
        self.tidy();
    }

    /// Other members kept verbatim (`objectType`, `lang`, …).
    pub fn extra(&self) -> &Map<String, Value> {
        self.meta.as_ref().and_then(|m| m.rare.as_ref()?.extra.as_deref()).unwrap_or(&EMPTY_MAP)
    }

    pub fn insert_extra(&mut self, k: String, v: Value) {
        self.meta_mut().rare_mut().extra.get_or_insert_with(Default::default).insert(k, v);
    }

    /// Sub-attributes by expanded name.
    pub fn sub(&self) -> &IndexMap<Name, Attribute> {
        self.meta.as_ref().and_then(|m| m.rare.as_ref()?.sub.as_deref()).unwrap_or(&EMPTY_SUB)
    }

    pub fn insert_sub(&mut self, name: Name, a: Attribute) {
        self.meta_mut().rare_mut().sub.get_or_insert_with(Default::default).insert(name, a);
    }

    pub fn sub_mut(&mut self, name: &str) -> Option<&mut Attribute> {
        self.meta.as_mut()?.rare.as_mut()?.sub.as_mut()?.get_mut(name)
    }

    pub fn remove_sub(&mut self, name: &str) {
        if let Some(rare) = self.meta.as_mut().and_then(|m| m.rare.as_mut())
            && let Some(sub) = rare.sub.as_mut()
        {
            sub.shift_remove(name);
            if sub.is_empty() {
                rare.sub = None;
            }
        }
        self.tidy();
    }

    /// Merges a partial update into this instance: the value and members given replace the
    /// old ones, sub-attributes are merged by name; `createdAt` is kept.
    pub fn merge_from(&mut self, patch: Attribute, now: i64) {
        self.kind = patch.kind;
        self.value = patch.value.clone();
        if patch.observed.is_set() {
            self.observed = patch.observed;
            if let Some(r) = self.meta.as_mut().and_then(|m| m.rare.as_mut()) {
                r.observed_at = None;
            }
            self.tidy();
        } else if let Some(t) = patch.observed_at() {
            self.set_observed_at(Some(t.to_string()));
        }
        if let Some(u) = patch.unit_code() {
            self.set_unit_code(Some(u.to_owned()));
        }
        for (k, v) in patch.extra() {
            self.insert_extra(k.clone(), v.clone());
        }
        for (name, sub) in patch.sub() {
            if sub.is_null_marker() {
                self.remove_sub(name);
            } else {
                match self.sub_mut(name) {
                    Some(existing) => {
                        let created = existing.created_at;
                        *existing = sub.clone();
                        existing.created_at = created;
                    }
                    None => self.insert_sub(name.clone(), sub.clone()),
                }
            }
        }
        self.modified_at = now;
    }

    /// True for the NGSI-LD null (`urn:ngsi-ld:null`) that deletes in merge-patch.
    pub fn is_null_marker(&self) -> bool {
        if !self.value.get().contains(NULL_URN) {
            return false;
        }
        match &self.value() {
            Value::String(s) => s == NULL_URN,
            Value::Array(a) => a.len() == 1 && a[0].as_str() == Some(NULL_URN),
            Value::Object(o) => o.values().all(|v| v.as_str() == Some(NULL_URN)) && !o.is_empty(),
            _ => false,
        }
    }
}

/// The NGSI-LD null, used by merge operations to delete.
pub const NULL_URN: &str = "urn:ngsi-ld:null";

/// An entity's types: interned, the usual single one inline.
pub type Types = SmallVec<[Name; 1]>;

fn intern_types<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Types, D::Error> {
    let raw: SmallVec<[std::borrow::Cow<'de, str>; 1]> = SmallVec::deserialize(d)?;
    Ok(raw.iter().map(|t| intern(t)).collect())
}

/// An entity as stored: expanded names and types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// Shared with the store's index keys.
    pub id: Arc<str>,
    #[serde(deserialize_with = "intern_types")]
    pub types: Types,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Box<Vec<String>>>,
    /// Attribute instances by expanded name; the default instance (no datasetId) first when present.
    pub attrs: AttrMap,
    pub created_at: i64,
    pub modified_at: i64,
}

impl Entity {
    /// Puts one instance, replacing the instance with the same datasetId. Returns true when an
    /// instance was replaced.
    pub fn put_instance(&mut self, name: &str, attr: Attribute) -> bool {
        self.attrs.entry(intern(name)).or_default().put(attr)
    }

    /// The instance of `name` with `dataset_id`.
    pub fn instance(&self, name: &str, dataset_id: Option<&str>) -> Option<&Attribute> {
        self.attrs.get(name)?.iter().find(|a| a.dataset_id() == dataset_id)
    }

    pub fn instance_mut(&mut self, name: &str, dataset_id: Option<&str>) -> Option<&mut Attribute> {
        self.attrs.get_mut(name)?.iter_mut().find(|a| a.dataset_id() == dataset_id)
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
            list.retain(|a| a.dataset_id() != dataset_id);
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
            if !self.has_type(t) {
                self.types.push(intern(t));
            }
        }
    }

    /// The scopes, when there are any.
    pub fn scopes(&self) -> Option<&[String]> {
        self.scope.as_deref().map(Vec::as_slice)
    }

    pub fn has_type(&self, t: &str) -> bool {
        self.types.iter().any(|x| **x == *t)
    }

    /// The types as strings.
    pub fn type_names(&self) -> Vec<String> {
        self.types.iter().map(|t| t.to_string()).collect()
    }
}

impl Attribute {
    /// The stored value as a client would send it back (VocabProperty values stay expanded,
    /// which expansion leaves untouched).
    pub fn value_for_patch(&self) -> Value {
        self.value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entities written before the compact layout (derived serde of the earlier structs) read
    /// back to the same values and are written again byte for byte.
    #[test]
    fn stored_form_is_unchanged() {
        let sub = r#"{"https://x/s":{"kind":"Property","value":1,"created_at":1,"modified_at":1}}"#;
        for meta in [
            r#"{"observed_at":"2026-01-15T10:00:00.000Z"}"#.to_owned(),
            r#"{"observed_at":"2026-01-15T10:00:00Z","unit_code":"KMH"}"#.to_owned(),
            format!(
                r#"{{"dataset_id":"urn:d","observed_at":"2026-01-15T10:00:00.000Z","unit_code":"KMH","extra":{{"lang":"en"}},"sub":{sub}}}"#
            ),
            r#"{"dataset_id":"urn:d"}"#.to_owned(),
            format!(r#"{{"sub":{sub}}}"#),
        ] {
            let text = format!(
                r#"{{"id":"urn:e:1","types":["https://x/T"],"scope":["/a"],"attrs":{{"https://x/p":[{{"kind":"Property","value":[1,"x"],"meta":{meta},"created_at":1,"modified_at":2}},{{"kind":"GeoProperty","value":{{"type":"Point","coordinates":[1,2]}},"created_at":1,"modified_at":2}}]}},"created_at":1,"modified_at":2}}"#
            );
            let e: Entity = serde_json::from_str(&text).unwrap();
            assert_eq!(serde_json::to_string(&e).unwrap(), text);
            assert_eq!(e.stored(), text.as_bytes());
            let again: Entity = serde_json::from_str(&text).unwrap();
            assert_eq!(e, again);
        }
        let e: Entity = serde_json::from_str(
            r#"{"id":"urn:e:1","types":["T"],"attrs":{"p":[{"kind":"Property","value":1,"meta":{"observed_at":"2026-01-15T10:00:00.000Z","unit_code":"KMH"},"created_at":1,"modified_at":2}]},"created_at":1,"modified_at":2}"#,
        )
        .unwrap();
        let p = &e.attrs["p"][0];
        assert_eq!(p.observed_at().unwrap().as_str(), "2026-01-15T10:00:00.000Z");
        assert_eq!(p.unit_code(), Some("KMH"));
        assert!(p.meta.as_ref().is_some_and(|m| m.rare.is_none()));
    }
}
