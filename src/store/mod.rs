//! The storage boundary: a narrow async trait every backend implements, and the change events
//! every successful write publishes.
//!
//! Writes are expressed as *mutations*: a function from the current state of one entity to its
//! new state, applied atomically by the backend. The embedded backend runs them on its single
//! writer thread; a MongoDB backend can run them as read + conditional replace with retry. The
//! store holds expanded IRIs only and knows nothing of HTTP or of the operations above it.

pub mod embedded;
pub mod log;
#[cfg(test)]
pub mod suite;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::{ErrorKind, NgsiError};
use crate::model::Entity;

/// The default tenant (no `NGSILD-Tenant` header).
pub const DEFAULT_TENANT: &str = "";

/// What a mutation decided.
#[derive(Debug)]
pub enum Mutation {
    Put(Entity),
    Delete,
    /// Nothing changes; the write still succeeds.
    Keep,
}

/// A mutation function: gets the current entity (if any), returns the new state or a rejection.
/// A store calls it once, so it may move what it captured into the new state.
pub type MutateFn = Box<dyn FnOnce(Option<&Entity>) -> Result<Mutation, NgsiError> + Send + Sync>;

/// One write on one entity.
pub struct Write {
    pub id: String,
    pub mutate: MutateFn,
}

impl Write {
    pub fn new(
        id: impl Into<String>,
        f: impl FnOnce(Option<&Entity>) -> Result<Mutation, NgsiError> + Send + Sync + 'static,
    ) -> Write {
        Write { id: id.into(), mutate: Box::new(f) }
    }
}

/// A change published after a write is durable: side effects (notifications, history) hang off these.
#[derive(Debug, Clone)]
pub struct Change {
    pub tenant: String,
    pub id: String,
    pub old: Option<Arc<Entity>>,
    pub new: Option<Arc<Entity>>,
}

/// Side effects that must not be lost (notifications) hook into the write path here: the store
/// shows every committed group of changes to its observer twice, once before the group is made
/// durable (the observer returns documents to store in the same commit, such as outbox entries)
/// and once after (the observer acts on them). A crash between the two loses nothing: the
/// documents are durable with the changes that caused them.
pub trait ChangeObserver: Send + Sync {
    /// Called on the write path, in commit order, with the changes of one group (no unchanged
    /// entities); returns `(collection, key, document)` triples stored with the group.
    fn prepare(&self, changes: &[Change]) -> Vec<(String, String, Value)>;
    /// Called once the group is durable, with the changes and what `prepare` returned.
    fn committed(&self, changes: &[Change], docs: Vec<(String, String, Value)>);
}

/// Several observers as one: each sees every group, in the order given, and gets back in
/// `committed` the documents it returned from `prepare`, all of which are stored together.
pub struct Observers {
    observers: Vec<Arc<dyn ChangeObserver>>,
    /// How many documents each observer returned for the group being committed.
    counts: parking_lot::Mutex<Vec<usize>>,
}

impl Observers {
    pub fn new(observers: Vec<Arc<dyn ChangeObserver>>) -> Observers {
        Observers { observers, counts: parking_lot::Mutex::new(Vec::new()) }
    }
}

impl ChangeObserver for Observers {
    fn prepare(&self, changes: &[Change]) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        let mut counts = Vec::with_capacity(self.observers.len());
        for o in &self.observers {
            let docs = o.prepare(changes);
            counts.push(docs.len());
            out.extend(docs);
        }
        *self.counts.lock() = counts;
        out
    }

    fn committed(&self, changes: &[Change], docs: Vec<(String, String, Value)>) {
        let counts = std::mem::take(&mut *self.counts.lock());
        let mut docs = docs.into_iter();
        for (i, o) in self.observers.iter().enumerate() {
            let n = counts.get(i).copied().unwrap_or(0);
            o.committed(changes, docs.by_ref().take(n).collect());
        }
    }
}

/// An in-memory refinement of a filter.
pub type Predicate = Arc<dyn Fn(&Entity) -> bool + Send + Sync>;

