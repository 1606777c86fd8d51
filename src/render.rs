//! Renders stored entities for clients: normalized, concise or keyValues form, compacted with
//! the request's context, with sysAttrs, pick/omit/attrs projection, datasetId and `lang`
//! selection, linked entities (`join=inline|flat`) and GeoJSON Features.
//!
//! Linked entities are fetched by the operation beforehand and handed over in
//! [`RenderOpts::linked`], so rendering stays free of I/O.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::parse::valid_name;
use crate::model::{AttrKind, Attribute, Entity, format_millis};

/// The representation asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Normalized,
    Concise,
    KeyValues,
}

/// Everything that shapes an entity's rendering.
#[derive(Debug, Clone, Default)]
pub struct RenderOpts {
    pub format: Format,
    pub sys_attrs: bool,
    /// Language preferences, best first; `*` keeps every language.
    pub lang: Option<Vec<String>>,
    /// Members to keep (expanded attribute names, plus `id` / `type`).
    pub pick: Option<HashSet<String>>,
    /// Members to drop.
    pub omit: Option<HashSet<String>>,
    /// Instances to keep, by datasetId (`@none` = the default instance).
    pub dataset_ids: Option<Vec<String>>,
    /// The GeoProperty used as a Feature's geometry (expanded).
    pub geometry_property: Option<String>,
    /// The `pick` expression, with the expressions for linked entities.
    pub pick_tree: Option<Projection>,
    /// The `omit` expression, with the expressions for linked entities.
    pub omit_tree: Option<Projection>,
    /// How linked entities are joined in, if at all.
    pub join: Option<Join>,
    /// How many more relationship hops are joined in.
    pub join_level: usize,
    /// Entities already present higher up (`containedBy`): never joined in again.
    pub contained_by: Vec<String>,
    /// The linked entities by id, fetched beforehand for `join`.
    pub linked: Option<Arc<HashMap<String, Arc<Entity>>>>,
}

/// How linked entities are returned (GS CIM 009 §4.5.23): inside the relationship
/// (`entity` member) or as further entities of a flat list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    Inline,
    Flat,
}

/// A `pick`/`omit` expression (GS CIM 009 §4.21): member names (attribute names expanded),
/// each with an optional expression for the entity its relationship links to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection(pub Vec<(String, Option<Projection>)>);

