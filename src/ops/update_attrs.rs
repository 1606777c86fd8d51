//! Update Entity Attributes (GS CIM 009 §5.6.2, PATCH /entities/{id}/attrs): replaces existing
//! attribute instances and appends the ones the entity lacks, as the ETSI conformance suite
//! requires (011_01_03 "update existing attributes and append non-existing attributes", and the
//! notification tests 046_20, 046_23–046_30, 046_41, all 204). An instance given as the NGSI-LD
//! null (`urn:ngsi-ld:null`) deletes the matching instance; a null for an instance that does not
//! exist is reported as not updated. Types given in the fragment are added; a `scope` replaces
//! the entity's scope only when it already has one (ETSI 011_05_02: it is not appended).

use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use super::{AttrOutcome, Broker, entity_not_found};
use crate::error::{NgsiError, NgsiResult};
use crate::forward::Dist;
use crate::jsonld::Context;
use crate::model::parse::EntityInput;
use crate::model::{Entity, now_millis};
use crate::store::{Mutation, Write};

pub async fn run(
    b: &Broker,
    tenant: &str,
    id: &str,
    body: &Value,
    ctx: &Arc<Context>,
    dist: &Dist,
) -> NgsiResult<AttrOutcome> {
    let now = now_millis();
    // Attributes registered by context sources go to them; the broker updates the rest.
    let path = format!("/ngsi-ld/v1/entities/{}/attrs", crate::forward::segment(id));
    let op = crate::registry::registration::Op::UpdateEntity;
    match super::forward_fragment(b, tenant, id, body, ctx, dist, op, reqwest::Method::PATCH, &path, false).await? {
        None => local(b, tenant, id, body, ctx, now).await,
        Some(f) => {
            let mut result = match f.attrs_left() {
                // What a source accepted was updated there; the broker's failure to update its
                // copy of the rest makes a partial success (207), not a failure.
                true => match local(b, tenant, id, &Value::Object(f.rest.clone()), ctx, now).await {
                    Ok(r) => r,
                    Err(e) if !f.sent.is_empty() => AttrOutcome {
                        updated: Vec::new(),
                        not_updated: f
                            .rest
                            .keys()
                            .filter(|k| !k.starts_with('@') && !matches!(k.as_str(), "id" | "type"))
                            .map(|k| (ctx.expand(k), e.detail.clone()))
                            .collect(),
                    },
                    Err(e) => return Err(e),
                },
                false => AttrOutcome::default(),
            };
            result.updated.extend(f.sent);
            result.not_updated.extend(f.refused);
            Ok(result)
        }
    }
}

/// The update of the broker's own copy.
async fn local(
    b: &Broker,
    tenant: &str,
    id: &str,
    body: &Value,
    ctx: &Arc<Context>,
    now: i64,
) -> NgsiResult<AttrOutcome> {
    let input = super::fragment_for(b, tenant, id, body, ctx, now).await?;
    if input.attrs.is_empty() && input.types.is_empty() && input.scope.is_none() && !input.scope_null {
        return Err(NgsiError::bad_data("no attribute to update"));
    }
    let outcome = Arc::new(Mutex::new(AttrOutcome::default()));
    let out = outcome.clone();
    let owned = id.to_owned();
    b.write_one(
        tenant,
        false,
        Write::new(id, move |cur| {
            let mut e = cur.ok_or_else(|| entity_not_found(&owned))?.clone();
            let types_before = e.types.len();
            let result = apply_update(&mut e, &input);
            let changed = !result.updated.is_empty() || e.types.len() != types_before;
            *out.lock() = result;
            if !changed {
                return Ok(Mutation::Keep);
            }
            e.modified_at = now;
            Ok(Mutation::Put(e))
        }),
    )
    .await?;
    let result = outcome.lock().clone();
    Ok(result)
}

/// Applies the update in place and reports what was and was not written.
pub fn apply_update(e: &mut Entity, input: &EntityInput) -> AttrOutcome {
    let mut result = AttrOutcome::default();
    e.add_types(&input.types);
    if input.scope.is_some() || input.scope_null {
        if e.scope.is_some() {
            e.scope = if input.scope_null { None } else { input.scope.clone().map(Box::new) };
            result.updated.push("scope".into());
        } else {
            result.not_updated.push(("scope".into(), "the entity has no scope to update".into()));
        }
    }
    for (name, instances) in &input.attrs {
        let mut wrote = false;
        for inst in instances {
            let exists = e.instance(name, inst.dataset_id()).is_some();
            if !exists && inst.is_null_marker() {
                continue;
            }
            if inst.is_null_marker() {
                e.remove_instance(name, inst.dataset_id(), false);
            } else {
                e.put_instance(name, inst.clone());
            }
            wrote = true;
        }
        if wrote {
            result.updated.push(name.to_string());
        } else {
            result
                .not_updated
                .push((name.to_string(), "nothing to delete: the attribute (or datasetId) does not exist".into()));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonld::CORE;
    use crate::model::parse::{Purpose, parse_entity};
    use serde_json::json;

    fn entity() -> Entity {
        parse_entity(
            &json!({"id": "urn:a:1", "type": "T", "p": [{"value": 1}, {"value": 2, "datasetId": "urn:ds:2"}], "q": 3}),
            &CORE,
            Purpose::Create,
            1,
        )
        .unwrap()
        .into_entity("urn:a:1".into(), 1)
    }

    fn fragment(v: Value) -> EntityInput {
        parse_entity(&v, &CORE, Purpose::Fragment, 2).unwrap()
    }

    #[test]
    fn null_deletes_the_matching_instance_only() {
        let mut e = entity();
        let out = apply_update(&mut e, &fragment(json!({"p": {"value": "urn:ngsi-ld:null", "datasetId": "urn:ds:2"}})));
        assert_eq!(out.updated.len(), 1);
        let p = &e.attrs["https://uri.etsi.org/ngsi-ld/default-context/p"];
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].dataset_id(), None);
        apply_update(&mut e, &fragment(json!({"q": {"type": "Property", "value": "urn:ngsi-ld:null"}})));
        assert!(!e.attrs.contains_key("https://uri.etsi.org/ngsi-ld/default-context/q"));
    }

    #[test]
    fn types_are_added_and_scope_only_replaced() {
        let mut e = entity();
        let out = apply_update(&mut e, &fragment(json!({"type": ["T", "U"], "scope": "/a"})));
        assert_eq!(e.types.len(), 2);
        assert_eq!(e.scope, None);
        assert_eq!(out.not_updated.len(), 1);
        e.scope = Some(Box::new(vec!["/x".into()]));
        let out = apply_update(&mut e, &fragment(json!({"scope": "/a"})));
        assert_eq!(e.scopes(), Some(&["/a".to_owned()][..]));
        assert!(out.not_updated.is_empty());
    }
}
