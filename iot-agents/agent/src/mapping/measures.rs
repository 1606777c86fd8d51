//! From measures to NGSI-LD entities, by the rules of iotagent-node-lib's update path
//! (`sendUpdateValueNgsiLD`): the entity id (`entityNameExp`), attribute mapping, JEXL
//! expressions in attribute order, `explicitAttrs`, `skipValue`, metadata, timestamps
//! (`TimeInstant` → `observedAt`), static attributes, multi-entity attributes, and the ordering
//! of a multi-measure by `TimeInstant`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::iso8601::strict_iso;
use super::jexl::{self, Scope};
use super::resolve::{device_context, urn};
use super::{Measures, Resolved, TypedMeasures, js, types};
use crate::error::{AgentError, Result};

const TIME_INSTANT: &str = "TimeInstant";

/// The entity id one measure group goes to: the group's `entityNameExp` evaluated with the
/// measures when it yields a name, else the resolved entity id.
pub fn entity_id_for(resolved: &Resolved, measures: &Measures) -> String {
    if resolved.entity_name_exp.is_none() {
        return resolved.entity_id.clone();
    }
    entity_id_with(resolved, &device_context(resolved), measures)
}

fn entity_id_with(resolved: &Resolved, fixed: &Map<String, Value>, measures: &Measures) -> String {
    let Some(exp) = &resolved.entity_name_exp else {
        return resolved.entity_id.clone();
    };
    let ctx = Ctx { results: &Map::new(), shadowed: &[], fixed, measures };
    // Upstream takes any truthy result (the expression's own text when it is undefined) as the
    // name, and keeps the default on a falsy result or an error.
    match apply_expression(exp, &ctx) {
        Ok(v) if js::truthy(&v) => urn(&resolved.entity_type, &js::to_js_string(&v)),
        other => {
            tracing::debug!(expression = %exp, result = ?other, "entityNameExp gave no name; using the default entity id");
            resolved.entity_id.clone()
        }
    }
}

fn apply_expression(exp: &str, ctx: &Ctx<'_>) -> Result<Value> {
    jexl::apply(exp, ctx)
}

/// Expression scope, in upstream's order of precedence: the attributes computed so far, then
/// the device's identifiers and static attributes, then the measures (`id` and `type` measures
/// under `measure_id` / `measure_type`). Nothing is copied per attribute.
struct Ctx<'a> {
    results: &'a Map<String, Value>,
    /// Names that are `undefined` while their own expression runs (an attribute without a
    /// measure): they hide the device's fields and measures of the same name.
    shadowed: &'a [&'a str],
    fixed: &'a Map<String, Value>,
    measures: &'a Measures,
}

impl Scope for Ctx<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        if let Some(v) = self.results.get(name) {
            return Some(v);
        }
        if self.shadowed.contains(&name) {
            return None;
        }
        self.fixed.get(name).or_else(|| measure(self.measures, name))
    }
}

/// A measure by the name the mapping knows it under: `id` and `type` are renamed `measure_id`
/// and `measure_type` before anything else looks at them.
fn measure<'a>(m: &'a Measures, name: &str) -> Option<&'a Value> {
    match name {
        "id" | "type" => None,
        "measure_id" => m.get("id"),
        "measure_type" => m.get("type"),
        other => m.get(other),
    }
}

/// The name a measure passes through under when no attribute maps it.
fn measure_name(key: &str) -> &str {
    match key {
        "id" => "measure_id",
        "type" => "measure_type",
        other => other,
    }
}

/// Which attributes `explicitAttrs` lets through.
enum Explicit {
    /// `false`: every attribute, and the measures no attribute maps.
    All,
    /// `true`: the provisioned (static, lazy, active) attributes.
    Provisioned,
    /// An array: the provisioned attributes it names (strings match the name, `{object_id}`
    /// objects the measure name).
    Named { names: Vec<String>, object_ids: Vec<String> },
    /// An expression that yields neither a boolean nor an array: nothing is sent.
    Nothing,
}

