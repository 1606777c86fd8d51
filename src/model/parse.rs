//! Validated construction of entities and attributes from client JSON (normalized or concise
//! form), expanding names and types with the request's context.

use std::borrow::Cow;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::geo::{looks_like_geometry, validate_geometry};
use super::{AttrKind, Attribute, Entity, Instances, NULL_URN};
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::{Coercion, Context};

/// Members of an entity that are never attributes.
const ENTITY_RESERVED: &[&str] = &["id", "type", "@context", "scope", "createdAt", "modifiedAt", "deletedAt"];

/// Members of an attribute that are never sub-attributes.
const ATTR_RESERVED: &[&str] = &[
    "type",
    "value",
    "object",
    "languageMap",
    "vocab",
    "json",
    "valueList",
    "objectList",
    "observedAt",
    "unitCode",
    "datasetId",
    "createdAt",
    "modifiedAt",
    "deletedAt",
    "instanceId",
    "previousValue",
    "previousObject",
    "previousLanguageMap",
    "previousVocab",
    "previousJson",
    "previousValueList",
    "previousObjectList",
    "objectType",
    "lang",
    "@context",
];

/// Characters the spec forbids in names (GS CIM 009 §4.6.2); a leading `@` would make the
/// name a JSON-LD keyword.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('@')
        && name.len() <= 1024
        && !name.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(c, '<' | '>' | '"' | '\'' | '=' | ';' | '(' | ')' | '\\' | '&' | '?')
        })
}

/// True for a syntactically valid absolute URI (scheme ":" rest), as entity ids must be.
pub fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !s.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '{' | '}' | '|' | '^' | '`' | '\\')
        })
}

/// What a payload is used for: it decides which members are required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Create or replace: `id` and `type` required (replace may omit `id`).
    Create,
    /// A fragment (append, update, merge): no `id` needed, `type` optional.
    Fragment,
}

/// An entity payload after validation, before it is applied to stored state.
#[derive(Debug, Clone)]
pub struct EntityInput {
    pub id: Option<String>,
    pub types: Vec<String>,
    pub scope: Option<Vec<String>>,
    /// Scope given as the NGSI-LD null (delete scope in merge).
    pub scope_null: bool,
    pub attrs: crate::model::AttrMap,
}

impl EntityInput {
    /// Builds a full entity (create/replace).
    pub fn into_entity(self, id: String, now: i64) -> Entity {
        // The map grew one attribute at a time; the stored entity keeps only what it holds
        // (about 160 bytes less for five attributes).
        let mut attrs = self.attrs;
        attrs.shrink_to_fit();
        Entity {
            id: id.into(),
            types: self.types.iter().map(|t| super::intern(t)).collect(),
            scope: self.scope.map(Box::new),
            attrs,
            created_at: now,
            modified_at: now,
        }
    }
}

/// Validates and expands an entity payload.
pub fn parse_entity(v: &Value, ctx: &Context, purpose: Purpose, now: i64) -> NgsiResult<EntityInput> {
    let obj = v.as_object().ok_or_else(|| NgsiError::bad_data("an entity must be a JSON object"))?;
    entity_from(
        |k| obj.get(k).map(Member::Tree),
        obj.iter().map(|(k, v)| (k.as_str(), Member::Tree(v))),
        ctx,
        purpose,
        now,
    )
}

/// A member of a client object: parsed into a tree, or still JSON text (see [`super::text`]).
#[derive(Clone, Copy)]
pub(crate) enum Member<'a> {
    Tree(&'a Value),
    Text(&'a RawValue),
}

impl<'a> Member<'a> {
    fn value(self) -> Cow<'a, Value> {
        match self {
            Member::Tree(v) => Cow::Borrowed(v),
            Member::Text(r) => Cow::Owned(super::text::tree(r)),
        }
    }

    fn instances(self, key: &str, ctx: &Context, now: i64) -> NgsiResult<Instances> {
        match self {
            Member::Tree(v) => parse_attribute_instances(key, v, ctx, now),
            Member::Text(r) => super::text::attribute_instances(key, r, ctx, now),
        }
    }
}