impl Projection {
    /// Every member named at this level.
    pub fn names(&self) -> HashSet<String> {
        self.0.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The members named without a nested expression (an `omit` with a nested expression
    /// omits inside the linked entity, not the relationship itself).
    pub fn leaves(&self) -> HashSet<String> {
        self.0.iter().filter(|(_, p)| p.is_none()).map(|(n, _)| n.clone()).collect()
    }

    /// The nested expression given for `name`.
    pub fn nested(&self, name: &str) -> Option<&Projection> {
        self.0.iter().find(|(n, _)| n == name).and_then(|(_, p)| p.as_ref())
    }
}

/// Parses a `pick`/`omit` value: `a,b{c,d{e}}`. Names go through `expand`.
pub fn parse_projection(s: &str, expand: &dyn Fn(&str) -> String) -> NgsiResult<Projection> {
    let chars: Vec<char> = s.chars().collect();
    let mut pos = 0;
    let p = projection_list(&chars, &mut pos, 0, expand)?;
    if pos != chars.len() {
        return Err(NgsiError::bad_data(format!("unexpected {:?} in the projection {s:?}", chars[pos])));
    }
    Ok(p)
}

fn projection_list(
    chars: &[char],
    pos: &mut usize,
    depth: usize,
    expand: &dyn Fn(&str) -> String,
) -> NgsiResult<Projection> {
    let bad = |msg: &str| NgsiError::bad_data(format!("invalid pick/omit expression: {msg}"));
    let mut items = Vec::new();
    loop {
        let start = *pos;
        while *pos < chars.len() && !matches!(chars[*pos], ',' | '{' | '}') {
            *pos += 1;
        }
        let name: String = chars[start..*pos].iter().collect();
        if name.is_empty() {
            return Err(bad("a member name is missing"));
        }
        if !valid_name(&name) {
            return Err(bad(&format!("{name:?} is not a valid member name")));
        }
        let nested = if chars.get(*pos) == Some(&'{') {
            *pos += 1;
            let inner = projection_list(chars, pos, depth + 1, expand)?;
            if chars.get(*pos) != Some(&'}') {
                return Err(bad("a brace is not closed"));
            }
            *pos += 1;
            Some(inner)
        } else {
            None
        };
        let member = if matches!(name.as_str(), "id" | "type" | "scope") { name } else { expand(&name) };
        items.push((member, nested));
        match chars.get(*pos) {
            Some(',') => *pos += 1,
            Some('}') if depth > 0 => return Ok(Projection(items)),
            None if depth == 0 => return Ok(Projection(items)),
            None => return Err(bad("a brace is not closed")),
            Some(c) => return Err(bad(&format!("unexpected {c:?}"))),
        }
    }
}

impl RenderOpts {
    /// Reads `options`/`format` values into format and sysAttrs.
    pub fn apply_options(&mut self, options: &[String], format: Option<&str>) -> NgsiResult<()> {
        for o in options {
            match o.as_str() {
                "keyValues" | "simplified" => self.format = Format::KeyValues,
                "concise" => self.format = Format::Concise,
                "normalized" => self.format = Format::Normalized,
                "sysAttrs" => self.sys_attrs = true,
                _ => {}
            }
        }
        if let Some(f) = format {
            self.format = match f {
                "keyValues" | "simplified" => Format::KeyValues,
                "concise" => Format::Concise,
                "normalized" => Format::Normalized,
                other => return Err(NgsiError::invalid(format!("unknown format {other:?}"))),
            };
        }
        Ok(())
    }

    /// The options for an entity linked through attribute `name`: the nested pick/omit
    /// expressions apply, one join level fewer remains.
    pub fn for_linked(&self, name: &str) -> RenderOpts {
        let mut o = self.clone();
        o.pick_tree = self.pick_tree.as_ref().and_then(|p| p.nested(name)).cloned();
        o.omit_tree = self.omit_tree.as_ref().and_then(|p| p.nested(name)).cloned();
        o.pick = o.pick_tree.as_ref().map(Projection::names);
        o.omit = o.omit_tree.as_ref().map(Projection::leaves);
        o.join_level = self.join_level.saturating_sub(1);
        o
    }

    /// The linked entity an attribute instance points at, when it is to be joined in.
    fn linked_target(&self, a: &Attribute) -> Option<&Arc<Entity>> {
        if self.join_level == 0 || a.kind != AttrKind::Relationship {
            return None;
        }
        self.linked.as_ref()?.get(a.value().as_str()?)
    }

    fn keeps(&self, member: &str) -> bool {
        if let Some(p) = &self.pick
            && !p.contains(member)
        {
            return false;
        }
        self.omit.as_ref().is_none_or(|o| !o.contains(member))
    }
}

/// Parses the `lang` parameter (`fr`, `fr,en;q=0.8`, `*`) into preferences, best first.
pub fn parse_lang(v: &str) -> NgsiResult<Vec<String>> {
    let mut prefs: Vec<(f32, usize, String)> = Vec::new();
    for (i, item) in v.split(',').enumerate() {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let mut q = 1.0f32;
        for p in parts {
            if let Some(x) = p.trim().strip_prefix("q=") {
                q = x.parse().map_err(|_| NgsiError::bad_data(format!("invalid q value in lang: {item}")))?;
            }
        }
        let ok = tag == "*"
            || (!tag.is_empty()
                && tag
                    .split('-')
                    .all(|p| !p.is_empty() && p.len() <= 8 && p.chars().all(|c| c.is_ascii_alphanumeric())));
        if !ok {
            return Err(NgsiError::bad_data(format!("{tag:?} is not a language tag")));
        }
        prefs.push((q, i, tag.to_owned()));
    }
    prefs.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal).then(a.1.cmp(&b.1)));
    Ok(prefs.into_iter().map(|p| p.2).collect())
}