/// An ordering of results (orderBy); ties keep the store's own order.
pub type Comparator = Arc<dyn Fn(&Entity, &Entity) -> std::cmp::Ordering + Send + Sync>;

/// A numeric sort key (see [`EntityFilter::sort_key`]); `None` means the entity does not match
/// after all (a near-query's distance bounds are decided by the key itself).
pub type SortKey = Arc<dyn Fn(&Entity) -> Option<f64> + Send + Sync>;

/// A filter the backend evaluates (and pushes down where it can).
#[derive(Clone, Default)]
pub struct EntityFilter {
    pub ids: Option<Vec<String>>,
    pub id_pattern: Option<regex::Regex>,
    /// Any of these expanded types.
    pub types: Option<Vec<String>>,
    /// Entities having any of these expanded attributes.
    pub attrs: Option<Vec<String>>,
    /// A refinement evaluated in memory on candidates.
    pub predicate: Option<Predicate>,
    /// Results sorted by this instead of creation order.
    pub sort: Option<Comparator>,
    /// Results sorted by this numeric key, smallest first (distance for near-queries): each
    /// entity's key is computed once.
    pub sort_key: Option<SortKey>,
    /// A GeoProperty (expanded) and a lon/lat box every match's geometry intersects: lets a
    /// backend use its spatial index; the predicate still decides.
    pub geo_box: Option<(String, [f64; 4])>,
    /// A near-query a backend may answer from its spatial index: matches have an instance of the
    /// GeoProperty within the bounds, ordered by distance. `sort_key` gives the same answer.
    pub near: Option<NearFilter>,
    /// A numeric range every match has a value of the (expanded, top-level) attribute in:
    /// lets a backend use a value index; the predicate still decides.
    pub range: Option<NumRange>,
}

/// A near-query: an expanded GeoProperty, a lon/lat point, and distance bounds in metres.
#[derive(Debug, Clone, PartialEq)]
pub struct NearFilter {
    pub geoproperty: String,
    pub point: [f64; 2],
    pub max: Option<f64>,
    pub min: Option<f64>,
}

/// A numeric range on an attribute's value, bounds inclusive or not.
#[derive(Debug, Clone, PartialEq)]
pub struct NumRange {
    pub attr: String,
    pub lo: std::ops::Bound<f64>,
    pub hi: std::ops::Bound<f64>,
}

impl NumRange {
    /// Whether `x` lies inside the range.
    pub fn contains(&self, x: f64) -> bool {
        use std::ops::Bound::*;
        let above = match self.lo {
            Included(l) => x >= l,
            Excluded(l) => x > l,
            Unbounded => true,
        };
        let below = match self.hi {
            Included(h) => x <= h,
            Excluded(h) => x < h,
            Unbounded => true,
        };
        above && below
    }

    /// A cheap necessary condition for a match, tested on the stored text before the
    /// predicate: false only when the entity lacks the attribute or every instance's value is
    /// a plain number outside the range. Any other value (string, array, object) is left to the
    /// predicate.
    pub fn may_hold(&self, e: &Entity) -> bool {
        let Some(instances) = e.attrs.get(self.attr.as_str()) else { return false };
        instances.iter().any(|a| a.value_text().parse::<f64>().map_or(true, |x| self.contains(x)))
    }
}

impl fmt::Debug for EntityFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntityFilter")
            .field("ids", &self.ids)
            .field("id_pattern", &self.id_pattern)
            .field("types", &self.types)
            .field("attrs", &self.attrs)
            .field("predicate", &self.predicate.is_some())
            .field("sort", &self.sort.is_some())
            .field("sort_key", &self.sort_key.is_some())
            .field("geo_box", &self.geo_box)
            .field("near", &self.near)
            .field("range", &self.range)
            .finish()
    }
}

impl EntityFilter {
    /// Whether an entity passes every part of the filter.
    pub fn matches(&self, e: &Entity) -> bool {
        if let Some(ids) = &self.ids
            && !ids.iter().any(|i| **i == *e.id)
        {
            return false;
        }
        if let Some(p) = &self.id_pattern
            && !p.is_match(&e.id)
        {
            return false;
        }
        if let Some(types) = &self.types
            && !types.iter().any(|t| e.has_type(t))
        {
            return false;
        }
        if let Some(attrs) = &self.attrs
            && !attrs.iter().any(|a| e.attrs.contains_key(a.as_str()))
        {
            return false;
        }
        self.predicate.as_ref().is_none_or(|p| p(e))
    }
}

