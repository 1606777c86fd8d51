//! Batch Entity Create or Update (Upsert) (GS CIM 009 §5.6.8): new entities are created;
//! existing ones are replaced (`options=replace`, the default) or have the given attributes
//! updated (`options=update`). Entities and attributes registered for `upsertBatch` go to their
//! context sources first (§4.3.6).

use super::{BatchBody, BatchOutcome, Broker};
use crate::error::NgsiResult;
use crate::model::{AttrMap, Attribute, Entity, Instances, now_millis};
use crate::store::{Mutation, Write};

pub async fn run(
    b: &Broker,
    tenant: &str,
    body: &BatchBody<'_>,
    update: bool,
    dist: &crate::forward::Dist,
) -> NgsiResult<BatchOutcome> {
    let op = crate::registry::registration::Op::UpsertBatch;
    let path = match update {
        true => "/ngsi-ld/v1/entityOperations/upsert?options=update",
        false => "/ngsi-ld/v1/entityOperations/upsert",
    };
    let now = now_millis();
    let mut out = BatchOutcome::default();
    let inputs = super::batch_entities(b, tenant, body, dist, op, path, false, &mut out, now).await?;
    let mut writes = Vec::with_capacity(inputs.len());
    for (id, input) in inputs {
        let owned = id.clone();
        writes.push(Write::new(id, move |cur| {
            let Some(cur) = cur else {
                return Ok(Mutation::Put(input.into_entity(owned, now)));
            };
            let e = if update {
                let mut e = merged(cur, input.attrs);
                e.add_types(&input.types);
                if let Some(s) = input.scope {
                    e.scope = Some(Box::new(s));
                }
                e.modified_at = now;
                e
            } else {
                let mut e = input.into_entity(owned, now);
                e.created_at = cur.created_at;
                // The store's index keys share the stored id's allocation.
                e.id = cur.id.clone();
                e
            };
            Ok(Mutation::Put(e))
        }));
    }
    if !writes.is_empty() {
        let ids: Vec<String> = writes.iter().map(|w| w.id.clone()).collect();
        for (id, r) in ids.into_iter().zip(b.store.write(tenant, true, writes).await?) {
            match r {
                Ok(change) => {
                    if change.old.is_none() && !out.created.contains(&id) {
                        out.created.push(id.clone());
                    }
                    out.success.push(id);
                }
                Err(e) => out.errors.push((id, e)),
            }
        }
    }
    Ok(out)
}

/// `cur` with the given instances put into it, as [`Entity::put_instance`] would put them one
/// by one (an instance replaces the one with the same datasetId and keeps its `createdAt`; new
/// ones go last), but without copying the instances that are replaced: an upsert usually
/// sends every attribute again.
fn merged(cur: &Entity, mut input: AttrMap) -> Entity {
    let mut attrs = AttrMap::with_capacity(cur.attrs.len() + input.len());
    for (name, list) in &cur.attrs {
        let Some(new) = input.shift_remove(name) else {
            attrs.insert(name.clone(), list.clone());
            continue;
        };
        let mut new: Vec<Option<Attribute>> = new.into_iter().map(Some).collect();
        let mut out = Instances::new();
        for a in list {
            // Of several new instances with this datasetId, the last wins.
            let same = |n: &Option<Attribute>| n.as_ref().is_some_and(|n| n.dataset_id() == a.dataset_id());
            match new.iter().rposition(same) {
                Some(i) => {
                    let mut n = new[i].take().expect("found above");
                    n.created_at = a.created_at;
                    new.iter_mut().filter(|slot| same(slot)).for_each(|slot| *slot = None);
                    out.push(n);
                }
                None => out.push(a.clone()),
            }
        }
        new.into_iter().flatten().for_each(|n| {
            out.put(n);
        });
        attrs.insert(name.clone(), out);
    }
    for (name, list) in input {
        let mut out = Instances::new();
        list.into_iter().for_each(|n| {
            out.put(n);
        });
        attrs.insert(name, out);
    }
    Entity {
        id: cur.id.clone(),
        types: cur.types.clone(),
        scope: cur.scope.clone(),
        attrs,
        created_at: cur.created_at,
        modified_at: cur.modified_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonld::CORE;
    use proptest::prelude::*;

    fn attr(v: i64, ds: Option<&str>, at: i64) -> Attribute {
        let mut a = Attribute::new(crate::model::AttrKind::Property, &serde_json::json!(v), at);
        a.set_dataset_id(ds.map(str::to_owned));
        a
    }

    proptest! {
        /// Merging equals putting the instances one by one.
        #[test]
        fn merged_equals_successive_puts(
            old in proptest::collection::vec((0usize..4, proptest::option::of(0usize..3)), 0..8),
            new in proptest::collection::vec((0usize..5, proptest::option::of(0usize..3)), 0..8),
        ) {
            let names = ["a", "b", "c", "d", "e"];
            let ds = ["urn:d:0", "urn:d:1", "urn:d:2"];
            let mut cur = crate::model::parse::parse_entity(
                &serde_json::json!({"id": "urn:x:1", "type": "T"}), &CORE, crate::model::parse::Purpose::Create, 1,
            ).unwrap().into_entity("urn:x:1".into(), 1);
            for (i, (n, d)) in old.iter().enumerate() {
                cur.put_instance(names[*n], attr(i as i64, d.map(|d| ds[d]), i as i64));
            }
            let mut input = AttrMap::default();
            let mut expected = cur.clone();
            for (i, (n, d)) in new.iter().enumerate() {
                let a = attr(100 + i as i64, d.map(|d| ds[d]), 50);
                expected.put_instance(names[*n], a.clone());
                input.entry(crate::model::intern(names[*n])).or_default().push(a);
            }
            prop_assert_eq!(merged(&cur, input), expected);
        }
    }
}
