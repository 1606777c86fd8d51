//! `orderBy` (GS CIM 009 v1.9.1 §4.23): a comma list of `member[;asc|;desc]` where a member is
//! `id`, `type`, `createdAt`, `modifiedAt`, an attribute, or a path into sub-attributes
//! (`name.createdAt`, `name.subProperty`). Entities without the member sort last; ties keep
//! the store's creation order, so pages stay stable.

use std::cmp::Ordering;

use serde_json::Value;

use super::q::{ResolvedPath, collect};
use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::Entity;

#[derive(Debug, Clone)]
pub struct OrderBy {
    keys: Vec<(ResolvedPath, bool)>,
}

fn err(msg: String) -> NgsiError {
    NgsiError::bad_data(format!("invalid orderBy: {msg}"))
}

/// Parses `orderBy`, expanding names with `ctx`.
pub fn parse(src: &str, ctx: &Context) -> NgsiResult<OrderBy> {
    let mut keys = Vec::new();
    for item in src.split(',') {
        let (path, dir) = match item.split_once(';') {
            Some((p, d)) => (p.trim(), d.trim()),
            None => (item.trim(), "asc"),
        };
        let desc = match dir {
            "asc" => false,
            "desc" => true,
            other => return Err(err(format!("{other:?} is not asc or desc"))),
        };
        if path.is_empty() || path.chars().any(|c| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '=' | '(' | ')'))
        {
            return Err(err(format!("{path:?} is not a member")));
        }
        let mut parts = path.split('.');
        let first = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        if rest.iter().any(|p| p.is_empty()) {
            return Err(err(format!("{path:?} is not a member")));
        }
        let system = rest.is_empty() && matches!(first, "id" | "type" | "createdAt" | "modifiedAt");
        let attr = if system { first.to_owned() } else { ctx.expand(first) };
        let sub = rest
            .iter()
            .map(|s| {
                if matches!(*s, "createdAt" | "modifiedAt" | "observedAt" | "unitCode" | "datasetId") {
                    (*s).to_owned()
                } else {
                    ctx.expand(s)
                }
            })
            .collect();
        keys.push((ResolvedPath { attr, system, sub, json: Vec::new() }, desc));
    }
    Ok(OrderBy { keys })
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        _ => 3,
    }
}

/// Orders two values: numbers, then strings, then booleans, then the rest.
fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.as_f64().unwrap_or(0.0).partial_cmp(&y.as_f64().unwrap_or(0.0)).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)).then_with(|| a.to_string().cmp(&b.to_string())),
    }
}

impl OrderBy {
    /// Compares two entities by the keys in turn.
    pub fn compare(&self, a: &Entity, b: &Entity) -> Ordering {
        for (path, desc) in &self.keys {
            let va = collect(a, path).into_iter().next().map(|x| x.0);
            let vb = collect(b, path).into_iter().next().map(|x| x.0);
            let o = match (&va, &vb) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => {
                    let o = cmp_values(x, y);
                    if *desc { o.reverse() } else { o }
                }
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonld::CORE;
    use crate::model::parse::{Purpose, parse_entity};
    use serde_json::json;

    fn e(v: Value, created: i64) -> Entity {
        let input = parse_entity(&v, &CORE, Purpose::Create, created).unwrap();
        let id = input.id.clone().unwrap();
        input.into_entity(id, created)
    }

    #[test]
    fn orders_by_members_and_directions() {
        let a = e(json!({"id": "urn:a", "type": "T", "name": "b", "n": 2}), 1);
        let b = e(json!({"id": "urn:b", "type": "S", "name": "a", "n": 10}), 2);
        let c = e(json!({"id": "urn:c", "type": "T"}), 3);
        let sort = |spec: &str| {
            let o = parse(spec, &CORE).unwrap();
            let mut v = [&a, &b, &c];
            v.sort_by(|x, y| o.compare(x, y));
            v.iter().map(|x| &*x.id).collect::<Vec<_>>()
        };
        assert_eq!(sort("name"), ["urn:b", "urn:a", "urn:c"]);
        assert_eq!(sort("name;desc"), ["urn:a", "urn:b", "urn:c"]);
        assert_eq!(sort("n"), ["urn:a", "urn:b", "urn:c"], "numbers compare as numbers");
        assert_eq!(sort("id;desc"), ["urn:c", "urn:b", "urn:a"]);
        assert_eq!(sort("type,name;desc"), ["urn:b", "urn:a", "urn:c"]);
        assert_eq!(sort("createdAt;desc"), ["urn:c", "urn:b", "urn:a"]);
        assert!(parse("name;sideways", &CORE).is_err());
        assert!(parse("a..b", &CORE).is_err());
    }
}
