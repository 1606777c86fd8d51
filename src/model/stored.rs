//! The stored form of an entity written by hand, byte for byte what serializing it with serde
//! gives (a property test holds them equal).
//!
//! Every write puts the whole entity in the log, on the store's one writer thread. serde_json
//! checks every string for characters to escape one byte at a time, and the stored form is
//! mostly strings (expanded attribute names, ids, stamps); here a string is checked in one
//! pass the compiler vectorizes and copied whole, and values are copied from their text.

use serde::Serialize;

use super::{AttrMap, Attribute, Entity};

impl Entity {
    /// The stored form (`serde_json::to_vec` of the entity).
    pub fn stored(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + 160 * self.attrs.len());
        out.extend_from_slice(b"{\"id\":");
        string(&mut out, &self.id);
        out.extend_from_slice(b",\"types\":[");
        for (i, t) in self.types.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(&mut out, t);
        }
        out.push(b']');
        if let Some(scope) = &self.scope {
            out.extend_from_slice(b",\"scope\":[");
            for (i, s) in scope.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(&mut out, s);
            }
            out.push(b']');
        }
        out.extend_from_slice(b",\"attrs\":");
        attrs(&mut out, &self.attrs);
        times(&mut out, self.created_at, self.modified_at);
        out
    }
}

fn attrs(out: &mut Vec<u8>, attrs: &AttrMap) {
    out.push(b'{');
    for (i, (name, list)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, name);
        out.extend_from_slice(b":[");
        for (j, a) in list.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            attribute(out, a);
        }
        out.push(b']');
    }
    out.push(b'}');
}

fn attribute(out: &mut Vec<u8>, a: &Attribute) {
    out.extend_from_slice(b"{\"kind\":\"");
    out.extend_from_slice(a.kind.name().as_bytes());
    out.extend_from_slice(b"\",\"value\":");
    out.extend_from_slice(a.value_text().as_bytes());
    // As `Serialize for Attribute` decides: a meta member when there is anything out of line
    // or a packed observedAt.
    let m = a.meta.as_deref();
    if m.is_some() || a.observed.is_set() {
        let rare = m.and_then(|m| m.rare.as_deref());
        let (dataset_id, unit_code) = (m.and_then(|m| m.dataset_id.as_deref()), m.and_then(|m| m.unit_code.as_deref()));
        let observed_at = a.observed_at();
        let (extra, sub) = (rare.and_then(|r| r.extra.as_deref()), rare.and_then(|r| r.sub.as_deref()));
        out.extend_from_slice(b",\"meta\":{");
        let mut first = true;
        let mut key = |out: &mut Vec<u8>, k: &[u8]| {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(k);
        };
        if let Some(d) = dataset_id {
            key(out, b"\"dataset_id\":");
            string(out, d);
        }
        if let Some(t) = observed_at {
            key(out, b"\"observed_at\":");
            string(out, t.as_str());
        }
        if let Some(u) = unit_code {
            key(out, b"\"unit_code\":");
            string(out, u);
        }
        if let Some(x) = extra {
            key(out, b"\"extra\":");
            tree(out, x);
        }
        if let Some(x) = sub {
            key(out, b"\"sub\":");
            tree(out, x);
        }
        out.push(b'}');
    }
    times(out, a.created_at, a.modified_at);
}

fn times(out: &mut Vec<u8>, created_at: i64, modified_at: i64) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b",\"created_at\":");
    out.extend_from_slice(n.format(created_at).as_bytes());
    out.extend_from_slice(b",\"modified_at\":");
    out.extend_from_slice(n.format(modified_at).as_bytes());
    out.push(b'}');
}

/// The rare members (extra members, sub-attributes) are written by serde.
fn tree(out: &mut Vec<u8>, v: &impl Serialize) {
    // Writing into a Vec cannot fail, and these types always serialize.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// A JSON string: copied whole when nothing in it needs escaping.
fn string(out: &mut Vec<u8>, s: &str) {
    // No early exit: the loop is vectorized.
    let escape = s.bytes().fold(false, |e, b| e | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if escape {
        tree(out, &s);
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("urn:ngsi-ld:Vehicle:1".to_owned()),
            Just("https://uri.etsi.org/ngsi-ld/default-context/speed".to_owned()),
            Just("2026-01-15T10:00:00.000Z".to_owned()),
            "[ -~\u{7f}\u{1}\u{1f}\"\\\\é😀]{0,12}",
        ]
    }

    fn attribute(depth: u32) -> BoxedStrategy<Value> {
        let sub = if depth == 0 {
            Just(None).boxed()
        } else {
            prop::option::of(prop::collection::vec((text(), attribute(depth - 1)), 1..3)).boxed()
        };
        (
            prop::sample::select(vec!["Property", "Relationship", "GeoProperty", "LanguageProperty", "ListProperty"]),
            prop_oneof![Just(json!(1)), Just(json!(-2.5)), text().prop_map(Value::from), Just(json!({"a": [1, "x"]}))],
            prop::option::of(text()),
            prop::option::of(prop_oneof![Just("2026-01-15T10:00:00.000Z".to_owned()), text()]),
            prop::option::of(text()),
            prop::option::of(text()),
            sub,
            (any::<i64>(), any::<i64>()),
        )
            .prop_map(|(kind, value, dataset, observed, unit, lang, sub, (c, m))| {
                let mut meta = serde_json::Map::new();
                if let Some(d) = dataset {
                    meta.insert("dataset_id".into(), d.into());
                }
                if let Some(o) = observed {
                    meta.insert("observed_at".into(), o.into());
                }
                if let Some(u) = unit {
                    meta.insert("unit_code".into(), u.into());
                }
                if let Some(l) = lang {
                    meta.insert("extra".into(), json!({"lang": l}));
                }
                if let Some(s) = sub {
                    meta.insert("sub".into(), Value::Object(s.into_iter().collect()));
                }
                let mut a = json!({"kind": kind, "value": value, "created_at": c, "modified_at": m});
                if !meta.is_empty() {
                    a["meta"] = Value::Object(meta);
                }
                a
            })
            .boxed()
    }

    proptest! {
        #[test]
        fn stored_form_is_what_serde_writes(
            id in text(),
            types in prop::collection::vec(text(), 1..3),
            scope in prop::option::of(prop::collection::vec(text(), 1..3)),
            attrs in prop::collection::vec((text(), prop::collection::vec(attribute(1), 1..3)), 0..4),
            times in (any::<i64>(), any::<i64>()),
        ) {
            let mut e = json!({"id": id, "types": types, "attrs": Value::Object(attrs.into_iter().map(|(k, v)| (k, Value::from(v))).collect()),
                               "created_at": times.0, "modified_at": times.1});
            if let Some(s) = scope {
                e["scope"] = json!(s);
            }
            let entity: Entity = serde_json::from_value(e).unwrap();
            prop_assert_eq!(String::from_utf8(entity.stored()).unwrap(), serde_json::to_string(&entity).unwrap());
        }
    }
}
