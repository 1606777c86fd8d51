//! Temporal representations of entities (GS CIM 009 §4.5.7, §4.5.9): the normalized one, where
//! each attribute is an array of instances rendered like attributes of the entity API plus
//! their `instanceId`, and the simplified one (`temporalValues`), where each attribute is its
//! type and one array of `[value, time]` pairs, and the aggregated one (`aggregatedValues`,
//! `aggregate.rs`), where each attribute is its type and per method one array of
//! `[value, startAt, endAt]` triples. Names are compacted with the request's context. Pure.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::aggregate::{self, Aggregation, Range};
use super::query::{TimeProperty, TimeRel, View};
use crate::jsonld::Context;
use crate::model::{AttrKind, format_millis};
use crate::render::{self, RenderOpts};

/// How a temporal entity is rendered.
#[derive(Debug, Clone, Default)]
pub struct TemporalRender {
    /// The simplified temporal representation (`temporalValues`).
    pub temporal_values: bool,
    /// createdAt / modifiedAt of entities and instances.
    pub sys_attrs: bool,
    /// Members to keep (expanded names, plus `id`, `type`, `scope`).
    pub pick: Option<HashSet<String>>,
    /// Members to drop.
    pub omit: Option<HashSet<String>>,
    /// The time property paired with values in the simplified representation.
    pub timeproperty: TimeProperty,
    /// Language preferences for LanguageProperty instances.
    pub lang: Option<Vec<String>>,
    /// The aggregated temporal representation (`aggregatedValues`), which wins over
    /// `temporal_values`.
    pub aggregation: Option<Aggregation>,
    /// The read's time relation, where aggregation periods start.
    pub timerel: Option<TimeRel>,
}

impl TemporalRender {
    fn keeps(&self, member: &str) -> bool {
        self.pick.as_ref().is_none_or(|p| p.contains(member)) && self.omit.as_ref().is_none_or(|o| !o.contains(member))
    }
}

/// The member of the simplified representation holding an attribute kind's pairs, and the key
/// its values are wrapped in, if any (§4.5.9).
fn simplified_key(kind: AttrKind) -> (&'static str, Option<&'static str>) {
    match kind {
        AttrKind::Property | AttrKind::GeoProperty => ("values", None),
        AttrKind::Relationship => ("objects", None),
        AttrKind::LanguageProperty => ("languageMaps", Some("languageMap")),
        AttrKind::VocabProperty => ("vocabs", Some("vocab")),
        AttrKind::JsonProperty => ("jsons", Some("json")),
        AttrKind::ListProperty => ("valueLists", Some("valueList")),
        AttrKind::ListRelationship => ("objectLists", Some("objectList")),
    }
}

/// Renders one temporal entity (an empty object when pick/omit leave nothing of it).
pub fn entity(v: &View, ctx: &Context, o: &TemporalRender) -> Value {
    let mut out = Map::new();
    if o.keeps("id") {
        out.insert("id".into(), json!(v.id));
    }
    if o.keeps("type") && !v.types.is_empty() {
        let types: Vec<Value> = v.types.iter().map(|t| json!(ctx.compact(t))).collect();
        out.insert("type".into(), if types.len() == 1 { types[0].clone() } else { Value::Array(types) });
    }
    if let Some(scope) = &v.scope
        && o.keeps("scope")
    {
        out.insert("scope".into(), if scope.len() == 1 { json!(scope[0]) } else { json!(scope) });
    }
    let opts = RenderOpts { sys_attrs: o.sys_attrs, lang: o.lang.clone(), ..Default::default() };
    let range = Range::of(o.timerel, v.span);
    for (name, list) in &v.attrs {
        if !o.keeps(name) {
            continue;
        }
        let key = ctx.compact(name);
        let value = match (&o.aggregation, range) {
            (Some(a), Some(r)) => aggregate::attribute(list, a, r, o.timeproperty),
            // Nothing kept has a time: there are no periods.
            (Some(_), None) => continue,
            (None, _) if o.temporal_values => simplified(list, ctx, o.timeproperty),
            (None, _) => normalized(list, ctx, &opts),
        };
        out.insert(key, value);
    }
    if o.sys_attrs {
        out.insert("createdAt".into(), json!(format_millis(v.created_at)));
        out.insert("modifiedAt".into(), json!(format_millis(v.modified_at)));
    }
    Value::Object(out)
}

fn normalized(list: &[super::Instance], ctx: &Context, opts: &RenderOpts) -> Value {
    Value::Array(
        list.iter()
            .map(|i| {
                let mut a = render::attribute(&i.attr, ctx, opts);
                if let Value::Object(m) = &mut a {
                    m.insert("instanceId".into(), json!(i.instance_id));
                    if let Some(t) = i.deleted_at {
                        m.insert("deletedAt".into(), json!(format_millis(t)));
                    }
                }
                a
            })
            .collect(),
    )
}

