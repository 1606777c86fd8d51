//! Builds a notification (GS CIM 009 §5.3.1): the body `{id, type, subscriptionId, notifiedAt,
//! data}` with the entities rendered as the subscription asks (format, attributes, pick/omit,
//! datasetId, sysAttrs, lang, join, showChanges) and compacted with its context, and the
//! headers that go with it.
//!
//! Deleted attributes are shown with the NGSI-LD Null (`urn:ngsi-ld:null`) as their value
//! (§4.5.14), with `deletedAt` when sysAttrs are asked for and their previous value with
//! showChanges; a deleted entity is `{id, type, deletedAt}`.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::matcher::{Event, Fired};
use super::sender::Outgoing;
use super::subscription::Compiled;
use crate::jsonld::Context;
use crate::jsonld::core::CORE_CONTEXT_URL;
use crate::model::{AttrKind, Attribute, Entity, format_millis};
use crate::render::{self, Format, Join};

const LD_CONTEXT_REL: &str = "http://www.w3.org/ns/json-ld#context";
const NULL: &str = "urn:ngsi-ld:null";

/// The name of the member holding an attribute's previous value, by the member holding its value.
fn previous_key(value_key: &str) -> Option<&'static str> {
    Some(match value_key {
        "value" => "previousValue",
        "object" => "previousObject",
        "languageMap" => "previousLanguageMap",
        "vocab" => "previousVocab",
        "json" => "previousJson",
        "valueList" => "previousValueList",
        "objectList" => "previousObjectList",
        _ => return None,
    })
}

/// The rendered instance of an attribute with the given datasetId.
fn instance_mut<'a>(v: &'a mut Value, ds: Option<&str>) -> Option<&'a mut Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        Value::Array(items) => {
            items.iter_mut().filter_map(Value::as_object_mut).find(|m| m.get("datasetId").and_then(Value::as_str) == ds)
        }
        _ => None,
    }
}

/// The previous value member of an old instance, rendered normalized.
fn previous_of(before: &Attribute, ctx: &Context) -> Option<(&'static str, Value)> {
    let key = before.kind.value_key();
    let pk = previous_key(key)?;
    match render::attribute(before, ctx, &render::RenderOpts::default()) {
        Value::Object(mut m) => m.remove(key).map(|v| (pk, v)),
        _ => None,
    }
}

/// The NGSI-LD Null standing in for a deleted instance of this kind. A deleted LanguageProperty
/// is `{"@none": null}` as a languageMap (ETSI 046_22_11, 046_34_04), except in the entity
/// deletion notification, where the suite expects the bare Null (046_37_01).
fn marker(before: &Attribute, now: i64, bare: bool) -> Attribute {
    let v = if before.kind == AttrKind::LanguageProperty && !bare { json!({"@none": NULL}) } else { json!(NULL) };
    let mut a = Attribute::new(before.kind, &v, before.created_at);
    a.set_dataset_id(before.dataset_id().map(str::to_owned));
    a.modified_at = now;
    a
}

/// Adds `previousValue` (or its kin) to each rendered attribute whose value changed.
fn add_previous(out: &mut Map<String, Value>, old: &Entity, new: &Entity, ctx: &Context) {
    for (name, inst) in &new.attrs {
        let Some(prev) = old.attrs.get(name) else { continue };
        if prev == inst {
            continue;
        }
        let Some(rendered) = out.get_mut(&ctx.compact(name)) else { continue };
        for after in inst {
            let ds = after.dataset_id();
            let Some(before) = prev.iter().find(|b| b.dataset_id() == ds) else { continue };
            if before.value_text() == after.value_text() {
                continue;
            }
            if let (Some(m), Some((pk, v))) = (instance_mut(rendered, ds), previous_of(before, ctx)) {
                m.insert(pk.to_owned(), v);
            }
        }
    }
}

/// The `data` item for one fired entity.
fn item(f: &Fired, c: &Compiled, ctx: &Context, o: &render::RenderOpts, now: i64) -> Value {
    let show = c.show_changes && o.format != Format::KeyValues;
    let normalized = o.format == Format::Normalized;
    // Markers to add: (attribute, the old instance it replaces).
    let mut markers: Vec<(&str, &Attribute)> = Vec::new();
    let Some(old_or_new) = f.new.as_deref().or(f.old.as_deref()) else { return Value::Null };
    let mut shown: Entity = match (&f.new, f.event) {
        (Some(n), _) => (**n).clone(),
        (None, _) => Entity {
            id: old_or_new.id.clone(),
            types: old_or_new.types.clone(),
            scope: None,
            attrs: Default::default(),
            created_at: old_or_new.created_at,
            modified_at: old_or_new.modified_at,
        },
    };
    if let Some(old) = f.old.as_deref() {
        let wanted: Vec<(String, Option<String>)> = match f.event {
            Event::EntityDeleted if show => old.attrs.keys().map(|a| (a.to_string(), None)).collect(),
            _ => f.deleted.clone(),
        };
        for (name, ds) in &wanted {
            let Some((key, insts)) = old.attrs.get_key_value(name.as_str()) else { continue };
            let gone: Vec<&Attribute> = match ds {
                // The whole attribute went: one marker for it.
                None if f.new.as_ref().is_none_or(|n| !n.attrs.contains_key(name.as_str())) => {
                    insts.first().into_iter().collect()
                }
                ds => insts.iter().filter(|i| i.dataset_id() == ds.as_deref()).collect(),
            };
            for before in gone {
                let mut m = marker(before, now, f.event == Event::EntityDeleted);
                if ds.is_none() && f.new.as_ref().is_none_or(|n| !n.attrs.contains_key(name.as_str())) {
                    m.set_dataset_id(None);
                }
                shown.attrs.entry(key.clone()).or_default().push(m);
                markers.push((key.as_ref(), before));
            }
        }
    }
    let mut v = render::entity(&shown, ctx, o);
    let Value::Object(out) = &mut v else { return v };
    if o.format == Format::KeyValues && o.sys_attrs {
        // Notifications carry the entity's system attributes in keyValues too (ETSI 046_17_01).
        out.insert("createdAt".into(), json!(format_millis(shown.created_at)));
        out.insert("modifiedAt".into(), json!(format_millis(shown.modified_at)));
    }
    if f.new.is_none() {
        out.insert("deletedAt".into(), json!(format_millis(now)));
    }
    if normalized || o.format == Format::Concise {
        for (name, before) in &markers {
            let ds =
                if f.new.as_ref().is_some_and(|n| n.attrs.contains_key(name)) { before.dataset_id() } else { None };
            let Some(rendered) = out.get_mut(&ctx.compact(name)) else { continue };
            let Some(m) = instance_mut(rendered, ds) else { continue };
            if o.sys_attrs {
                m.insert("deletedAt".into(), json!(format_millis(now)));
            }
            if show && let Some((pk, val)) = previous_of(before, ctx) {
                m.insert(pk.to_owned(), val);
            }
        }
    }
    if show
        && f.event == Event::Updated
        && let (Some(old), Some(new)) = (&f.old, &f.new)
    {
        add_previous(out, old, new, ctx);
    }
    v
}