/// Picks the language of a languageMap for the preferences; `*` accepts any language, which
/// is the `@none` entry or else the first one (GS CIM 009 §4.15). `None` only for an empty map.
fn choose_lang<'a>(map: &'a Map<String, Value>, prefs: &[String]) -> Option<(&'a str, &'a Value)> {
    for p in prefs {
        if p == "*" {
            break;
        }
        if let Some((k, v)) = map.get_key_value(p.as_str()) {
            return Some((k.as_str(), v));
        }
        if let Some((k, v)) = map.iter().find(|(k, _)| k.split('-').next() == Some(p.as_str())) {
            return Some((k.as_str(), v));
        }
    }
    map.get_key_value("@none").or_else(|| map.iter().next()).map(|(k, v)| (k.as_str(), v))
}

/// Renders one entity.
pub fn entity(e: &Entity, ctx: &Context, o: &RenderOpts) -> Value {
    let mut out = Map::new();
    if o.keeps("id") {
        out.insert("id".into(), Value::String(e.id.to_string()));
    }
    if o.keeps("type") {
        let types: Vec<Value> = e.types.iter().map(|t| Value::String(ctx.compact(t))).collect();
        out.insert("type".into(), if types.len() == 1 { types[0].clone() } else { Value::Array(types) });
    }
    if let Some(scope) = &e.scope
        && o.keeps("scope")
    {
        out.insert("scope".into(), if scope.len() == 1 { json!(scope[0]) } else { json!(scope) });
    }
    for (name, instances) in &e.attrs {
        if !o.keeps(name) {
            continue;
        }
        let kept: Vec<&Attribute> = instances
            .iter()
            .filter(|a| match &o.dataset_ids {
                None => true,
                Some(ids) => ids.iter().any(|d| match a.dataset_id() {
                    Some(x) => x == d,
                    None => d == "@none",
                }),
            })
            .collect();
        if kept.is_empty() {
            continue;
        }
        let rendered: Vec<Value> = kept
            .iter()
            .map(|a| {
                let mut v = attribute(a, ctx, o);
                if o.join == Some(Join::Inline)
                    && let Some(target) = o.linked_target(a)
                {
                    let inner = entity(target, ctx, &o.for_linked(name));
                    match &mut v {
                        Value::Object(m) => {
                            m.insert("entity".into(), inner);
                        }
                        // keyValues: the linked entity stands in for the relationship's object.
                        other => *other = inner,
                    }
                }
                v
            })
            .collect();
        let key = ctx.compact(name);
        let value = if rendered.len() == 1 {
            rendered.into_iter().next().unwrap_or(Value::Null)
        } else if o.format == Format::KeyValues {
            // Simplified multi-attributes (GS CIM 009 §4.5.5): {"dataset": {datasetId|@none: value}}.
            let mut by_ds = Map::new();
            for (a, v) in kept.iter().zip(rendered) {
                by_ds.insert(a.dataset_id().unwrap_or("@none").to_owned(), v);
            }
            json!({ "dataset": by_ds })
        } else {
            Value::Array(rendered)
        };
        out.insert(key, value);
    }
    if o.sys_attrs && o.format != Format::KeyValues {
        out.insert("createdAt".into(), json!(format_millis(e.created_at)));
        out.insert("modifiedAt".into(), json!(format_millis(e.modified_at)));
    }
    Value::Object(out)
}

/// Renders entities and, for `join=flat`, after them every linked entity reached through the
/// relationships the projection keeps, each once, breadth first.
pub fn flat(roots: &[&Entity], ctx: &Context, o: &RenderOpts) -> Vec<Value> {
    let linked = o.linked.clone().unwrap_or_default();
    let mut out = Vec::new();
    let mut seen: HashSet<&str> = roots.iter().map(|e| &*e.id).collect();
    let mut queue: VecDeque<(&Entity, RenderOpts)> = roots.iter().map(|e| (*e, o.clone())).collect();
    while let Some((ent, opts)) = queue.pop_front() {
        let mut plain = opts.clone();
        plain.join = None;
        out.push(entity(ent, ctx, &plain));
        if opts.join_level == 0 {
            continue;
        }
        for (name, instances) in &ent.attrs {
            if !opts.keeps(name) {
                continue;
            }
            for a in instances {
                if a.kind != AttrKind::Relationship {
                    continue;
                }
                if let Some(target) = a.value().as_str().and_then(|t| linked.get(t))
                    && seen.insert(&*target.id)
                {
                    queue.push_back((target, opts.for_linked(name)));
                }
            }
        }
    }
    out
}

