//! Client JSON read straight into the model, without a `serde_json::Value` tree for the entity
//! and attribute objects.
//!
//! Building that tree (an ordered hash map and owned strings per object) and tearing it down
//! cost about as much as everything else in a batch upsert. Here an object is read as a list of
//! its members, each name borrowed from the request body and each value kept as its JSON text;
//! only attribute values are parsed (they are usually scalars). The common normalized
//! attribute shapes are built here; anything else (concise forms, multi-attributes,
//! sub-attributes, duplicate names, anything invalid) goes to the tree parser in
//! [`super::parse`], which reports errors. Both paths give the same result for every
//! input: a property test compares them.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::parse::{EntityInput, Member, Purpose, entity_from, parse_attribute_instances, set_member, validate_value};
use super::{AttrKind, Attribute, Instances};
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;

/// A JSON object's members in order, names borrowed where they hold no escapes.
#[derive(Debug)]
pub struct Members<'a> {
    list: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Members<'a> {
    /// The member named `name` (the last one, as a parsed tree keeps it).
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.list.iter().rev().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    /// Whether a name occurs twice (a parsed tree would keep the first place, the last value).
    fn has_duplicates(&self) -> bool {
        let l = &self.list;
        (1..l.len()).any(|i| l[..i].iter().any(|(k, _)| *k == l[i].0))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &'a RawValue)> {
        self.list.iter().map(|(k, v)| (k.as_ref(), *v))
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Members<'de>, A::Error> {
                members(map)
            }
        }
        d.deserialize_map(V)
    }
}

fn members<'de, A: MapAccess<'de>>(mut map: A) -> Result<Members<'de>, A::Error> {
    let mut list = Vec::with_capacity(map.size_hint().unwrap_or(8));
    while let Some(k) = map.next_key::<Name<'de>>()? {
        list.push((k.0, map.next_value::<&'de RawValue>()?));
    }
    Ok(Members { list })
}

/// A member name: borrowed from the input unless it holds escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A batch element or request body read as text: an object's members, or something else
/// (which no entity can be).
#[derive(Debug)]
pub enum Element<'a> {
    Object(Members<'a>),
    Other,
}

