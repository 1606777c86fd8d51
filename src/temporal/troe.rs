//! TRoE, the temporal representation of entities (Orion-LD's `-troe`): with the `troe` setting,
//! every attribute instance the entity API writes becomes an instance of the entity's temporal
//! evolution, and every attribute instance it removes a tombstone (the NGSI-LD null, with
//! `deletedAt`).
//!
//! The recorder is a [`ChangeObserver`] beside the notifier (`store::Observers`), not a
//! receiver of the change broadcast: the broadcast drops events for a receiver that lags, and
//! history written after the entity write could be lost in a crash between the two. As an
//! observer, the recorder turns each group of changes into instance documents in `prepare`,
//! which the store logs in the same group commit as the entity writes, and applies them to the
//! in-memory index in `committed`. With `troe` off it is not installed at all, so the entity
//! write path does not change.

use serde_json::{Value, json};

use super::{Delta, Header, Instance, TemporalStore, new_instance_id};
use crate::model::{Attribute, Entity, now_millis};
use crate::store::{Change, ChangeObserver};

/// The NGSI-LD null a tombstone holds as its value.
const NULL: &str = "urn:ngsi-ld:null";

/// What one change adds to an entity's history: each instance that is new or differs from the
/// one it replaced (same attribute and datasetId), and a tombstone for each instance removed.
pub fn instances_of(old: Option<&Entity>, new: Option<&Entity>, now: i64) -> Vec<(String, Instance)> {
    let mut out = Vec::new();
    if let Some(n) = new {
        for (name, list) in &n.attrs {
            for a in list {
                if old.and_then(|o| o.instance(name, a.dataset_id())) != Some(a) {
                    out.push((
                        name.to_string(),
                        Instance { instance_id: new_instance_id(), attr: a.clone(), deleted_at: None },
                    ));
                }
            }
        }
    }
    if let Some(o) = old {
        for (name, list) in &o.attrs {
            for a in list {
                if new.and_then(|n| n.instance(name, a.dataset_id())).is_none() {
                    let mut t = Attribute::new(a.kind, &json!(NULL), now);
                    t.set_dataset_id(a.dataset_id().map(str::to_owned));
                    out.push((
                        name.to_string(),
                        Instance { instance_id: new_instance_id(), attr: t, deleted_at: Some(now) },
                    ));
                }
            }
        }
    }
    out
}

impl TemporalStore {
    /// The deltas recording a group of entity changes.
    fn record(&self, changes: &[Change]) -> Vec<Delta> {
        let now = now_millis();
        let mut deltas = Vec::new();
        for c in changes {
            let added = instances_of(c.old.as_deref(), c.new.as_deref(), now);
            if added.is_empty() {
                continue;
            }
            let Some(base) = c.new.as_deref().or(c.old.as_deref()) else { continue };
            // The entity's history began with its first recorded change, or earlier in this group.
            let earlier = deltas.iter().rev().find_map(|d| match d {
                Delta::Header { tenant, header } if *tenant == c.tenant && header.id == c.id => Some(header.created_at),
                _ => None,
            });
            let created_at =
                earlier.or_else(|| self.with_entity(&c.tenant, &c.id, |e| e.created_at)).unwrap_or(base.created_at);
            let header = Header {
                id: c.id.clone(),
                types: base.type_names(),
                scope: base.scopes().map(<[String]>::to_vec),
                created_at,
                modified_at: c.new.as_ref().map_or(now, |e| e.modified_at),
            };
            deltas.push(Delta::Header { tenant: c.tenant.clone(), header });
            for (attr, inst) in added {
                deltas.push(Delta::Put { tenant: c.tenant.clone(), id: c.id.clone(), attr, inst });
            }
        }
        deltas
    }
}

impl ChangeObserver for TemporalStore {
    fn prepare(&self, changes: &[Change]) -> Vec<(String, String, Value)> {
        let deltas = self.record(changes);
        let (puts, _) = self.documents(&deltas);
        *self.staged.lock() = deltas;
        puts.into_iter().map(|(k, d)| (super::COLLECTION.to_owned(), k, d)).collect()
    }

    fn committed(&self, _changes: &[Change], _docs: Vec<(String, String, Value)>) {
        let deltas = std::mem::take(&mut *self.staged.lock());
        self.apply(deltas);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonld::CORE;
    use crate::model::parse::{Purpose, parse_entity};

    fn entity(v: Value) -> Entity {
        parse_entity(&v, &CORE, Purpose::Create, 0).unwrap().into_entity(v["id"].as_str().unwrap().into(), 0)
    }

    #[test]
    fn creation_records_every_instance() {
        let e = entity(json!({"id": "urn:e", "type": "T", "a": 1, "b": {"type": "Relationship", "object": "urn:x"}}));
        let added = instances_of(None, Some(&e), 5);
        assert_eq!(added.len(), 2);
        assert!(added.iter().all(|(_, i)| i.deleted_at.is_none()));
    }

    #[test]
    fn an_update_records_what_changed_and_tombstones_what_went() {
        let old = entity(json!({"id": "urn:e", "type": "T", "a": 1, "b": 2, "c": 3}));
        let mut new = old.clone();
        let changed = crate::model::parse::parse_attribute("a", &json!(10), &CORE, 7).unwrap();
        new.put_instance(&CORE.expand("a"), changed);
        new.remove_instance(&CORE.expand("c"), None, false);
        let added = instances_of(Some(&old), Some(&new), 9);
        assert_eq!(added.len(), 2);
        assert_eq!(added[0].0, CORE.expand("a"));
        assert_eq!(added[0].1.attr.value(), json!(10));
        assert_eq!(added[1].0, CORE.expand("c"));
        assert_eq!(added[1].1.deleted_at, Some(9));
        assert_eq!(added[1].1.attr.value(), json!(NULL));
        // Deleting the entity leaves a tombstone per attribute; an unchanged write adds nothing.
        assert_eq!(instances_of(Some(&old), None, 9).len(), 3);
        assert!(instances_of(Some(&old), Some(&old), 9).is_empty());
    }
}