fn value_out(a: &Attribute, ctx: &Context) -> Value {
    match a.kind {
        AttrKind::VocabProperty => ctx.compact_vocab_value(&a.value()),
        _ => a.value(),
    }
}

/// Renders one attribute instance (or sub-attribute).
pub fn attribute(a: &Attribute, ctx: &Context, o: &RenderOpts) -> Value {
    // A LanguageProperty seen through `lang` becomes a Property with one string.
    let parsed = if a.kind == AttrKind::LanguageProperty && o.lang.is_some() { a.value() } else { Value::Null };
    let lang_pick = match (&o.lang, a.kind, parsed.as_object()) {
        (Some(prefs), AttrKind::LanguageProperty, Some(map)) => choose_lang(map, prefs),
        _ => None,
    };
    if o.format == Format::KeyValues {
        return match lang_pick {
            Some((_, v)) => v.clone(),
            None => value_out(a, ctx),
        };
    }
    let mut out = Map::new();
    match lang_pick {
        Some((lang, v)) => {
            out.insert("type".into(), json!("Property"));
            out.insert("value".into(), v.clone());
            out.insert("lang".into(), json!(lang));
        }
        None => {
            out.insert("type".into(), json!(a.kind.name()));
            out.insert(a.kind.value_key().into(), value_out(a, ctx));
        }
    }
    if let Some(d) = a.dataset_id() {
        out.insert("datasetId".into(), json!(d));
    }
    if let Some(t) = a.observed_at() {
        out.insert("observedAt".into(), json!(t));
    }
    if let Some(u) = a.unit_code() {
        out.insert("unitCode".into(), json!(u));
    }
    for (k, v) in a.extra() {
        out.insert(k.clone(), v.clone());
    }
    for (name, sub) in a.sub() {
        out.insert(ctx.compact(name), attribute(sub, ctx, o));
    }
    if o.sys_attrs {
        out.insert("createdAt".into(), json!(format_millis(a.created_at)));
        out.insert("modifiedAt".into(), json!(format_millis(a.modified_at)));
    }
    if o.format == Format::Concise {
        out.shift_remove("type");
        let only_value = out.len() == 1 && out.contains_key("value");
        if only_value {
            let v = &out["value"];
            let bare = match a.kind {
                AttrKind::GeoProperty => true,
                _ => !(v.is_object() || v.is_array()),
            };
            if bare {
                return out.shift_remove("value").unwrap_or(Value::Null);
            }
        }
    }
    Value::Object(out)
}

/// Whether [`write_entity`] can write entities directly for these options: the common case of a
/// format and sysAttrs, without a projection, language selection, datasetId selection or join.
pub fn direct(o: &RenderOpts) -> bool {
    o.lang.is_none() && o.pick.is_none() && o.omit.is_none() && o.dataset_ids.is_none() && o.join.is_none()
}

/// Appends `s` as a JSON string.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends a JSON value.
fn push_json(out: &mut Vec<u8>, v: &Value) {
    let _ = serde_json::to_writer(&mut *out, v);
}

/// Appends `"key":`.
fn push_key(out: &mut Vec<u8>, key: &str) {
    push_json_str(out, key);
    out.push(b':');
}

/// Appends a timestamp as NGSI-LD renders DateTime values.
fn push_millis(out: &mut Vec<u8>, ms: i64) {
    out.push(b'"');
    if let Some(text) = crate::model::stamp::format(ms) {
        out.extend_from_slice(&text);
        out.push(b'"');
        return;
    }
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => {
            use std::io::Write as _;
            let _ = write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
        }
        None => out.extend_from_slice(b"1970-01-01T00:00:00.000Z"),
    }
    out.push(b'"');
}

/// Writes one entity as JSON, the same document [`entity`] builds (serialized), without building
/// a JSON tree: attribute values are copied from their stored JSON text. `extra` is one more
/// member written last (the `@context` of JSON-LD answers). Options that [`direct`] refuses,
/// and members whose names would collide, go through [`entity`].
pub fn write_entity(e: &Entity, ctx: &Context, o: &RenderOpts, extra: Option<(&str, &Value)>, out: &mut Vec<u8>) {
    let start = out.len();
    if !direct(o) || !write_direct(e, ctx, o, out) {
        out.truncate(start);
        let mut v = entity(e, ctx, o);
        if let (Some((k, x)), Value::Object(m)) = (extra, &mut v) {
            m.insert(k.to_owned(), x.clone());
        }
        push_json(out, &v);
        return;
    }
    if let Some((k, x)) = extra {
        out.push(b',');
        push_key(out, k);
        push_json(out, x);
    }
    out.push(b'}');
}