impl<'de> Deserialize<'de> for Element<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Element<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Element<'de>, A::Error> {
                members(map).map(Element::Object)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Element<'de>, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Element::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Element<'de>, E> {
                Ok(Element::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Element<'de>, E> {
                Ok(Element::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Element<'de>, E> {
                Ok(Element::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Element<'de>, E> {
                Ok(Element::Other)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Element<'de>, E> {
                Ok(Element::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Element<'de>, E> {
                Ok(Element::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// The elements of a batch body: a non-empty array, with the errors
/// [`crate::ops::batch_items`] gives for a parsed one. The body is scanned once.
pub fn batch_elements(body: &[u8]) -> NgsiResult<Vec<Element<'_>>> {
    let items: Vec<Element> = match serde_json::from_slice(body) {
        Ok(items) => items,
        // Malformed JSON is told as such wherever it is; well-formed JSON is no array.
        Err(e) => match serde_json::from_slice::<&RawValue>(body) {
            Ok(_) => return Err(NgsiError::bad_data("a batch body must be a JSON array")),
            Err(_) => return Err(NgsiError::not_json(e)),
        },
    };
    if items.is_empty() {
        return Err(NgsiError::bad_data("a batch must contain at least one element"));
    }
    Ok(items)
}

/// The id a batch result reports for an element (empty when it has none), as
/// [`crate::ops::element_id`] reads it from a parsed element.
pub fn element_id(item: &Element) -> String {
    let Element::Object(m) = item else { return String::new() };
    m.get("id").and_then(|v| serde_json::from_str::<Cow<str>>(v.get()).ok()).map(Cow::into_owned).unwrap_or_default()
}

/// What an `application/json` body with an `@context` member is told: its context belongs in
/// a `Link` header.
pub const CONTEXT_IN_JSON: &str = "a body with @context must be sent as application/ld+json";

/// The entity of an `application/json` element, whose context is the `Link` header's (`ctx`).
pub fn parse_json_entity(
    item: &Element,
    ctx: &NgsiResult<Arc<Context>>,
    purpose: Purpose,
    now: i64,
) -> NgsiResult<EntityInput> {
    if let Element::Object(m) = item
        && m.get("@context").is_some()
    {
        return Err(NgsiError::bad_data(CONTEXT_IN_JSON));
    }
    parse_entity(item, ctx.as_ref().map_err(Clone::clone)?, purpose, now)
}

/// [`super::parse::parse_entity`] of an element read as text.
pub fn parse_entity(item: &Element, ctx: &Context, purpose: Purpose, now: i64) -> NgsiResult<EntityInput> {
    match item {
        Element::Object(m) if !m.has_duplicates() => {
            entity_from(|k| m.get(k).map(Member::Text), m.iter().map(|(k, v)| (k, Member::Text(v))), ctx, purpose, now)
        }
        // The tree a parser would make of the members: a repeated name keeps its first place
        // and its last value.
        Element::Object(m) => {
            let tree: serde_json::Map<String, Value> = m.iter().map(|(k, v)| (k.to_owned(), tree(v))).collect();
            super::parse::parse_entity(&Value::Object(tree), ctx, purpose, now)
        }
        Element::Other => Err(NgsiError::bad_data("an entity must be a JSON object")),
    }
}

/// [`parse_attribute_instances`] of the JSON text `v`.
pub(crate) fn attribute_instances(key: &str, v: &RawValue, ctx: &Context, now: i64) -> NgsiResult<Instances> {
    match normalized(v, ctx, now) {
        Some(a) => Ok(Instances::one(a)),
        None => parse_attribute_instances(key, &tree(v), ctx, now),
    }
}

/// The tree of member text (checked to be JSON when it was read).
pub(crate) fn tree(v: &RawValue) -> Value {
    serde_json::from_str(v.get()).unwrap_or(Value::Null)
}

/// One normalized attribute with an explicit kind, its value and only `observedAt`,
/// `unitCode`, `datasetId` and members that are ignored on input; `None` for anything else,
/// and for anything invalid (the tree parser then says what is wrong).
fn normalized(v: &RawValue, ctx: &Context, now: i64) -> Option<Attribute> {
    let n: Normalized = serde_json::from_str(v.get()).ok()?;
    let kind = AttrKind::parse(n.kind)?;
    let values = [
        ("value", n.value),
        ("object", n.object),
        ("languageMap", n.language_map),
        ("vocab", n.vocab),
        ("json", n.json),
        ("valueList", n.value_list),
        ("objectList", n.object_list),
    ];
    // Exactly the kind's own value member (another one is an error the tree parser reports).
    let given = values.iter().filter(|(_, v)| v.is_some()).count();
    let value = values.iter().find(|(k, _)| *k == kind.value_key()).and_then(|(_, v)| *v).filter(|_| given == 1)?;
    let mut attr = match compact_scalar(kind, value) {
        Some(text) => Attribute::with_text(kind, text.to_owned(), now),
        None => {
            let value: Value = serde_json::from_str(value.get()).ok()?;
            let valid = validate_value(kind, &value, ctx).ok()?;
            Attribute::new(kind, &valid, now)
        }
    };
    for (name, text) in [("observedAt", n.observed_at), ("unitCode", n.unit_code), ("datasetId", n.dataset_id)] {
        if text.is_some() {
            set_member(&mut attr, name, text).ok()?;
        }
    }
    Some(attr)
}

/// A valid Property or Relationship value whose text is already what parsing and writing it
/// again would give: a string without escapes (a URI for a Relationship), an integer that
/// stays one, `true`, `false`.
fn compact_scalar(kind: AttrKind, v: &RawValue) -> Option<&RawValue> {
    let t = v.get();
    let plain = |s: &str| s.len() >= 2 && s.ends_with('"') && !s.contains('\\');
    let ok = match kind {
        AttrKind::Relationship => t.starts_with('"') && plain(t) && super::parse::is_uri(&t[1..t.len() - 1]),
        AttrKind::Property => match t.as_bytes().first()? {
            b'"' => plain(t),
            b't' | b'f' => true,
            _ => {
                // Digits without a leading zero, short enough to stay an integer; "-0" is
                // written as 0.
                let digits = t.strip_prefix('-').unwrap_or(t);
                let b = digits.as_bytes();
                !b.is_empty()
                    && b.len() <= 18
                    && b.iter().all(u8::is_ascii_digit)
                    && (b[0] != b'0' || digits == t && b.len() == 1)
            }
        },
        _ => false,
    };
    ok.then_some(v)
}

/// The members [`normalized`] reads; any other member, a repeated one, or a member of the
/// wrong JSON type makes it fail.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Normalized<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default, borrow, deserialize_with = "present")]
    value: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    object: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present", rename = "languageMap")]
    language_map: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    vocab: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    json: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present", rename = "valueList")]
    value_list: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present", rename = "objectList")]
    object_list: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "text", rename = "observedAt")]
    observed_at: Option<&'a str>,
    #[serde(default, borrow, deserialize_with = "text", rename = "unitCode")]
    unit_code: Option<&'a str>,
    #[serde(default, borrow, deserialize_with = "text", rename = "datasetId")]
    dataset_id: Option<&'a str>,
    #[serde(default, rename = "createdAt")]
    _created_at: Option<de::IgnoredAny>,
    #[serde(default, rename = "modifiedAt")]
    _modified_at: Option<de::IgnoredAny>,
    #[serde(default, rename = "deletedAt")]
    _deleted_at: Option<de::IgnoredAny>,
    #[serde(default, rename = "instanceId")]
    _instance_id: Option<de::IgnoredAny>,
    #[serde(default, rename = "@context")]
    _context: Option<de::IgnoredAny>,
}

/// A member's JSON text, `null` included.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// A member that must be a string without escapes.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de str>, D::Error> {
    <&str>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonld::CORE;
    use proptest::prelude::*;

    fn both(text: &str) -> (Result<String, String>, Result<String, String>) {
        let show = |r: NgsiResult<EntityInput>| {
            r.map(|e| format!("{:?} {:?} {:?} {} {:?}", e.id, e.types, e.scope, e.scope_null, e.attrs))
                .map_err(|e| format!("{e:?}"))
        };
        let element: Element = serde_json::from_str(text).unwrap();
        let tree: Value = serde_json::from_str(text).unwrap();
        (
            show(parse_entity(&element, &CORE, Purpose::Create, 7)),
            show(super::super::parse::parse_entity(&tree, &CORE, Purpose::Create, 7)),
        )
    }

    #[test]
    fn batch_bodies_are_checked_like_parsed_ones() {
        assert!(batch_elements(b"[{\"id\":1}, 2, \"x\"]").is_ok_and(|v| v.len() == 3));
        assert!(batch_elements(b"[]").unwrap_err().detail.contains("at least one"));
        assert!(batch_elements(b"{}").unwrap_err().detail.contains("must be a JSON array"));
        assert!(batch_elements(b"[1,").unwrap_err().detail.contains("not valid JSON"));
        let items = batch_elements(br#"[{"id":"urn:a:1","type":"T"},{"type":"T"},7]"#).unwrap();
        let ids: Vec<String> = items.iter().map(|i| element_id(i)).collect();
        assert_eq!(ids, ["urn:a:1", "", ""]);
    }

    #[test]
    fn common_shapes_are_read_without_a_tree() {
        let text = r#"{"id":"urn:ngsi-ld:Vehicle:1","type":"Vehicle",
            "speed":{"type":"Property","value":12.5,"unitCode":"KMH","observedAt":"2026-01-15T10:00:00.000Z"},
            "isParked":{"type":"Relationship","object":"urn:ngsi-ld:P:1","datasetId":"urn:ds:1"},
            "location":{"type":"GeoProperty","value":{"type":"Point","coordinates":[1.5,2]}}}"#;
        let Element::Object(whole) = serde_json::from_str::<Element>(text).unwrap() else { panic!("an object") };
        for (_, v) in whole.iter() {
            if v.get().starts_with('{') {
                assert!(normalized(v, &CORE, 7).is_some(), "{}", v.get());
            }
        }
        let (a, b) = both(text);
        assert!(a.is_ok());
        assert_eq!(a, b);
    }

    #[test]
    fn scalars_kept_as_text_are_what_writing_them_gives() {
        for t in [
            "\"plain\"",
            "\"caf\u{e9}\"",
            "true",
            "false",
            "0",
            "-17",
            "123456789012345678",
            "-0",
            "2.50",
            "1e3",
            "null",
            "123456789012345678901234",
        ] {
            let raw: Box<RawValue> = serde_json::from_str(t).unwrap();
            let compact = serde_json::to_string(&serde_json::from_str::<Value>(t).unwrap()).unwrap();
            if let Some(kept) = compact_scalar(AttrKind::Property, &raw) {
                assert_eq!(kept.get(), compact, "{t}");
            }
        }
        let kept =
            |t: &str| compact_scalar(AttrKind::Property, &serde_json::from_str::<Box<RawValue>>(t).unwrap()).is_some();
        assert!(kept("\"plain\"") && kept("-17") && kept("true"));
        assert!(!kept("-0") && !kept("2.50") && !kept("\"a\\u00e9\""));
    }

    /// Attribute objects of every shape, valid and not, as JSON text.
    fn attribute() -> impl Strategy<Value = String> {
        let kind = prop::sample::select(vec![
            "\"Property\"",
            "\"Relationship\"",
            "\"GeoProperty\"",
            "\"LanguageProperty\"",
            "\"VocabProperty\"",
            "\"JsonProperty\"",
            "\"ListProperty\"",
            "\"Nope\"",
            "3",
            "\"Point\"",
        ]);
        let member = prop::sample::select(vec![
            r#""value":5"#,
            r#""value":"a\u00e9""#,
            r#""value":null"#,
            r#""value":1e3"#,
            r#""value":"plain""#,
            r#""value":-0"#,
            r#""value":0"#,
            r#""value":-17"#,
            r#""value":123456789012345678901234"#,
            r#""value":true"#,
            r#""value":2.50"#,
            r#""value":[1,2]"#,
            r#""value":{"type":"Point","coordinates":[1,2]}"#,
            r#""value":{"type":"Point"}"#,
            r#""object":"urn:a:b""#,
            r#""object":"not a uri""#,
            r#""languageMap":{"en":"x"}"#,
            r#""vocab":"sedan""#,
            r#""json":{"a":1}"#,
            r#""valueList":[1]"#,
            r#""observedAt":"2026-01-15T10:00:00.000Z""#,
            r#""observedAt":"2026-01-15T10:00:00Z""#,
            r#""observedAt":"yesterday""#,
            r#""observedAt":3"#,
            r#""unitCode":"KMH""#,
            r#""unitCode":1"#,
            r#""datasetId":"urn:ds:1""#,
            r#""datasetId":"x""#,
            r#""createdAt":"whatever""#,
            r#""instanceId":"urn:i:1""#,
            r#""accuracy":{"value":1}"#,
            r#""lang":"en""#,
            r#""coordinates":[1,2]"#,
        ]);
        (prop::option::of(kind), prop::collection::vec(member, 0..5)).prop_map(|(kind, members)| {
            let mut parts: Vec<String> = members.into_iter().map(str::to_owned).collect();
            if let Some(k) = kind {
                parts.insert(0, format!("\"type\":{k}"));
            }
            format!("{{{}}}", parts.join(","))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Whatever the client sends, reading the text gives what parsing the tree gives: the
        /// same entity, or the same error.
        #[test]
        fn text_and_tree_parsers_agree(
            attrs in prop::collection::vec(
                (prop::sample::select(vec!["speed", "a", "location", "bad name", "type2"]),
                 prop_oneof![attribute(), Just("7".to_owned()), Just("[{\"value\":1},{\"value\":2,\"datasetId\":\"urn:d:1\"}]".to_owned())]),
                0..5),
            head in prop::sample::select(vec![
                r#""id":"urn:a:1","type":"T""#,
                r#""id":"urn:a:1","type":["T","U"],"scope":"/a/b""#,
                r#""id":"nope","type":"T""#,
                r#""type":"T""#,
                r#""id":"urn:a:1","type":"T","id":"urn:a:2""#,
                r#""id":"urn:a:\u0031","type":"T""#,
            ]),
        ) {
            let body: Vec<String> = attrs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let text = if body.is_empty() { format!("{{{head}}}") } else { format!("{{{head},{}}}", body.join(",")) };
            let (a, b) = both(&text);
            prop_assert_eq!(a, b, "{}", text);
        }
    }
}
