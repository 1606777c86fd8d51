//! Renders stored entities for clients: normalized, concise or keyValues form, compacted with
//! the request's context, with sysAttrs, pick/omit/attrs projection, datasetId and `lang`
//! selection, and GeoJSON Features.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
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

/// Picks the language of a languageMap for the preferences; `None` means keep the whole map.
fn choose_lang<'a>(map: &'a Map<String, Value>, prefs: &[String]) -> Option<(&'a str, &'a Value)> {
    for p in prefs {
        if p == "*" {
            return None;
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
        out.insert("id".into(), Value::String(e.id.clone()));
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
                Some(ids) => ids.iter().any(|d| match &a.dataset_id {
                    Some(x) => x == d,
                    None => d == "@none",
                }),
            })
            .collect();
        if kept.is_empty() {
            continue;
        }
        let rendered: Vec<Value> = kept.iter().map(|a| attribute(a, ctx, o)).collect();
        let key = ctx.compact(name);
        out.insert(
            key,
            if rendered.len() == 1 {
                rendered.into_iter().next().unwrap_or(Value::Null)
            } else {
                Value::Array(rendered)
            },
        );
    }
    if o.sys_attrs && o.format != Format::KeyValues {
        out.insert("createdAt".into(), json!(format_millis(e.created_at)));
        out.insert("modifiedAt".into(), json!(format_millis(e.modified_at)));
    }
    Value::Object(out)
}

fn value_out(a: &Attribute, ctx: &Context) -> Value {
    match a.kind {
        AttrKind::VocabProperty => ctx.compact_vocab_value(&a.value),
        _ => a.value.clone(),
    }
}

/// Renders one attribute instance (or sub-attribute).
pub fn attribute(a: &Attribute, ctx: &Context, o: &RenderOpts) -> Value {
    // A LanguageProperty seen through `lang` becomes a Property with one string.
    let lang_pick = match (&o.lang, a.kind, a.value.as_object()) {
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
    if let Some(d) = &a.dataset_id {
        out.insert("datasetId".into(), json!(d));
    }
    if let Some(t) = &a.observed_at {
        out.insert("observedAt".into(), json!(t));
    }
    if let Some(u) = &a.unit_code {
        out.insert("unitCode".into(), json!(u));
    }
    for (k, v) in &a.extra {
        out.insert(k.clone(), v.clone());
    }
    for (name, sub) in &a.sub {
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

/// Wraps a rendered entity as a GeoJSON Feature.
pub fn feature(e: &Entity, rendered: Value, o: &RenderOpts) -> Value {
    let geo_name = o.geometry_property.clone().unwrap_or_else(|| "https://uri.etsi.org/ngsi-ld/location".to_owned());
    let geometry = e
        .attrs
        .get(&geo_name)
        .and_then(|list| list.iter().find(|a| a.dataset_id.is_none()).or_else(|| list.first()))
        .filter(|a| a.kind == AttrKind::GeoProperty)
        .map(|a| a.value.clone())
        .unwrap_or(Value::Null);
    let mut props = match rendered {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let id = props.remove("id").unwrap_or(Value::Null);
    json!({"id": id, "type": "Feature", "geometry": geometry, "properties": props})
}