/// The members [`entity`] writes besides attributes: an attribute compacting to one of these
/// would replace it, so such entities take the general path.
const ENTITY_MEMBERS: [&str; 5] = ["id", "type", "scope", "createdAt", "modifiedAt"];

/// Writes an entity without its closing brace; false when it needs the general path.
fn write_direct(e: &Entity, ctx: &Context, o: &RenderOpts, out: &mut Vec<u8>) -> bool {
    out.extend_from_slice(b"{\"id\":");
    push_json_str(out, &e.id);
    out.extend_from_slice(b",\"type\":");
    if let [only] = e.types.as_slice() {
        ctx.with_compact(only, |t| push_json_str(out, t));
    } else {
        out.push(b'[');
        for (i, t) in e.types.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            ctx.with_compact(t, |t| push_json_str(out, t));
        }
        out.push(b']');
    }
    if let Some(scope) = &e.scope {
        out.extend_from_slice(b",\"scope\":");
        match scope.as_slice() {
            [only] => push_json_str(out, only),
            list => push_json(out, &Value::from(list.to_vec())),
        }
    }
    // Compacted names seen so far, to detect two attributes compacting to the same name.
    let mut names: smallvec::SmallVec<[(usize, usize); 16]> = smallvec::SmallVec::new();
    for (name, instances) in &e.attrs {
        out.push(b',');
        let key_start = out.len();
        ctx.with_compact(name, |k| push_json_str(out, k));
        let key = (key_start, out.len());
        let text = &out[key.0 + 1..key.1 - 1];
        if ENTITY_MEMBERS.iter().any(|m| m.as_bytes() == text)
            || names.iter().any(|&(a, b)| out[a..b] == out[key.0..key.1])
        {
            return false;
        }
        names.push(key);
        out.push(b':');
        match &instances[..] {
            [only] => write_attribute(only, ctx, o, out),
            // Multi-attributes (an array, or keyValues' datasets) take the general path.
            _ => push_json(out, &entity_member(instances, ctx, o)),
        }
    }
    if o.sys_attrs && o.format != Format::KeyValues {
        out.extend_from_slice(b",\"createdAt\":");
        push_millis(out, e.created_at);
        out.extend_from_slice(b",\"modifiedAt\":");
        push_millis(out, e.modified_at);
    }
    true
}

/// One attribute's member value as [`entity`] renders it, through the JSON tree.
fn entity_member(instances: &[Attribute], ctx: &Context, o: &RenderOpts) -> Value {
    let rendered: Vec<Value> = instances.iter().map(|a| attribute(a, ctx, o)).collect();
    if rendered.len() == 1 {
        return rendered.into_iter().next().unwrap_or(Value::Null);
    }
    if o.format == Format::KeyValues {
        let mut by_ds = Map::new();
        for (a, v) in instances.iter().zip(rendered) {
            by_ds.insert(a.dataset_id().unwrap_or("@none").to_owned(), v);
        }
        return json!({ "dataset": by_ds });
    }
    Value::Array(rendered)
}