/// The entity made of an object's members: `get` finds one by name, `members` lists them in
/// order. Both forms of client JSON go through here, so they are validated alike.
pub(crate) fn entity_from<'a>(
    get: impl Fn(&str) -> Option<Member<'a>>,
    members: impl Iterator<Item = (&'a str, Member<'a>)>,
    ctx: &Context,
    purpose: Purpose,
    now: i64,
) -> NgsiResult<EntityInput> {
    let id = match get("id").or_else(|| get("@id")).map(Member::value) {
        None => None,
        Some(v) => match v.as_ref() {
            Value::String(s) if is_uri(s) => Some(s.clone()),
            Value::String(s) => {
                return Err(NgsiError::bad_data(format!("entity id {s:?} is not a URI")));
            }
            _ => return Err(NgsiError::bad_data("entity id must be a string")),
        },
    };
    let has_type = get("type").is_some();
    if purpose == Purpose::Create && id.is_none() && !has_type {
        return Err(NgsiError::bad_data("an entity needs an id and a type"));
    }
    let types = match get("type").or_else(|| get("@type")) {
        None if purpose == Purpose::Create => {
            return Err(NgsiError::bad_data("an entity needs a type"));
        }
        None => Vec::new(),
        Some(t) => parse_types(&t.value(), ctx)?,
    };
    let (scope, scope_null) = match get("scope").map(Member::value) {
        None => (None, false),
        Some(v) => match v.as_ref() {
            Value::String(s) if s == NULL_URN => (None, true),
            s => (Some(parse_scope(s)?), false),
        },
    };
    let mut attrs = crate::model::AttrMap::default();
    for (key, value) in members {
        if ENTITY_RESERVED.contains(&key) || key == "@id" || key == "@type" {
            continue;
        }
        if !valid_name(key) {
            return Err(NgsiError::bad_data(format!("{key:?} is not a valid attribute name")));
        }
        let instances = value.instances(key, ctx, now)?;
        attrs.insert(ctx.expand_name(key), instances);
    }
    Ok(EntityInput { id, types, scope, scope_null, attrs })
}

/// Parses an entity `type` member: a name or a non-empty list of names.
pub fn parse_types(t: &Value, ctx: &Context) -> NgsiResult<Vec<String>> {
    let names: Vec<&str> = match t {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| x.as_str().ok_or_else(|| NgsiError::bad_data("entity types must be strings")))
            .collect::<NgsiResult<_>>()?,
        _ => {
            return Err(NgsiError::bad_data("entity type must be a string or a list of strings"));
        }
    };
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        if !valid_name(n) {
            return Err(NgsiError::bad_data(format!("{n:?} is not a valid entity type")));
        }
        let iri = ctx.expand(n);
        // A term the context maps to a JSON-LD keyword (`type` → `@type`) names no type.
        if iri.starts_with('@') {
            return Err(NgsiError::bad_data(format!("{n:?} expands to the keyword {iri}, not to an entity type")));
        }
        if !out.contains(&iri) {
            out.push(iri);
        }
    }
    Ok(out)
}

/// Parses `scope`: a scope or a list of scopes, each `/segment[/segment…]`.
pub fn parse_scope(v: &Value) -> NgsiResult<Vec<String>> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for i in items {
        let s = i.as_str().ok_or_else(|| NgsiError::bad_data("scope values must be strings"))?;
        let ok = s.starts_with('/')
            && s.len() > 1
            && s[1..]
                .split('/')
                .all(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.')));
        if !ok {
            return Err(NgsiError::bad_data(format!("{s:?} is not a valid scope")));
        }
        out.push(s.to_owned());
    }
    Ok(out)
}

