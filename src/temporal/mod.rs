//! The temporal evolution of entities (GS CIM 009 §4.5.7, §5.6.11–5.6.16, §5.7.3–5.7.4): every
//! attribute instance a client posts to `/temporal/entities`, and, with the `troe` setting,
//! every attribute value the normal entity API writes ("temporal representation of entities",
//! Orion-LD's TRoE), kept apart from the current state so that history never slows queries of
//! the present.
//!
//! [`TemporalStore`] holds the history of every tenant in memory (entities in creation order,
//! each attribute's instances in arrival order) and writes it through to the store's meta
//! collection [`COLLECTION`]: one small document per entity (its types, scope and timestamps)
//! and one per instance, so an append writes only what it adds. The collection is unordered
//! (the store removes its documents in constant time); the order that matters, by time, is
//! decided when a query reads it. The in-memory index is loaded from the collection at start.
//!
//! Writes are *deltas* ([`Delta`]) applied to the index once durable: the temporal API's
//! operations run one at a time under [`TemporalStore::lock`] and persist their deltas before
//! applying them; the TRoE recorder (`troe.rs`) is a [`ChangeObserver`](crate::store::ChangeObserver)
//! whose deltas are stored in the same group commit as the entity writes that caused them.
//! Parsing (`parse.rs`), time filters (`query.rs`), aggregation (`aggregate.rs`) and rendering
//! (`render.rs`) are pure.

pub mod aggregate;
pub mod parse;
pub mod query;
pub mod render;
pub mod troe;

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use parking_lot::RwLock;
use serde_json::{Value, json};

use crate::error::{NgsiError, NgsiResult};
use crate::model::Attribute;
use crate::store::{Store, StoreError};

/// The meta collection holding every tenant's history (unordered: see `store::embedded`).
pub const COLLECTION: &str = "temporal";

/// Separates the parts of a document key (never part of a tenant, an entity id, an expanded
/// attribute name or an instance id, which are URIs or names).
const SEP: char = '\u{1f}';

/// One attribute instance of a temporal entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// `instanceId` (a URI, unique within the attribute).
    pub instance_id: String,
    /// The instance as an attribute; its createdAt/modifiedAt are the instance's.
    pub attr: Attribute,
    /// When the attribute was deleted (a tombstone recorded by TRoE), if it was.
    pub deleted_at: Option<i64>,
}

/// The temporal evolution of one entity.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TemporalEntity {
    pub id: String,
    /// Expanded types.
    pub types: Vec<String>,
    pub scope: Option<Vec<String>>,
    pub created_at: i64,
    pub modified_at: i64,
    /// Expanded attribute name → its instances, in arrival order.
    pub attrs: IndexMap<String, Vec<Instance>>,
}

/// The header of a temporal entity: what it is, without its instances.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub id: String,
    pub types: Vec<String>,
    pub scope: Option<Vec<String>>,
    pub created_at: i64,
    pub modified_at: i64,
}

/// One change of the history, applied to the index once it is durable.
#[derive(Debug, Clone)]
pub enum Delta {
    /// Creates the entity or replaces its header (its instances stay).
    Header { tenant: String, header: Header },
    /// Adds an instance, or replaces the one with the same instance id.
    Put { tenant: String, id: String, attr: String, inst: Instance },
    /// Removes one instance (an attribute left without instances disappears).
    Remove { tenant: String, id: String, attr: String, instance_id: String },
    /// Removes the entity and all its instances.
    Drop { tenant: String, id: String },
}

#[derive(Default)]
struct Tenant {
    /// Entities in creation order (stable pages).
    entities: IndexMap<String, TemporalEntity>,
}

/// The history of every tenant: the in-memory index and its durable copy.
pub struct TemporalStore {
    store: Arc<dyn Store>,
    index: RwLock<HashMap<String, Tenant>>,
    /// Serializes the temporal API's writes (read, decide, persist, apply).
    writing: tokio::sync::Mutex<()>,
    /// TRoE: whether the entity API's writes are recorded.
    troe: bool,
    /// TRoE: the deltas of the group being committed (see `troe.rs`).
    staged: parking_lot::Mutex<Vec<Delta>>,
}

fn header_key(tenant: &str, id: &str) -> String {
    format!("e{SEP}{tenant}{SEP}{id}")
}

fn instance_key(tenant: &str, id: &str, attr: &str, instance_id: &str) -> String {
    format!("i{SEP}{tenant}{SEP}{id}{SEP}{attr}{SEP}{instance_id}")
}

fn header_doc(tenant: &str, h: &Header) -> Value {
    let mut d =
        json!({"t": tenant, "id": h.id, "types": h.types, "createdAt": h.created_at, "modifiedAt": h.modified_at});
    if let Some(s) = &h.scope {
        d["scope"] = json!(s);
    }
    d
}

fn instance_doc(tenant: &str, id: &str, attr: &str, inst: &Instance) -> Value {
    let mut d = json!({"t": tenant, "e": id, "a": attr, "i": inst.instance_id, "v": inst.attr});
    if let Some(t) = inst.deleted_at {
        d["d"] = json!(t);
    }
    d
}