/// Writes one attribute instance as [`attribute`] renders it; values are copied as stored.
/// Instances with sub-attributes, other members or vocabulary values go through [`attribute`].
fn write_attribute(a: &Attribute, ctx: &Context, o: &RenderOpts, out: &mut Vec<u8>) {
    if a.kind == AttrKind::VocabProperty || !a.extra().is_empty() || !a.sub().is_empty() {
        push_json(out, &attribute(a, ctx, o));
        return;
    }
    let value = a.value_text().as_bytes();
    if o.format == Format::KeyValues {
        out.extend_from_slice(value);
        return;
    }
    let observed = a.observed_at();
    let (dataset, observed, unit) = (a.dataset_id(), observed.as_deref(), a.unit_code());
    if o.format == Format::Concise {
        // Concise drops `type`; a lone value is written bare unless it is an object or an
        // array (a GeoProperty's geometry is always bare).
        let lone = dataset.is_none() && observed.is_none() && unit.is_none() && !o.sys_attrs;
        let bare = match a.kind {
            AttrKind::GeoProperty => true,
            AttrKind::Property => !matches!(value.first(), Some(b'{' | b'[')),
            _ => false,
        };
        if lone && bare {
            out.extend_from_slice(value);
            return;
        }
        out.push(b'{');
    } else {
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(a.kind.name().as_bytes());
        out.extend_from_slice(b"\",");
    }
    out.push(b'"');
    out.extend_from_slice(a.kind.value_key().as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(value);
    for (k, v) in [("datasetId", dataset), ("observedAt", observed), ("unitCode", unit)] {
        if let Some(v) = v {
            out.push(b',');
            push_key(out, k);
            push_json_str(out, v);
        }
    }
    if o.sys_attrs {
        out.extend_from_slice(b",\"createdAt\":");
        push_millis(out, a.created_at);
        out.extend_from_slice(b",\"modifiedAt\":");
        push_millis(out, a.modified_at);
    }
    out.push(b'}');
}

/// Wraps a rendered entity as a GeoJSON Feature.
pub fn feature(e: &Entity, rendered: Value, o: &RenderOpts) -> Value {
    let geo_name = o.geometry_property.clone().unwrap_or_else(|| "https://uri.etsi.org/ngsi-ld/location".to_owned());
    let geometry = e
        .attrs
        .get(geo_name.as_str())
        .and_then(|list| list.iter().find(|a| a.dataset_id().is_none()).or_else(|| list.first()))
        .filter(|a| a.kind == AttrKind::GeoProperty)
        .map(Attribute::value)
        .unwrap_or(Value::Null);
    let mut props = match rendered {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let id = props.remove("id").unwrap_or(Value::Null);
    json!({"id": id, "type": "Feature", "geometry": geometry, "properties": props})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> NgsiResult<Projection> {
        parse_projection(s, &|n| format!("x:{n}"))
    }

    #[test]
    fn projections_nest_and_expand() {
        let p = parse("id,locatedAt{name,isIn{description}}").unwrap();
        assert_eq!(p.names(), HashSet::from(["id".to_owned(), "x:locatedAt".to_owned()]));
        assert_eq!(p.leaves(), HashSet::from(["id".to_owned()]));
        let inner = p.nested("x:locatedAt").unwrap();
        assert_eq!(inner.nested("x:isIn").unwrap().names(), HashSet::from(["x:description".to_owned()]));
    }

    fn entity_of(v: serde_json::Value) -> Arc<Entity> {
        use crate::model::parse::{Purpose, parse_entity};
        let input = parse_entity(&v, &crate::jsonld::CORE, Purpose::Create, 1).unwrap();
        let id = input.id.clone().unwrap();
        Arc::new(input.into_entity(id, 1))
    }

    #[test]
    fn joins_inline_and_flat() {
        let b = entity_of(json!({"id": "urn:b:1", "type": "B", "at": {"object": "urn:c:1"}}));
        let c = entity_of(json!({"id": "urn:c:1", "type": "C", "name": "Paris"}));
        let ctx = crate::jsonld::CORE.clone();
        let mut o = RenderOpts {
            join: Some(Join::Inline),
            join_level: 1,
            linked: Some(Arc::new(HashMap::from([(c.id.to_string(), c.clone())]))),
            ..Default::default()
        };
        let inline = entity(&b, &ctx, &o);
        assert_eq!(inline["at"]["entity"]["name"]["value"], "Paris");
        o.join = Some(Join::Flat);
        let flat_list = flat(&[b.as_ref(), c.as_ref()], &ctx, &o);
        assert_eq!(flat_list.len(), 2, "a linked entity that is also a root appears once");
        assert!(flat_list[0]["at"].get("entity").is_none());
    }

    use proptest::prelude::*;

    /// One attribute in normalized form, from a generated shape.
    fn attr_json(kind: usize, n: i64, meta: usize, ds: Option<&str>) -> Value {
        let mut a = match kind {
            0 => json!({"type": "Property", "value": n}),
            1 => json!({"type": "Property", "value": format!("text \"{n}\" é\n")}),
            2 => json!({"type": "Property", "value": {"a": n, "b": [1, 2.5, null, true]}}),
            3 => json!({"type": "Property", "value": [n, n + 1]}),
            4 => json!({"type": "Relationship", "object": format!("urn:ngsi-ld:Thing:{n}")}),
            5 => json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [n as f64 / 8.0, 1.5]}}),
            6 => json!({"type": "LanguageProperty", "languageMap": {"en": "one", "fr": "un"}}),
            7 => json!({"type": "VocabProperty", "vocab": "Open"}),
            8 => json!({"type": "JsonProperty", "json": {"k": [n]}}),
            9 => json!({"type": "ListProperty", "valueList": [n, "x"]}),
            _ => json!({"type": "Property", "value": n as f64 + 0.25,
                        "sub": {"type": "Property", "value": 1}, "objectType": "Thing"}),
        };
        if meta & 1 != 0 {
            a["observedAt"] = json!("2026-01-15T10:00:00.000Z");
        }
        if meta & 2 != 0 {
            a["unitCode"] = json!("KMH");
        }
        if let Some(d) = ds {
            a["datasetId"] = json!(d);
        }
        a
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]
        /// The direct writer produces byte for byte the document the JSON tree path serializes,
        /// in every format, with and without sysAttrs and an extra `@context` member.
        #[test]
        fn direct_writing_equals_the_tree_path(
            attrs in proptest::collection::vec((0usize..11, -1000i64..1000, 0usize..4, 0usize..3), 0..7),
            two_types in any::<bool>(),
            scope in 0usize..3,
            format in 0usize..3,
            sys_attrs in any::<bool>(),
            ld in any::<bool>(),
        ) {
            let mut body = json!({"id": "urn:ngsi-ld:Vehicle:1", "type": if two_types { json!(["Vehicle", "http://example.org/Car"]) } else { json!("Vehicle") }});
            match scope {
                1 => body["scope"] = json!("/Madrid"),
                2 => body["scope"] = json!(["/Madrid", "/Spain"]),
                _ => {}
            }
            let names = ["speed", "brandName", "http://example.org/p", "location", "category", "name", "q"];
            for (i, (kind, n, meta, multi)) in attrs.iter().enumerate() {
                let name = names[i % names.len()];
                // multi: 0 one instance, 1 a datasetId, 2 two instances (a default one and a datasetId)
                body[name] = match multi {
                    0 => attr_json(*kind, *n, *meta, None),
                    1 => attr_json(*kind, *n, *meta, Some("urn:ds:1")),
                    _ => json!([attr_json(*kind, *n, *meta, None), attr_json(*kind, *n + 1, *meta, Some("urn:ds:2"))]),
                };
            }
            let e = entity_of(body);
            let ctx = crate::jsonld::CORE.clone();
            let o = RenderOpts {
                format: [Format::Normalized, Format::Concise, Format::KeyValues][format],
                sys_attrs,
                ..Default::default()
            };
            prop_assert!(direct(&o));
            let c = json!("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld");
            let mut tree = entity(&e, &ctx, &o);
            if ld && let Value::Object(m) = &mut tree {
                m.insert("@context".into(), c.clone());
            }
            let mut out = Vec::new();
            write_entity(&e, &ctx, &o, ld.then_some(("@context", &c)), &mut out);
            prop_assert_eq!(String::from_utf8(out).unwrap(), tree.to_string());
        }
    }

    #[test]
    fn options_beyond_the_common_case_take_the_tree_path() {
        let e = entity_of(json!({"id": "urn:a:1", "type": "A", "name": {"type": "Property", "value": "x"},
            "size": {"type": "Property", "value": 3}}));
        let ctx = crate::jsonld::CORE.clone();
        let o = RenderOpts { pick: Some(HashSet::from([ctx.expand("name"), "id".to_owned()])), ..Default::default() };
        assert!(!direct(&o));
        let mut out = Vec::new();
        write_entity(&e, &ctx, &o, None, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), entity(&e, &ctx, &o).to_string());
        assert_eq!(entity(&e, &ctx, &o).as_object().unwrap().len(), 2);
    }

    #[test]
    fn malformed_projections_are_rejected() {
        for bad in
            ["id;name", "id,locatedAt{name", "id,locatedAt{{name}", "id,,name", "id,locatedAt{,name}", "a{}", "a}"]
        {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