/// Parses an attribute member: one instance, or an array of instances (multi-attribute).
pub fn parse_attribute_instances(key: &str, v: &Value, ctx: &Context, now: i64) -> NgsiResult<Instances> {
    if let Value::Array(items) = v {
        if !items.is_empty() && items.iter().all(Value::is_object) {
            let mut out = Instances::with_capacity(items.len());
            for item in items {
                let a = parse_attribute(key, item, ctx, now)?;
                if out.iter().any(|o| o.dataset_id() == a.dataset_id()) {
                    return Err(NgsiError::bad_data(format!(
                        "attribute {key} has two instances with the same datasetId"
                    )));
                }
                out.push(a);
            }
            return Ok(out);
        }
        if items.is_empty() {
            return Err(NgsiError::bad_data(format!("attribute {key} is an empty array")));
        }
    }
    Ok(Instances::one(parse_attribute(key, v, ctx, now)?))
}

fn infer_kind(obj: &Map<String, Value>) -> Option<AttrKind> {
    if obj.contains_key("object") {
        Some(AttrKind::Relationship)
    } else if obj.contains_key("languageMap") {
        Some(AttrKind::LanguageProperty)
    } else if obj.contains_key("vocab") {
        Some(AttrKind::VocabProperty)
    } else if obj.contains_key("json") {
        Some(AttrKind::JsonProperty)
    } else if obj.contains_key("valueList") {
        Some(AttrKind::ListProperty)
    } else if obj.contains_key("objectList") {
        Some(AttrKind::ListRelationship)
    } else {
        obj.get("value").map(|v| if looks_like_geometry(v) { AttrKind::GeoProperty } else { AttrKind::Property })
    }
}

/// Parses one attribute (normalized or concise) with its sub-attributes.
pub fn parse_attribute(key: &str, v: &Value, ctx: &Context, now: i64) -> NgsiResult<Attribute> {
    let bad = |msg: &str| NgsiError::bad_data(format!("attribute {key}: {msg}"));
    let obj = match v {
        Value::Object(o) => o,
        Value::Null => return Err(bad("null is not a valid attribute value")),
        // Concise form: a bare value is a Property.
        other => {
            return Ok(Attribute::new(AttrKind::Property, other, now));
        }
    };
    let kind = match obj.get("type") {
        Some(Value::String(t)) => match AttrKind::parse(t) {
            Some(k) => k,
            None if looks_like_geometry(v) => {
                return parse_attribute(key, &serde_json::json!({"type": "GeoProperty", "value": v}), ctx, now);
            }
            None => return Err(bad(&format!("{t:?} is not an attribute type"))),
        },
        Some(_) => return Err(bad("type must be a string")),
        None => match infer_kind(obj) {
            Some(k) => k,
            // A concise Property whose value is a JSON object.
            None => {
                let has_payload = obj.keys().any(|k| !ATTR_RESERVED.contains(&k.as_str()));
                if !has_payload && !obj.is_empty() {
                    return Err(bad("no value given"));
                }
                AttrKind::Property
            }
        },
    };
    let value_key = kind.value_key();
    let raw = match obj.get(value_key) {
        Some(v) => v,
        None if obj.get("type").is_none() && infer_kind(obj).is_none() => v,
        None => {
            return Err(bad(&format!("a {} needs a {value_key} member", kind.name())));
        }
    };
    let value = validate_value(kind, raw, ctx).map_err(|m| bad(&m))?;
    let mut attr = Attribute::new(kind, &value, now);
    if obj.get("type").is_none() && infer_kind(obj).is_none() {
        return Ok(attr);
    }
    for (k, member) in obj {
        match k.as_str() {
            "type" | "createdAt" | "modifiedAt" | "deletedAt" | "instanceId" | "@context" => {}
            _ if k == value_key => {}
            "observedAt" | "unitCode" | "datasetId" => set_member(&mut attr, k, member.as_str()).map_err(bad)?,
            "value" | "object" | "languageMap" | "vocab" | "json" | "valueList" | "objectList" => {
                return Err(bad(&format!("a {} cannot have a {k} member", kind.name())));
            }
            _ if ATTR_RESERVED.contains(&k.as_str()) => {
                attr.insert_extra(k.clone(), member.clone());
            }
            _ => {
                if !valid_name(k) {
                    return Err(bad(&format!("{k:?} is not a valid sub-attribute name")));
                }
                let sub = parse_attribute(k, member, ctx, now)?;
                attr.insert_sub(ctx.expand_name(k), sub);
            }
        }
    }
    Ok(attr)
}