impl Explicit {
    fn from_value(v: &Value, ctx: &Ctx<'_>, timestamp: bool) -> Result<Explicit> {
        Ok(match v {
            Value::Bool(false) | Value::Null => Explicit::All,
            Value::Bool(true) => Explicit::Provisioned,
            Value::Array(items) => Explicit::named(items, timestamp),
            Value::String(s) => {
                let node = jexl::compile(s)?;
                match jexl::eval(&node, ctx) {
                    Ok(Value::Bool(b)) => {
                        if b {
                            Explicit::Provisioned
                        } else {
                            Explicit::All
                        }
                    }
                    Ok(Value::Array(items)) => Explicit::named(&items, timestamp),
                    Ok(_) => Explicit::Nothing,
                    Err(e) => {
                        tracing::debug!(expression = %s, error = %e, "explicitAttrs failed; sending every attribute");
                        Explicit::All
                    }
                }
            }
            _ => Explicit::All,
        })
    }

    fn named(items: &[Value], timestamp: bool) -> Explicit {
        let mut names: Vec<String> = items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect();
        let object_ids =
            items.iter().filter_map(|i| i.get("object_id").and_then(Value::as_str).map(str::to_owned)).collect();
        // A non-empty list keeps the timestamp, as upstream adds `TimeInstant` to it.
        if !items.is_empty() && timestamp {
            names.push(TIME_INSTANT.to_owned());
        }
        Explicit::Named { names, object_ids }
    }

    fn keeps_provisioned(&self, name: &str, object_id: &str) -> bool {
        match self {
            Explicit::All | Explicit::Provisioned => true,
            Explicit::Named { names, object_ids } => {
                names.iter().any(|n| n == name) || object_ids.iter().any(|o| o == object_id)
            }
            Explicit::Nothing => false,
        }
    }
}

/// One entity under construction.
struct Out {
    id: String,
    entity_type: String,
    attrs: Map<String, Value>,
}

/// See [`super::measures_to_entities`].
pub fn measures_to_entities(resolved: &Resolved, groups: &[Measures], now: DateTime<Utc>) -> Result<Vec<Value>> {
    to_entities(resolved, groups.iter().map(|m| (m, None)), groups.len(), now)
}

/// See [`super::measures_to_entities_typed`].
pub fn measures_to_entities_typed(
    resolved: &Resolved,
    groups: &[TypedMeasures],
    now: DateTime<Utc>,
) -> Result<Vec<Value>> {
    to_entities(resolved, groups.iter().map(|g| (&g.measures, Some(&g.types))), groups.len(), now)
}

fn to_entities<'a>(
    resolved: &Resolved,
    groups: impl Iterator<Item = (&'a Measures, Option<&'a HashMap<String, String>>)>,
    count: usize,
    now: DateTime<Utc>,
) -> Result<Vec<Value>> {
    let fixed = device_context(resolved);
    let mut batches: Vec<(DateTime<Utc>, Vec<Out>)> = Vec::with_capacity(count);
    for (m, types) in groups {
        let order = time_instant(resolved, m).and_then(|v| js::to_date(&v)).unwrap_or(now);
        batches.push((order, group_to_entities(resolved, &fixed, m, types, now)?));
    }
    // A stable sort keeps reception order between measures of the same instant.
    batches.sort_by_key(|(t, _)| *t);
    let mut out = Vec::new();
    for (_, entities) in batches {
        for e in entities {
            if e.attrs.is_empty() {
                continue;
            }
            let mut obj = Map::with_capacity(e.attrs.len() + 3);
            if !resolved.context.is_null() {
                obj.insert("@context".into(), resolved.context.clone());
            }
            obj.insert("id".into(), Value::String(e.id));
            obj.insert("type".into(), Value::String(e.entity_type));
            obj.extend(e.attrs);
            out.push(Value::Object(obj));
        }
    }
    Ok(out)
}

/// The raw `TimeInstant` of a measure group: the measure itself, or a measure mapped to an
/// attribute named `TimeInstant`.
fn time_instant(r: &Resolved, m: &Measures) -> Option<Value> {
    if let Some(v) = m.get(TIME_INSTANT) {
        return Some(v.clone());
    }
    r.attributes
        .iter()
        .find(|a| a.name == TIME_INSTANT)
        .and_then(|a| m.get(a.object_id.as_deref().unwrap_or(&a.name)).cloned())
}

/// A provisioned attribute of any kind, as upstream processes them: static, lazy, then active.
struct Proto<'a> {
    name: &'a str,
    object_id: &'a str,
    attr_type: Option<&'a str>,
    expression: Option<&'a str>,
    skip_value: Option<&'a Value>,
    entity_name: Option<&'a str>,
    entity_type: Option<&'a str>,
    metadata: Option<&'a Map<String, Value>>,
    /// A static attribute's value.
    fixed_value: Option<&'a Value>,
}