/// The notification for these entities, ready to send. `linked` holds the entities reachable
/// through relationships when the subscription asks for a join.
pub fn build(c: &Compiled, fired: &[Fired], linked: Option<Arc<HashMap<String, Arc<Entity>>>>, now: i64) -> Outgoing {
    let ctx: &Context = c.notify_ctx.as_ref().map(|(c, _)| c).unwrap_or(&c.ctx);
    let mut o = c.render.clone();
    o.linked = linked;
    let mut data: Vec<Value> = fired.iter().map(|f| item(f, c, ctx, &o, now)).collect();
    if o.join == Some(Join::Flat) {
        let roots: Vec<&Entity> = fired.iter().filter_map(|f| f.new.as_deref()).collect();
        // The linked entities follow the notified ones, rendered in full (a projection of the
        // notified entities does not apply to them).
        let mut lo =
            render::RenderOpts { format: o.format, sys_attrs: o.sys_attrs, lang: o.lang.clone(), ..Default::default() };
        lo.linked = o.linked.clone();
        lo.join = Some(Join::Flat);
        lo.join_level = o.join_level;
        let all = render::flat(&roots, ctx, &lo);
        data.extend(all.into_iter().skip(roots.len()));
    }
    let accept = c.endpoint.accept.as_str();
    let data_value = if accept == "application/geo+json" {
        let features: Vec<Value> = fired
            .iter()
            .zip(data)
            .map(|(f, v)| match f.new.as_deref() {
                Some(e) => render::feature(e, v, &o),
                None => v,
            })
            .collect();
        json!({"type": "FeatureCollection", "features": features})
    } else {
        Value::Array(data)
    };
    let body = json!({
        "id": format!("urn:ngsi-ld:Notification:{}", uuid::Uuid::new_v4()),
        "type": "Notification",
        "subscriptionId": c.id,
        "notifiedAt": format_millis(now),
        "data": data_value,
    });
    envelope(c, body, Some(c.render.format))
}

/// Wraps a notification body for its endpoint: the `@context` of each `data` item (JSON-LD) or
/// the Link header, the content type, the attribute format (entity notifications), the tenant
/// and the `receiverInfo` headers.
pub(crate) fn envelope(c: &Compiled, mut body: Value, format: Option<Format>) -> Outgoing {
    let ctx: &Context = c.notify_ctx.as_ref().map(|(c, _)| c).unwrap_or(&c.ctx);
    let accept = c.endpoint.accept.as_str();
    let mut headers = vec![("Content-Type".to_owned(), accept.to_owned())];
    if accept == "application/ld+json" {
        let member = match (&c.notify_ctx, &ctx.original) {
            (Some((_, url)), _) => json!(url),
            (None, Value::Null) => json!(CORE_CONTEXT_URL),
            (None, other) => other.clone(),
        };
        if let Some(Value::Array(items)) = body.get_mut("data") {
            for i in items.iter_mut().filter_map(Value::as_object_mut) {
                i.insert("@context".into(), member.clone());
            }
        }
    } else {
        let link_url = match &c.notify_ctx {
            Some((_, url)) => url.as_str(),
            None => ctx.link_url().unwrap_or(CORE_CONTEXT_URL),
        };
        headers
            .push(("Link".to_owned(), format!("<{link_url}>; rel=\"{LD_CONTEXT_REL}\"; type=\"application/ld+json\"")));
    }
    if let Some(format) = format {
        let format = match format {
            Format::Normalized => "Normalized",
            Format::Concise => "Concise",
            Format::KeyValues => "Simplified",
        };
        headers.push(("Ngsild-Attribute-Format".to_owned(), format.to_owned()));
    }
    if !c.tenant.is_empty() {
        headers.push(("NGSILD-Tenant".to_owned(), c.tenant.clone()));
    }
    headers.push(("User-Agent".to_owned(), concat!("orbis/", env!("CARGO_PKG_VERSION")).to_owned()));
    for (k, v) in &c.endpoint.receiver_info {
        headers.push((k.clone(), v.clone()));
    }
    Outgoing {
        uri: c.endpoint.uri.clone(),
        headers,
        body: body.to_string().into_bytes(),
        notifier_info: c.endpoint.notifier_info.clone(),
    }
}