/// Sets `observedAt`, `unitCode` or `datasetId` (`name`) from the member's text, `None` when
/// the member is not a string.
pub(crate) fn set_member(attr: &mut Attribute, name: &str, text: Option<&str>) -> Result<(), &'static str> {
    match name {
        "observedAt" => {
            if !text.is_some_and(|s| attr.set_observed_text(s)) {
                return Err("observedAt must be a DateTime");
            }
        }
        "unitCode" => attr.set_unit_code(Some(text.ok_or("unitCode must be a string")?.to_owned())),
        _ => match text {
            Some(s) if is_uri(s) => attr.set_dataset_id(Some(s.to_owned())),
            _ => return Err("datasetId must be a URI"),
        },
    }
    Ok(())
}

/// Checks a value for its kind; only a VocabProperty's value changes (its terms are expanded),
/// so the others are passed through without a copy.
pub(crate) fn validate_value<'a>(kind: AttrKind, v: &'a Value, ctx: &Context) -> Result<Cow<'a, Value>, String> {
    match kind {
        AttrKind::Property => {
            if v.is_null() {
                return Err("value must not be null".into());
            }
            Ok(Cow::Borrowed(v))
        }
        AttrKind::GeoProperty => {
            if let Value::String(s) = v
                && s == NULL_URN
            {
                return Ok(Cow::Borrowed(v));
            }
            validate_geometry(v)?;
            Ok(Cow::Borrowed(v))
        }
        AttrKind::Relationship => match v {
            Value::String(s) if is_uri(s) => Ok(Cow::Borrowed(v)),
            Value::Array(a) if !a.is_empty() && a.iter().all(|x| x.as_str().is_some_and(is_uri)) => {
                Ok(Cow::Borrowed(v))
            }
            _ => Err("object must be a URI".into()),
        },
        AttrKind::LanguageProperty => {
            let m = v.as_object().ok_or("languageMap must be a JSON object")?;
            for (lang, text) in m {
                let ok_lang = lang == "@none"
                    || (!lang.is_empty()
                        && lang
                            .split('-')
                            .all(|p| !p.is_empty() && p.len() <= 8 && p.chars().all(|c| c.is_ascii_alphanumeric())));
                if !ok_lang {
                    return Err(format!("{lang:?} is not a language tag"));
                }
                let ok_text = text.is_string()
                    || text.as_array().is_some_and(|a| a.iter().all(Value::is_string))
                    || text.as_str() == Some(NULL_URN);
                if !ok_text {
                    return Err("languageMap values must be strings".into());
                }
            }
            Ok(Cow::Borrowed(v))
        }
        AttrKind::VocabProperty => {
            let ok = v.is_string() || v.as_array().is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string));
            if !ok {
                return Err("vocab must be a string or a list of strings".into());
            }
            Ok(Cow::Owned(ctx.expand_vocab_value(v)))
        }
        AttrKind::JsonProperty => Ok(Cow::Borrowed(v)),
        AttrKind::ListProperty => {
            if !v.is_array() {
                return Err("valueList must be an array".into());
            }
            Ok(Cow::Borrowed(v))
        }
        AttrKind::ListRelationship => {
            let a = v.as_array().ok_or("objectList must be an array")?;
            let ok = a.iter().all(|x| match x {
                Value::String(s) => is_uri(s),
                Value::Object(o) => o.get("object").and_then(Value::as_str).is_some_and(is_uri),
                _ => false,
            });
            if !ok {
                return Err("objectList must contain URIs".into());
            }
            Ok(Cow::Borrowed(v))
        }
    }
}