fn protos(r: &Resolved) -> impl Iterator<Item = Proto<'_>> {
    let statics = r.static_attributes.iter().map(|s| Proto {
        name: &s.name,
        object_id: &s.name,
        attr_type: s.attr_type.as_deref(),
        expression: None,
        skip_value: None,
        entity_name: None,
        entity_type: None,
        metadata: s.metadata.as_ref(),
        fixed_value: Some(&s.value),
    });
    let lazy = r.lazy.iter().map(|l| Proto {
        name: &l.name,
        object_id: l.object_id.as_deref().unwrap_or(&l.name),
        attr_type: l.attr_type.as_deref(),
        expression: None,
        skip_value: None,
        entity_name: None,
        entity_type: None,
        metadata: None,
        fixed_value: None,
    });
    let active = r.attributes.iter().map(|a| Proto {
        name: &a.name,
        object_id: a.object_id.as_deref().unwrap_or(&a.name),
        attr_type: a.attr_type.as_deref(),
        expression: a.expression.as_deref().filter(|e| !e.trim().is_empty()),
        skip_value: a.skip_value.as_ref(),
        entity_name: a.entity_name.as_deref().filter(|n| !n.is_empty()),
        entity_type: a.entity_type.as_deref().filter(|t| !t.is_empty()),
        metadata: a.metadata.as_ref(),
        fixed_value: None,
    });
    statics.chain(lazy).chain(active)
}

/// An attribute computed from a measure group, before the NGSI-LD shaping.
struct Computed<'a> {
    proto: Proto<'a>,
    target: usize,
    value: Value,
    metadata: Option<Map<String, Value>>,
}

fn group_to_entities(
    r: &Resolved,
    fixed: &Map<String, Value>,
    m: &Measures,
    types: Option<&HashMap<String, String>>,
    now: DateTime<Utc>,
) -> Result<Vec<Out>> {
    // The type a measure arrived with (NGSI payloads), for attributes provisioned without one
    // and for measures no attribute maps, as upstream's guessType.
    let measured_type = |key: &str| types.and_then(|t| t.get(key)).map(String::as_str);
    let main_id = entity_id_with(r, fixed, m);
    let mut entities = vec![Out { id: main_id, entity_type: r.entity_type.clone(), attrs: Map::new() }];
    let mut results = Map::new();
    let mut consumed: Vec<&str> = Vec::new();
    let mut computed: Vec<Computed<'_>> = Vec::new();

    for p in protos(r) {
        consumed.push(p.object_id);
        consumed.push(p.name);
        let target = match p.entity_name {
            Some(name) => target_entity(
                r,
                name,
                p.entity_type,
                &mut entities,
                &Ctx { results: &results, shadowed: &[], fixed, measures: m },
            ),
            None => 0,
        };
        let measured = measure(m, p.object_id);
        let mut hit = p.fixed_value.is_some() || measured.is_some();
        let mut value = p.fixed_value.or(measured).cloned().unwrap_or(Value::Null);
        if let Some(exp) = p.expression {
            hit = true;
            // Upstream puts the measured value (or undefined) under the attribute's name before
            // its expression runs.
            let shadow = [p.name];
            let ctx = match measured {
                Some(v) => {
                    results.insert(p.name.to_owned(), v.clone());
                    Ctx { results: &results, shadowed: &[], fixed, measures: m }
                }
                None => {
                    results.remove(p.name);
                    Ctx { results: &results, shadowed: &shadow, fixed, measures: m }
                }
            };
            value = apply_expression(exp, &ctx)?;
        }
        // Later expressions see this attribute's value (null when it got none).
        results.insert(p.name.to_owned(), value.clone());
        let metadata = match p.metadata {
            Some(md) => Some(metadata_values(md, &Ctx { results: &results, shadowed: &[], fixed, measures: m })?),
            None => None,
        };
        if hit {
            computed.push(Computed { proto: p, target, value, metadata });
        }
    }

    let explicit = Explicit::from_value(
        &r.explicit_attrs,
        &Ctx { results: &results, shadowed: &[], fixed, measures: m },
        r.timestamp,
    )?;

    // The timestamp: a provisioned TimeInstant attribute (after its expression) or measure.
    let observed = if r.timestamp {
        let raw = computed
            .iter()
            .find(|c| c.proto.name == TIME_INSTANT)
            .map(|c| c.value.clone())
            .or_else(|| m.get(TIME_INSTANT).cloned())
            .filter(|v| !v.is_null());
        Some(match raw {
            Some(v) => {
                let t = strict_iso(&v).ok_or_else(|| {
                    AgentError::bad_timestamp(format!("TimeInstant {v} is not an ISO 8601 date and time"))
                })?;
                js::iso(&t)
            }
            None => js::iso(&now),
        })
    } else {
        None
    };

    for c in computed {
        let p = &c.proto;
        if p.name == TIME_INSTANT || c.value.is_null() {
            continue;
        }
        // A falsy skipValue is no skipValue upstream (`skipValue ? skipValue : null`).
        if let Some(skip) = p.skip_value.filter(|s| js::truthy(s))
            && js::strict_eq(&c.value, skip)
        {
            continue;
        }
        if !explicit.keeps_provisioned(p.name, p.object_id) {
            continue;
        }
        let attr_type = p.attr_type.or_else(|| measured_type(p.object_id));
        if let Some(attr) = attribute(attr_type, c.value, c.metadata.as_ref(), observed.as_deref())? {
            entities[c.target].attrs.insert(p.name.to_owned(), Value::Object(attr));
        }
    }

    // Measures no attribute maps pass through as Properties when explicitAttrs is false.
    if matches!(explicit, Explicit::All) {
        for (k, v) in m {
            let name = measure_name(k);
            if k == TIME_INSTANT || consumed.contains(&name) {
                continue;
            }
            if let Some(attr) = attribute(measured_type(k), v.clone(), None, observed.as_deref())? {
                entities[0].attrs.insert(name.to_owned(), Value::Object(attr));
            }
        }
    }
    Ok(entities)
}