/// One attribute's instances (oldest first) rendered per datasetId: `one` makes the object of
/// each group, to which its datasetId is added; the default instances come first, and there is
/// an array of objects only when there are several.
pub(super) fn per_dataset<'a>(
    list: &'a [super::Instance],
    mut one: impl FnMut(&[&'a super::Instance]) -> Map<String, Value>,
) -> Value {
    let mut groups: Vec<(Option<&str>, Vec<&super::Instance>)> = Vec::new();
    for i in list {
        let d = i.attr.dataset_id();
        match groups.iter_mut().find(|(k, _)| *k == d) {
            Some((_, g)) => g.push(i),
            None => groups.push((d, vec![i])),
        }
    }
    groups.sort_by_key(|(d, _)| d.is_some());
    let mut out: Vec<Value> = groups
        .into_iter()
        .map(|(d, g)| {
            let mut m = one(&g);
            if let Some(d) = d {
                m.insert("datasetId".into(), json!(d));
            }
            Value::Object(m)
        })
        .collect();
    if out.len() == 1 { out.pop().unwrap_or(Value::Null) } else { Value::Array(out) }
}

/// The simplified form of one attribute: one object per datasetId (see [`per_dataset`]).
fn simplified(list: &[super::Instance], ctx: &Context, prop: TimeProperty) -> Value {
    per_dataset(list, |g| {
        let kind = g[0].attr.kind;
        let (member, wrap) = simplified_key(kind);
        let pairs: Vec<Value> = g
            .iter()
            .map(|i| {
                let value = match i.attr.kind {
                    AttrKind::VocabProperty => ctx.compact_vocab_value(&i.attr.value()),
                    _ => i.attr.value(),
                };
                let value = match wrap {
                    Some(w) => json!({ w: value }),
                    None => value,
                };
                let time = match prop {
                    TimeProperty::ObservedAt => i.attr.observed_at().map(|s| json!(s.as_str())),
                    _ => prop.of(i).map(|t| json!(format_millis(t))),
                };
                json!([value, time.unwrap_or(Value::Null)])
            })
            .collect();
        let mut m = Map::new();
        m.insert("type".into(), json!(kind.name()));
        m.insert(member.into(), Value::Array(pairs));
        m
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonld::CORE;
    use crate::model::Attribute;
    use crate::temporal::Instance;

    fn view() -> View {
        let mut a = Attribute::new(AttrKind::Property, &json!(7), 0);
        a.set_observed_at(Some("2020-01-01T00:00:00Z".into()));
        let r = Attribute::new(AttrKind::Relationship, &json!("urn:x"), 1000);
        View {
            id: "urn:e".into(),
            types: vec!["https://uri.etsi.org/ngsi-ld/default-context/T".into()],
            scope: None,
            created_at: 0,
            modified_at: 0,
            attrs: vec![
                (
                    "https://uri.etsi.org/ngsi-ld/default-context/p".into(),
                    vec![Instance { instance_id: "urn:i:1".into(), attr: a, deleted_at: None }],
                ),
                (
                    "https://uri.etsi.org/ngsi-ld/default-context/r".into(),
                    vec![Instance { instance_id: "urn:i:2".into(), attr: r, deleted_at: None }],
                ),
            ],
            truncated: false,
            span: None,
        }
    }

    #[test]
    fn normalized_instances_carry_their_ids() {
        let v = entity(&view(), &CORE, &TemporalRender::default());
        assert_eq!(v["type"], "T");
        assert_eq!(v["p"][0]["value"], 7);
        assert_eq!(v["p"][0]["instanceId"], "urn:i:1");
        assert_eq!(v["p"][0]["observedAt"], "2020-01-01T00:00:00Z");
        assert_eq!(v["r"][0]["object"], "urn:x");
        assert!(v.get("createdAt").is_none());
    }

    #[test]
    fn simplified_pairs() {
        let o = TemporalRender { temporal_values: true, ..Default::default() };
        let v = entity(&view(), &CORE, &o);
        assert_eq!(v["p"], json!({"type": "Property", "values": [[7, "2020-01-01T00:00:00Z"]]}));
        assert_eq!(v["r"], json!({"type": "Relationship", "objects": [["urn:x", null]]}));
        let o = TemporalRender { temporal_values: true, timeproperty: TimeProperty::CreatedAt, ..Default::default() };
        let v = entity(&view(), &CORE, &o);
        assert_eq!(v["r"]["objects"][0][1], "1970-01-01T00:00:01.000Z");
    }

    #[test]
    fn pick_and_omit() {
        let o = TemporalRender {
            omit: Some(["type".to_owned(), "https://uri.etsi.org/ngsi-ld/default-context/p".to_owned()].into()),
            ..Default::default()
        };
        let v = entity(&view(), &CORE, &o);
        assert!(v.get("type").is_none() && v.get("p").is_none() && v.get("r").is_some());
    }
}