/// Expands a value given for a `@vocab`-coerced term, used by `q` later on.
pub fn expand_if_vocab(term: &str, v: &Value, ctx: &Context) -> Value {
    if ctx.coercion(term) == Coercion::Vocab { ctx.expand_vocab_value(v) } else { v.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonld::CORE;
    use serde_json::json;

    fn parse(v: Value) -> NgsiResult<EntityInput> {
        parse_entity(&v, &CORE, Purpose::Create, 1000)
    }

    #[test]
    fn normalized_and_concise_attributes() {
        let e = parse(json!({
            "id": "urn:ngsi-ld:Vehicle:A1", "type": "Vehicle",
            "speed": {"type": "Property", "value": 55, "unitCode": "KMH", "observedAt": "2024-01-01T00:00:00Z",
                      "accuracy": {"value": 0.5}},
            "brand": "Mercedes",
            "isParked": {"object": "urn:ngsi-ld:Park:1"},
            "location": {"type": "Point", "coordinates": [1, 2]},
            "name": {"languageMap": {"en": "car", "fr": "voiture"}},
            "category": {"vocab": "sedan"},
            "cfg": {"json": {"a": 1}},
            "list": {"valueList": [1, 2]},
            "friends": {"objectList": ["urn:a:1"]},
            "multi": [{"value": 1}, {"value": 2, "datasetId": "urn:ds:2"}]
        }))
        .unwrap();
        let get = |n: &str| &e.attrs[format!("https://uri.etsi.org/ngsi-ld/default-context/{n}").as_str()];
        assert_eq!(get("speed")[0].kind, AttrKind::Property);
        assert_eq!(get("speed")[0].unit_code(), Some("KMH"));
        assert_eq!(get("speed")[0].sub().len(), 1);
        assert_eq!(get("brand")[0].value(), json!("Mercedes"));
        assert_eq!(get("isParked")[0].kind, AttrKind::Relationship);
        assert_eq!(e.attrs["https://uri.etsi.org/ngsi-ld/location"][0].kind, AttrKind::GeoProperty);
        assert_eq!(get("name")[0].kind, AttrKind::LanguageProperty);
        assert_eq!(get("category")[0].value(), json!("https://uri.etsi.org/ngsi-ld/default-context/sedan"));
        assert_eq!(get("cfg")[0].kind, AttrKind::JsonProperty);
        assert_eq!(get("list")[0].kind, AttrKind::ListProperty);
        assert_eq!(get("friends")[0].kind, AttrKind::ListRelationship);
        assert_eq!(get("multi").len(), 2);
    }

    #[test]
    fn invalid_payloads_are_rejected() {
        assert!(parse(json!({"id": "not a uri", "type": "T"})).is_err());
        assert!(parse(json!({"id": "urn:a:b"})).is_err());
        assert!(parse(json!({"id": "urn:a:b", "type": 3})).is_err());
        assert!(parse(json!({"id": "urn:a:b", "type": "type"})).is_err());
        assert!(parse(json!({"id": "urn:a:b", "type": "T", "p": {"type": "Property"}})).is_err());
        assert!(parse(json!({"id": "urn:a:b", "type": "T", "p": {"type": "Relationship", "object": "x y"}})).is_err());
        assert!(
            parse(json!({"id": "urn:a:b", "type": "T", "p": {"type": "GeoProperty", "value": {"type": "Point"}}}))
                .is_err()
        );
        assert!(parse(json!({"id": "urn:a:b", "type": "T", "bad<name": 1})).is_err());
        assert!(parse(json!({"id": "urn:a:b", "type": "T", "p": {"type": "Foo", "value": 1}})).is_err());
        assert!(parse(json!({"id": "urn:a:b", "type": "T", "p": [{"value": 1}, {"value": 2}]})).is_err());
        assert!(parse(json!({"id": "urn:a:b", "type": "T", "p": {"value": 1, "observedAt": "yesterday"}})).is_err());
        assert!(parse(json!({"id": "urn:a:b", "type": "T", "scope": "noslash"})).is_err());
        assert!(parse(json!([1])).is_err());
    }
}