/// A new instance id (GS CIM 009 §4.5.7: a URI the broker assigns).
pub fn new_instance_id() -> String {
    format!("urn:ngsi-ld:attribute:instance:{}", uuid::Uuid::new_v4())
}

impl TemporalStore {
    /// Loads every tenant's history from the store.
    pub async fn load(store: Arc<dyn Store>, troe: bool) -> Result<Arc<TemporalStore>, StoreError> {
        let docs = store.list_meta(COLLECTION).await?;
        let mut index: HashMap<String, Tenant> = HashMap::new();
        // Headers first (the collection is unordered), then the instances.
        let mut headers: Vec<(String, Header)> = Vec::new();
        for (k, d) in &docs {
            if !k.starts_with('e') {
                continue;
            }
            match read_header(d) {
                Some(x) => headers.push(x),
                None => tracing::error!(key = %k.replace(SEP, "|"), "an unreadable temporal entity document; skipped"),
            }
        }
        headers.sort_by(|a, b| a.1.created_at.cmp(&b.1.created_at).then_with(|| a.1.id.cmp(&b.1.id)));
        for (t, h) in headers {
            let e = TemporalEntity {
                id: h.id.clone(),
                types: h.types,
                scope: h.scope,
                created_at: h.created_at,
                modified_at: h.modified_at,
                attrs: IndexMap::new(),
            };
            index.entry(t).or_default().entities.insert(h.id, e);
        }
        let mut orphans = Vec::new();
        for (k, d) in docs {
            if !k.starts_with('i') {
                continue;
            }
            let Some((t, id, attr, inst)) = read_instance(&d) else {
                tracing::error!(key = %k.replace(SEP, "|"), "an unreadable temporal instance document; skipped");
                continue;
            };
            match index.get_mut(&t).and_then(|ten| ten.entities.get_mut(&id)) {
                Some(e) => e.attrs.entry(attr).or_default().push(inst),
                // An instance whose entity was deleted while it was being recorded.
                None => orphans.push(k),
            }
        }
        if !orphans.is_empty() {
            store.delete_meta_many(COLLECTION, orphans).await?;
        }
        for ten in index.values_mut() {
            for e in ten.entities.values_mut() {
                for list in e.attrs.values_mut() {
                    list.sort_by(|a, b| {
                        a.attr.created_at.cmp(&b.attr.created_at).then_with(|| a.instance_id.cmp(&b.instance_id))
                    });
                }
            }
        }
        Ok(Arc::new(TemporalStore {
            store,
            index: RwLock::new(index),
            writing: tokio::sync::Mutex::new(()),
            troe,
            staged: parking_lot::Mutex::new(Vec::new()),
        }))
    }

    /// Whether the entity API's writes are recorded (TRoE).
    pub fn troe(&self) -> bool {
        self.troe
    }

    /// Whether the tenant has (or had) temporal entities.
    pub fn has_tenant(&self, tenant: &str) -> bool {
        self.index.read().contains_key(tenant)
    }

    /// Runs `f` on an entity's history, if there is one.
    pub fn with_entity<R>(&self, tenant: &str, id: &str, f: impl FnOnce(&TemporalEntity) -> R) -> Option<R> {
        self.index.read().get(tenant).and_then(|t| t.entities.get(id)).map(f)
    }

    /// Instances to add to an entity's attribute, each taking the place (instanceId, createdAt)
    /// of an instance observed at the same time with the same datasetId: an observation posted
    /// again updates the one recorded (ETSI 008_01) instead of recording it twice.
    pub fn placed(&self, tenant: &str, id: &str, attr: &str, mut new: Vec<Instance>) -> Vec<Instance> {
        let observed = |i: &Instance| i.attr.observed_at().and_then(|s| crate::model::parse_datetime(&s));
        self.with_entity(tenant, id, |e| {
            let Some(old) = e.attrs.get(attr) else { return };
            for n in &mut new {
                let Some(t) = observed(n) else { continue };
                if let Some(o) =
                    old.iter().find(|o| o.attr.dataset_id() == n.attr.dataset_id() && observed(o) == Some(t))
                {
                    n.instance_id = o.instance_id.clone();
                    n.attr.created_at = o.attr.created_at;
                }
            }
        });
        new
    }

    /// Runs `f` on every entity of a tenant, in creation order, until it returns false.
    pub fn scan(&self, tenant: &str, mut f: impl FnMut(&TemporalEntity) -> bool) {
        if let Some(t) = self.index.read().get(tenant) {
            for e in t.entities.values() {
                if !f(e) {
                    break;
                }
            }
        }
    }