/// One page of a query, in the store's stable order (creation time, then id).
#[derive(Debug, Default)]
pub struct Page {
    pub entities: Vec<Arc<Entity>>,
    /// The number of matches, when asked for.
    pub total: Option<usize>,
}

/// What a tenant holds, for discovery (`/types`, `/attributes`): entity counts per type and,
/// per attribute, how many entities have it and with which attribute kinds.
#[derive(Debug, Default, Clone)]
pub struct Catalogue {
    pub types: std::collections::BTreeMap<String, TypeStat>,
    pub attrs: std::collections::BTreeMap<String, AttrStat>,
}

#[derive(Debug, Default, Clone)]
pub struct TypeStat {
    pub entities: usize,
    /// Attribute name → kinds seen in entities of this type.
    pub attrs: std::collections::BTreeMap<String, std::collections::BTreeSet<crate::model::AttrKind>>,
}

#[derive(Debug, Default, Clone)]
pub struct AttrStat {
    pub entities: usize,
    pub kinds: std::collections::BTreeSet<crate::model::AttrKind>,
    pub types: std::collections::BTreeSet<String>,
}

/// Failures of the storage layer itself (not rejections of a write).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is shutting down")]
    Closed,
}

impl From<StoreError> for NgsiError {
    fn from(e: StoreError) -> Self {
        NgsiError::new(ErrorKind::InternalError, e.to_string())
    }
}

/// The storage trait. Tenants are created by writes that allow it and by nothing else.
#[async_trait]
pub trait Store: Send + Sync {
    /// Whether a tenant exists (the default tenant always does).
    async fn tenant_exists(&self, tenant: &str) -> Result<bool, StoreError>;
    async fn tenants(&self) -> Result<Vec<String>, StoreError>;
    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Arc<Entity>>, StoreError>;
    async fn query(
        &self,
        tenant: &str,
        filter: &EntityFilter,
        offset: usize,
        limit: usize,
        count: bool,
    ) -> Result<Page, StoreError>;
    /// Applies writes in order, each atomically; one result per write. With `create_tenant`
    /// the tenant springs into existence, otherwise writes to an unknown tenant are rejected.
    async fn write(
        &self,
        tenant: &str,
        create_tenant: bool,
        writes: Vec<Write>,
    ) -> Result<Vec<Result<Change, NgsiError>>, StoreError>;
    /// Types and attributes present in a tenant.
    async fn catalogue(&self, tenant: &str) -> Result<Catalogue, StoreError>;
    /// Tenant-independent documents (hosted contexts, later subscriptions and registrations).
    async fn put_meta(&self, collection: &str, key: &str, doc: Value) -> Result<(), StoreError>;
    /// Stores many documents of one collection in one commit.
    async fn put_meta_many(&self, collection: &str, docs: Vec<(String, Value)>) -> Result<(), StoreError>;
    async fn delete_meta(&self, collection: &str, key: &str) -> Result<bool, StoreError>;
    /// Deletes many documents of one collection in one commit; absent keys are ignored.
    async fn delete_meta_many(&self, collection: &str, keys: Vec<String>) -> Result<(), StoreError>;
    /// One document.
    async fn get_meta(&self, collection: &str, key: &str) -> Result<Option<Value>, StoreError>;
    /// A collection's documents in insertion order (collections named `outbox*` or `temporal*`:
    /// in no order).
    async fn list_meta(&self, collection: &str) -> Result<Vec<(String, Value)>, StoreError>;
    /// A receiver of change events (bounded; a slow receiver misses events and is told so).
    fn changes(&self) -> tokio::sync::broadcast::Receiver<Change>;
    /// Installs the observer of committed changes (one per store; a later call replaces it).
    fn set_observer(&self, observer: std::sync::Arc<dyn ChangeObserver>);
}