/// Metadata with `expression` members evaluated (`TimeInstant` metadata is left alone).
fn metadata_values(md: &Map<String, Value>, ctx: &Ctx<'_>) -> Result<Map<String, Value>> {
    let mut out = md.clone();
    for (k, v) in md {
        let Some(exp) = v.get("expression").and_then(Value::as_str) else { continue };
        if k == TIME_INSTANT {
            continue;
        }
        let value = apply_expression(exp, ctx)?;
        let mut meta = Map::new();
        if let Some(t) = v.get("type") {
            meta.insert("type".into(), t.clone());
        }
        meta.insert("value".into(), value);
        out.insert(k.clone(), Value::Object(meta));
    }
    Ok(out)
}

/// The index in `entities` of the entity a multi-entity attribute goes to.
fn target_entity(r: &Resolved, name: &str, entity_type: Option<&str>, entities: &mut Vec<Out>, ctx: &Ctx<'_>) -> usize {
    let entity_type = entity_type.unwrap_or(&r.entity_type).to_owned();
    // Upstream evaluates the name as an expression and falls back to the literal text.
    let name = match apply_expression(name, ctx) {
        Ok(v) if js::truthy(&v) => js::to_js_string(&v),
        _ => name.to_owned(),
    };
    let id = urn(&entity_type, &name);
    if let Some(i) = entities.iter().position(|e| e.id == id && e.entity_type == entity_type) {
        return i;
    }
    entities.push(Out { id, entity_type, attrs: Map::new() });
    entities.len() - 1
}

/// An attribute in NGSI-LD form with its metadata as sub-properties and `observedAt`.
fn attribute(
    attr_type: Option<&str>,
    value: Value,
    metadata: Option<&Map<String, Value>>,
    observed: Option<&str>,
) -> Result<Option<Map<String, Value>>> {
    let Some(mut attr) = types::to_ngsi_ld(attr_type, value)? else {
        return Ok(None);
    };
    if let Some(md) = metadata {
        for (k, v) in md {
            match k.as_str() {
                TIME_INSTANT => {}
                "unitCode" => {
                    let code = v.get("value").cloned().unwrap_or_else(|| v.clone());
                    attr.insert("unitCode".into(), Value::String(js::to_js_string(&code)));
                }
                _ => {
                    let (t, val) = match v {
                        Value::Object(o) if o.contains_key("value") => {
                            (o.get("type").and_then(Value::as_str), o.get("value").cloned().unwrap_or(Value::Null))
                        }
                        other => (None, other.clone()),
                    };
                    if let Some(sub) = types::to_ngsi_ld(t, val)? {
                        attr.insert(k.clone(), Value::Object(sub));
                    }
                }
            }
        }
    }
    if let Some(at) = observed {
        attr.insert("observedAt".into(), Value::from(at));
    }
    Ok(Some(attr))
}