    /// Serializes the temporal API's writes: held from reading the current history to applying
    /// the deltas decided from it.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writing.lock().await
    }

    /// Makes deltas durable, then applies them to the index. Puts and removals are persisted
    /// in one commit each, removals first.
    pub async fn commit(&self, deltas: Vec<Delta>) -> NgsiResult<()> {
        let (puts, dels) = self.documents(&deltas);
        if !dels.is_empty() {
            self.store.delete_meta_many(COLLECTION, dels).await?;
        }
        if !puts.is_empty() {
            self.store.put_meta_many(COLLECTION, puts).await?;
        }
        self.apply(deltas);
        Ok(())
    }

    /// The documents a list of deltas writes and the keys it deletes.
    fn documents(&self, deltas: &[Delta]) -> (Vec<(String, Value)>, Vec<String>) {
        let mut puts = Vec::new();
        let mut dels = Vec::new();
        for d in deltas {
            match d {
                Delta::Header { tenant, header } => {
                    puts.push((header_key(tenant, &header.id), header_doc(tenant, header)))
                }
                Delta::Put { tenant, id, attr, inst } => {
                    puts.push((instance_key(tenant, id, attr, &inst.instance_id), instance_doc(tenant, id, attr, inst)))
                }
                Delta::Remove { tenant, id, attr, instance_id } => {
                    dels.push(instance_key(tenant, id, attr, instance_id))
                }
                Delta::Drop { tenant, id } => {
                    dels.push(header_key(tenant, id));
                    self.with_entity(tenant, id, |e| {
                        for (attr, list) in &e.attrs {
                            for inst in list {
                                dels.push(instance_key(tenant, id, attr, &inst.instance_id));
                            }
                        }
                    });
                }
            }
        }
        (puts, dels)
    }

    /// Applies durable deltas to the index.
    fn apply(&self, deltas: Vec<Delta>) {
        let mut index = self.index.write();
        for d in deltas {
            match d {
                Delta::Header { tenant, header } => {
                    let e = index.entry(tenant).or_default().entities.entry(header.id.clone()).or_default();
                    e.id = header.id;
                    e.types = header.types;
                    e.scope = header.scope;
                    e.created_at = header.created_at;
                    e.modified_at = header.modified_at;
                }
                Delta::Put { tenant, id, attr, inst } => {
                    let Some(e) = index.get_mut(&tenant).and_then(|t| t.entities.get_mut(&id)) else { continue };
                    let list = e.attrs.entry(attr).or_default();
                    match list.iter_mut().find(|i| i.instance_id == inst.instance_id) {
                        Some(slot) => *slot = inst,
                        None => list.push(inst),
                    }
                }
                Delta::Remove { tenant, id, attr, instance_id } => {
                    let Some(e) = index.get_mut(&tenant).and_then(|t| t.entities.get_mut(&id)) else { continue };
                    if let Some(list) = e.attrs.get_mut(&attr) {
                        list.retain(|i| i.instance_id != instance_id);
                        if list.is_empty() {
                            e.attrs.shift_remove(&attr);
                        }
                    }
                }
                Delta::Drop { tenant, id } => {
                    if let Some(t) = index.get_mut(&tenant) {
                        t.entities.shift_remove(&id);
                    }
                }
            }
        }
    }
}

fn read_header(d: &Value) -> Option<(String, Header)> {
    let tenant = d.get("t")?.as_str()?.to_owned();
    let id = d.get("id")?.as_str()?.to_owned();
    let types = d.get("types")?.as_array()?.iter().filter_map(Value::as_str).map(str::to_owned).collect();
    let scope = d
        .get("scope")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect());
    let created_at = d.get("createdAt")?.as_i64()?;
    let modified_at = d.get("modifiedAt")?.as_i64()?;
    Some((tenant, Header { id, types, scope, created_at, modified_at }))
}

fn read_instance(d: &Value) -> Option<(String, String, String, Instance)> {
    let tenant = d.get("t")?.as_str()?.to_owned();
    let id = d.get("e")?.as_str()?.to_owned();
    let attr = d.get("a")?.as_str()?.to_owned();
    let instance_id = d.get("i")?.as_str()?.to_owned();
    let a: Attribute = serde_json::from_value(d.get("v")?.clone()).ok()?;
    let deleted_at = d.get("d").and_then(Value::as_i64);
    Some((tenant, id, attr, Instance { instance_id, attr: a, deleted_at }))
}

/// A temporal entity not found.
pub fn not_found(id: &str) -> NgsiError {
    NgsiError::not_found(format!("no temporal evolution of entity {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AttrKind;

    #[test]
    fn documents_read_back() {
        let h = Header {
            id: "urn:a".into(),
            types: vec!["https://x/T".into()],
            scope: Some(vec!["/a".into()]),
            created_at: 5,
            modified_at: 6,
        };
        let (t, back) = read_header(&header_doc("city", &h)).unwrap();
        assert_eq!(t, "city");
        assert_eq!(back, h);
        let mut a = Attribute::new(AttrKind::Property, &json!(3), 7);
        a.set_observed_at(Some("2020-01-01T00:00:00Z".into()));
        let inst = Instance { instance_id: "urn:i:1".into(), attr: a, deleted_at: Some(9) };
        let (t, id, attr, back) = read_instance(&instance_doc("", "urn:a", "https://x/p", &inst)).unwrap();
        assert_eq!((t.as_str(), id.as_str(), attr.as_str()), ("", "urn:a", "https://x/p"));
        assert_eq!(back, inst);
    }

    #[test]
    fn instance_ids_are_uris() {
        assert!(crate::model::parse::is_uri(&new_instance_id()));
        assert_ne!(new_instance_id(), new_instance_id());
    }
}
