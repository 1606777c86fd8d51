//! The default store: all current state in memory with indexes, every acknowledged write first
//! made durable in the log directory (`log`).
//!
//! One writer thread owns the log. It takes every write waiting in its (bounded) queue, runs
//! their mutations in order against the current state, appends them to the log as one group
//! with one `fdatasync`, then publishes the new state and answers all the callers: concurrent
//! writers share one fsync (group commit). Readers never wait for the disk: they read the
//! in-memory state, which only ever shows durable data. Indexes (by creation order, by type,
//! values, geometry) are rebuilt from the log at start.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use indexmap::IndexMap;
use parking_lot::RwLock;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, Envelope, ParentNode, RStarInsertionStrategy, RTree, RTreeNode, RTreeParams};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::log::{DiskOp, Log, LogConfig, SnapshotSource, supersedes};
use super::{
    AttrStat, Catalogue, Change, ChangeObserver, DEFAULT_TENANT, EntityFilter, Mutation, Page, Store, StoreError,
    TypeStat, Write,
};
use crate::error::{ErrorKind, NgsiError};
use crate::model::{AttrKind, Attribute, Entity, Instances, Name};
use smallvec::SmallVec;

// The tables of the redb file earlier versions kept their state in; read once, to convert.
const ENTITIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entities");
const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// How many queued jobs one commit may take.
const MAX_GROUP: usize = 1024;
/// The writer queue bound: callers wait (back-pressure) when it is full.
const QUEUE: usize = 4096;

/// Creation order: (createdAt, id). The id is the entity's own allocation, shared by every
/// index entry of the entity.
type OrderKey = (i64, Arc<str>);

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Entities per attribute kind, by [`AttrKind`] discriminant.
type KindCounts = [usize; 8];

/// The kinds of an attribute's instances, one bit per [`AttrKind`] discriminant.
fn kind_mask(list: &Instances) -> u8 {
    list.iter().fold(0, |m, a| m | 1 << a.kind as u8)
}

fn kinds_of(counts: &KindCounts) -> impl Iterator<Item = AttrKind> + '_ {
    AttrKind::ALL.into_iter().filter(|k| counts[*k as usize] > 0)
}

/// Counters behind discovery, kept up to date on every insert and removal.
#[derive(Default)]
struct Counters {
    /// Type → (entities, attribute → kind → entities).
    types: FastMap<Name, (usize, FastMap<Name, KindCounts>)>,
    /// Attribute → (entities, kind → entities).
    attrs: FastMap<Name, (usize, KindCounts)>,
}

fn bump_kinds(counts: &mut KindCounts, mask: u8, up: bool) {
    for (k, n) in counts.iter_mut().enumerate() {
        if mask & (1 << k) != 0 {
            *n = if up { *n + 1 } else { n.saturating_sub(1) };
        }
    }
}

impl Counters {
    /// Counts (or uncounts) an entity of `types`, attributes aside.
    fn entity(&mut self, types: &[Name], up: bool) {
        for t in types {
            if up {
                self.types.entry(t.clone()).or_default().0 += 1;
            } else if let Some(entry) = self.types.get_mut(t) {
                entry.0 = entry.0.saturating_sub(1);
                if entry.0 == 0 {
                    self.types.remove(t);
                }
            }
        }
    }

    /// Counts (or uncounts) one attribute of an entity of `types`, with the kinds in `mask`.
    fn attr(&mut self, types: &[Name], name: &Name, mask: u8, up: bool) {
        for t in types {
            let Some(entry) = self.types.get_mut(t) else { continue };
            if up {
                bump_kinds(entry.1.entry(name.clone()).or_default(), mask, true);
            } else if let Some(per) = entry.1.get_mut(name) {
                bump_kinds(per, mask, false);
                if per.iter().all(|n| *n == 0) {
                    entry.1.remove(name);
                }
            }
        }
        if up {
            let entry = self.attrs.entry(name.clone()).or_default();
            entry.0 += 1;
            bump_kinds(&mut entry.1, mask, true);
        } else if let Some(entry) = self.attrs.get_mut(name) {
            entry.0 = entry.0.saturating_sub(1);
            bump_kinds(&mut entry.1, mask, false);
            if entry.0 == 0 {
                self.attrs.remove(name);
            }
        }
    }

    fn apply(&mut self, e: &Entity, up: bool) {
        if up {
            self.entity(&e.types, true);
        }
        for (name, list) in &e.attrs {
            self.attr(&e.types, name, kind_mask(list), up);
        }
        if !up {
            self.entity(&e.types, false);
        }
    }
}

/// One GeoProperty instance's bounding box in the spatial index.
type GeoEntry = GeomWithData<Rectangle<[f64; 2]>, OrderKey>;

/// The spatial index's node sizes: wider nodes without forced reinsertion than rstar's
/// defaults (6 children, reinsertion). Measured with city-sized clusters of random points, at
/// 100,000-1,000,000 points insertion (one per located create) is 1.05-1.2x faster and box
/// queries over the shallower tree 1.3-1.5x faster; at 10,000-20,000 points both are within
/// 10% of the defaults (insertion costs about 500 more instructions).
struct GeoParams;

impl RTreeParams for GeoParams {
    const MIN_SIZE: usize = 4;
    const MAX_SIZE: usize = 16;
    const REINSERTION_COUNT: usize = 0;
    type DefaultInsertionStrategy = RStarInsertionStrategy;
}

/// A tenant's entities by id: a hash table of the entities themselves (8 bytes an entry), hashed
/// by id with a seeded fast hash, since every visited candidate costs one lookup here.
#[derive(Default)]
struct Entities {
    table: hashbrown::HashTable<Arc<Entity>>,
    hasher: foldhash::fast::RandomState,
}

impl Entities {
    #[inline]
    fn hash(&self, id: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(id)
    }

    #[inline]
    fn get(&self, id: &str) -> Option<&Arc<Entity>> {
        self.table.find(self.hash(id), |e| *e.id == *id)
    }

    /// Puts an entity, replacing the one with its id.
    fn insert(&mut self, e: Arc<Entity>) {
        let h = self.hash(&e.id);
        let hasher = &self.hasher;
        match self.table.entry(h, |x| x.id == e.id, |x| std::hash::BuildHasher::hash_one(hasher, &*x.id)) {
            hashbrown::hash_table::Entry::Occupied(mut o) => *o.get_mut() = e,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(e);
            }
        }
    }

    fn remove(&mut self, id: &str) -> Option<Arc<Entity>> {
        let h = self.hash(id);
        self.table.find_entry(h, |e| *e.id == *id).ok().map(|o| o.remove().0)
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn values(&self) -> impl Iterator<Item = &Arc<Entity>> {
        self.table.iter()
    }
}

#[derive(Default)]
struct TenantState {
    entities: Entities,
    order: BTreeSet<OrderKey>,
    by_type: FastMap<Name, BTreeSet<OrderKey>>,
    /// An R-tree of bounding boxes per GeoProperty name.
    geo: HashMap<Name, RTree<GeoEntry, GeoParams>>,
    /// Numeric values per attribute name, sorted, for selective `q` ranges.
    numbers: HashMap<Name, BTreeSet<(Num, OrderKey)>>,
    /// Plain numeric values per attribute name in creation order, for `q` ranges too wide for
    /// the value index.
    columns: HashMap<Name, Column>,
    counters: Counters,
    /// Entities at the last repacking of the creation-ordered sets (see `repack`).
    repacked_at: usize,
    /// Entities added since then whose key did not come last in creation order.
    out_of_order: usize,
}

/// One attribute's plain numeric values in creation order. A scan of a `q` range over the
/// column reads entities only for values inside the range, instead of reading every entity.
#[derive(Default)]
struct Column {
    values: BTreeSet<(OrderKey, Num)>,
    /// Instances of the attribute whose value is no plain number (a string, an array, an
    /// object): while there are any, the column does not hold every value `q` may compare, and
    /// scans do not use it.
    others: usize,
}

/// An f64 with a total order, for the value index.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Num(f64);

impl Eq for Num {}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Num {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The numbers `q` compares for an attribute instance: a numeric value, or the numbers inside
/// an array value.
fn numbers_of(a: &Attribute, out: &mut SmallVec<[f64; 4]>) {
    if matches!(a.kind, AttrKind::LanguageProperty | AttrKind::ListRelationship | AttrKind::Relationship) {
        return;
    }
    let text = a.value_text();
    // Plain numbers are read from the text; only arrays need the JSON tree.
    if let Ok(x) = text.parse::<f64>() {
        out.push(x);
    } else if text.starts_with('[')
        && let Value::Array(items) = a.value()
    {
        out.extend(items.iter().filter_map(Value::as_f64));
    }
}

/// The spatial index entry of a GeoProperty instance.
fn geo_entry(a: &Attribute, key: &OrderKey) -> Option<GeoEntry> {
    if a.kind != AttrKind::GeoProperty {
        return None;
    }
    // A Point is indexed as itself (a degenerate box), so a near-query can take its exact
    // position from the index entry; search boxes carry their own rounding margin.
    if let Some(p) = crate::query::geo::point_of(a.value_text()) {
        Some(GeomWithData::new(Rectangle::from_corners(p, p), key.clone()))
    } else {
        let [x0, y0, x1, y1] = crate::query::geo::bbox_of(&a.value())?;
        Some(GeomWithData::new(Rectangle::from_corners([x0, y0], [x1, y1]), key.clone()))
    }
}

/// Whether two instance lists give the same index entries and counters: the same kinds and
/// value texts, instance by instance (what else an update changes, such as observedAt or
/// modifiedAt, is not indexed).
fn same_indexed(old: Option<&Instances>, new: Option<&Instances>) -> bool {
    match (old, new) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.len() == b.len()
                && a.iter().zip(b.iter()).all(|(x, y)| x.kind == y.kind && x.value_text() == y.value_text())
        }
        _ => false,
    }
}

impl TenantState {
    /// Inserts or replaces an entity. A replacement touches only the index entries of the
    /// attributes whose instances changed (kind or value): most updates change one attribute,
    /// and removing from an R-tree is costly.
    fn insert(&mut self, e: Arc<Entity>) {
        let Some(old) = self.entities.get(&e.id).cloned() else {
            self.add(e);
            return;
        };
        // The index entries of an entity share its id allocation (the spatial plan compares
        // them by pointer): a replacement made with another allocation is indexed anew.
        if old.created_at != e.created_at || old.types != e.types || !Arc::ptr_eq(&old.id, &e.id) {
            self.remove(&old.id);
            self.add(e);
            return;
        }
        let key = (e.created_at, e.id.clone());
        for (name, list) in &old.attrs {
            let now = e.attrs.get(name);
            if !same_indexed(Some(list), now) {
                self.unlist(name, list, &key);
                let (was, is) = (kind_mask(list), now.map_or(0, kind_mask));
                if was != is {
                    self.counters.attr(&e.types, name, was, false);
                    if is != 0 {
                        self.counters.attr(&e.types, name, is, true);
                    }
                }
            }
        }
        for (name, list) in &e.attrs {
            let before = old.attrs.get(name);
            if !same_indexed(before, Some(list)) {
                self.list(name, list, &key);
                if before.is_none() {
                    self.counters.attr(&e.types, name, kind_mask(list), true);
                }
            }
        }
        self.entities.insert(e);
    }

    /// Adds the index entries of one attribute's instances.
    fn list(&mut self, name: &Name, list: &Instances, key: &OrderKey) {
        let mut nums = SmallVec::new();
        for a in list {
            if let Some(entry) = geo_entry(a, key) {
                self.geo.entry(name.clone()).or_default().insert(entry);
            }
            numbers_of(a, &mut nums);
        }
        if !nums.is_empty() {
            let set = self.numbers.entry(name.clone()).or_default();
            for x in nums {
                set.insert((Num(x), key.clone()));
            }
        }
        let column = self.columns.entry(name.clone()).or_default();
        for a in list {
            match a.value_text().parse::<f64>() {
                Ok(x) => {
                    column.values.insert((key.clone(), Num(x)));
                }
                Err(_) => column.others += 1,
            }
        }
    }

    /// Removes what [`TenantState::list`] added.
    fn unlist(&mut self, name: &Name, list: &Instances, key: &OrderKey) {
        let mut nums = SmallVec::new();
        for a in list {
            if let Some(entry) = geo_entry(a, key)
                && let Some(tree) = self.geo.get_mut(name)
            {
                tree.remove(&entry);
                if tree.size() == 0 {
                    self.geo.remove(name);
                }
            }
            numbers_of(a, &mut nums);
        }
        if !nums.is_empty()
            && let Some(set) = self.numbers.get_mut(name)
        {
            for x in nums {
                set.remove(&(Num(x), key.clone()));
            }
            if set.is_empty() {
                self.numbers.remove(name);
            }
        }
        if let Some(column) = self.columns.get_mut(name) {
            for a in list {
                match a.value_text().parse::<f64>() {
                    Ok(x) => {
                        column.values.remove(&(key.clone(), Num(x)));
                    }
                    Err(_) => column.others = column.others.saturating_sub(1),
                }
            }
            if column.values.is_empty() && column.others == 0 {
                self.columns.remove(name);
            }
        }
    }

    /// Rebuilds the sets kept in creation order (`order`, `by_type`, the columns) with full
    /// nodes when they have doubled since the last time and new entities came in creation
    /// order. A B-tree that only grows at its end leaves every node it splits half full (6 of
    /// 11 keys), twice the memory of a tree built from sorted keys; a rebuild is linear, so
    /// repacking at every doubling costs a constant per entity. When entities come in another
    /// order (loading the checkpoint, in id order), nodes fill to about 70% anyway and a packed
    /// tree would only be split again.
    fn repack(&mut self) {
        let n = self.order.len();
        let grown = n.saturating_sub(self.repacked_at);
        if n < 1024 || grown < self.repacked_at {
            return;
        }
        if self.out_of_order <= grown / 8 {
            self.order = std::mem::take(&mut self.order).into_iter().collect();
            for set in self.by_type.values_mut() {
                *set = std::mem::take(set).into_iter().collect();
            }
            for column in self.columns.values_mut() {
                column.values = std::mem::take(&mut column.values).into_iter().collect();
            }
        }
        self.repacked_at = n;
        self.out_of_order = 0;
    }

    /// Adds an entity that is not in the maps.
    fn add(&mut self, e: Arc<Entity>) {
        let key = (e.created_at, e.id.clone());
        if self.order.last().is_some_and(|last| key < *last) {
            self.out_of_order += 1;
        }
        self.order.insert(key.clone());
        for t in &e.types {
            self.by_type.entry(t.clone()).or_default().insert(key.clone());
        }
        self.counters.apply(&e, true);
        for (name, list) in &e.attrs {
            self.list(name, list, &key);
        }
        self.entities.insert(e);
        self.repack();
    }

    fn remove(&mut self, id: &str) {
        let Some(old) = self.entities.remove(id) else { return };
        self.counters.apply(&old, false);
        let key = (old.created_at, old.id.clone());
        for (name, list) in &old.attrs {
            self.unlist(name, list, &key);
        }
        self.order.remove(&key);
        for t in &old.types {
            if let Some(set) = self.by_type.get_mut(t) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_type.remove(t);
                }
            }
        }
    }
}

#[derive(Default)]
struct State {
    tenants: HashMap<String, TenantState>,
    meta: HashMap<String, IndexMap<String, Value>>,
    observer: Option<Arc<dyn ChangeObserver>>,
}

type WriteReply = oneshot::Sender<Result<Vec<Result<Change, NgsiError>>, StoreError>>;

enum Job {
    Write { tenant: String, create_tenant: bool, writes: Vec<Write>, reply: WriteReply },
    DeleteMeta { key: String, collection: String, reply: oneshot::Sender<Result<bool, StoreError>> },
    PutMetaMany { docs: Vec<(String, Value)>, collection: String, reply: oneshot::Sender<Result<(), StoreError>> },
    DeleteMetaMany { keys: Vec<String>, collection: String, reply: oneshot::Sender<Result<(), StoreError>> },
}

/// Removes a document. Collections keep insertion order, except the unordered ones (`outbox*`,
/// many short-lived entries; `temporal*`, many entries whose order is decided by their
/// timestamps), where a swap removal keeps deletion O(1).
fn remove_meta(m: &mut IndexMap<String, Value>, collection: &str, key: &str) {
    if collection.starts_with("outbox") || collection.starts_with("temporal") {
        m.swap_remove(key);
    } else {
        m.shift_remove(key);
    }
}

/// The durable side of the store: the log directory, and when a compaction is due, the
/// capture of the state it snapshots.
struct Disk {
    log: Log,
}

impl Disk {
    /// Makes a group's operations durable in the log.
    fn log(&mut self, ops: Vec<DiskOp>, superseded: u64) -> Result<(), StoreError> {
        self.log.append(&ops, superseded).map_err(io)
    }

    /// Starts a compaction when one is due. Runs on the writer thread between groups, so the
    /// captured state is exactly what the closed segments describe.
    fn maybe_compact(&mut self, state: &RwLock<State>) {
        if !self.log.compaction_due() {
            return;
        }
        if let Err(e) = self.log.compact(capture(state)) {
            tracing::error!(error = %e, "could not start a log compaction");
        }
    }
}

/// The current state as a snapshot source: entities are shared immutable values, so this
/// copies pointers, and the compaction thread serializes them.
fn capture(state: &RwLock<State>) -> SnapshotSource {
    let st = state.read();
    let tenants: Vec<(String, Vec<Arc<Entity>>)> =
        st.tenants.iter().map(|(name, ts)| (name.clone(), ts.entities.values().cloned().collect())).collect();
    let meta: Vec<(String, Vec<(String, Value)>)> = st
        .meta
        .iter()
        .map(|(coll, docs)| (coll.clone(), docs.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
        .collect();
    drop(st);
    Box::new(move |w| {
        for (name, entities) in tenants {
            if name != DEFAULT_TENANT {
                w(DiskOp::PutTenant { name: name.clone() })?;
            }
            for e in entities {
                let bytes = e.stored();
                w(DiskOp::PutEntity { key: entity_key(&name, &e.id), bytes })?;
            }
        }
        for (coll, docs) in meta {
            for (key, doc) in docs {
                let bytes = serde_json::to_vec(&doc).map_err(std::io::Error::other)?;
                w(DiskOp::PutMeta { key: format!("{coll}\u{0}{key}"), bytes })?;
            }
        }
        Ok(())
    })
}

/// Applies a replayed log operation to the in-memory state.
/// Applies a read-back log operation to the in-memory state; says whether it replaced or
/// deleted what its key held (which makes the older record obsolete).
fn replay(state: &mut State, op: DiskOp) -> Result<bool, StoreError> {
    Ok(match op {
        DiskOp::PutEntity { key, bytes } => {
            let tenant = key.split('\u{0}').next().unwrap_or_default().to_owned();
            let e: Entity = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("logged entity {key:?}: {e}")))?;
            let ts = state.tenants.entry(tenant).or_default();
            let existed = ts.entities.get(&e.id).is_some();
            ts.insert(Arc::new(e));
            existed
        }
        DiskOp::DelEntity { key } => match key.split_once('\u{0}') {
            Some((tenant, id)) => match state.tenants.get_mut(tenant) {
                Some(ts) => {
                    let existed = ts.entities.get(id).is_some();
                    ts.remove(id);
                    existed
                }
                None => false,
            },
            None => false,
        },
        DiskOp::PutTenant { name } => {
            let existed = state.tenants.contains_key(&name);
            state.tenants.entry(name).or_default();
            existed
        }
        DiskOp::PutMeta { key, bytes } => {
            let (coll, k) = key.split_once('\u{0}').unwrap_or(("", &key));
            let doc: Value =
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(format!("logged meta {key:?}: {e}")))?;
            state.meta.entry(coll.to_owned()).or_default().insert(k.to_owned(), doc).is_some()
        }
        DiskOp::DelMeta { key } => {
            let (coll, k) = key.split_once('\u{0}').unwrap_or(("", &key));
            match state.meta.get_mut(coll) {
                Some(m) => {
                    let existed = m.contains_key(k);
                    remove_meta(m, coll, k);
                    existed
                }
                None => false,
            }
        }
    })
}

/// Loads the state of a data directory written by an earlier version: a redb file, and the
/// write-ahead log of the writes after its last checkpoint.
fn load_legacy(dir: &Path, state: &mut State) -> Result<(), StoreError> {
    let db = redb::Database::open(dir.join("orbis.redb")).map_err(io)?;
    let read = db.begin_read().map_err(io)?;
    if let Ok(tenants) = read.open_table(TENANTS) {
        for item in tenants.iter().map_err(io)? {
            let (k, _) = item.map_err(io)?;
            state.tenants.entry(k.value().to_owned()).or_default();
        }
    }
    if let Ok(entities) = read.open_table(ENTITIES) {
        for item in entities.iter().map_err(io)? {
            let (k, v) = item.map_err(io)?;
            replay(state, DiskOp::PutEntity { key: k.value().to_owned(), bytes: v.value().to_vec() })?;
        }
    }
    if let Ok(meta) = read.open_table(META) {
        for item in meta.iter().map_err(io)? {
            let (k, v) = item.map_err(io)?;
            replay(state, DiskOp::PutMeta { key: k.value().to_owned(), bytes: v.value().to_vec() })?;
        }
    }
    read_back(state, |apply| super::log::read_legacy(&dir.join("orbis.wal"), apply))
}

/// Runs a log reader that passes each operation to [`replay`] over `state`, keeping a replay
/// error as it is (a corrupt record) rather than as the I/O error the reader wraps it in.
fn read_back<R>(
    state: &mut State,
    read: impl FnOnce(&mut dyn FnMut(DiskOp) -> std::io::Result<bool>) -> std::io::Result<R>,
) -> Result<R, StoreError> {
    let mut failure = None;
    read(&mut |op| {
        replay(state, op).map_err(|e| {
            let msg = e.to_string();
            failure = Some(e);
            std::io::Error::other(msg)
        })
    })
    .map_err(|e| failure.take().unwrap_or_else(|| io(e)))
}

/// The embedded store. Cheap to clone handles are not needed: share it in an `Arc`.
pub struct EmbeddedStore {
    state: Arc<RwLock<State>>,
    jobs: mpsc::Sender<Job>,
    changes: broadcast::Sender<Change>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for EmbeddedStore {
    /// Closes the queue and waits for the writer, so the file is released when this returns.
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.jobs, closed));
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

fn io<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Io(e.to_string())
}

fn entity_key(tenant: &str, id: &str) -> String {
    format!("{tenant}\u{0}{id}")
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, loading every entity into memory.
    pub fn open(dir: &Path) -> Result<EmbeddedStore, StoreError> {
        EmbeddedStore::open_with(dir, LogConfig::default())
    }

    /// [`EmbeddedStore::open`] with explicit segment and compaction sizes (tests use small ones).
    pub fn open_with(dir: &Path, config: LogConfig) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut state = State::default();
        state.tenants.insert(DEFAULT_TENANT.to_owned(), TenantState::default());
        let legacy = dir.join("orbis.redb");
        let converting = legacy.exists();
        if converting {
            load_legacy(dir, &mut state)?;
        }
        let mut log = read_back(&mut state, |apply| Log::open(dir, config, apply))?;
        let state = Arc::new(RwLock::new(state));
        if converting {
            // The data directory of an earlier version: its state becomes the first snapshot,
            // then the old files go.
            log.compact_now(capture(&state)).map_err(io)?;
            std::fs::remove_file(&legacy).map_err(io)?;
            let _ = std::fs::remove_file(dir.join("orbis.wal"));
            tracing::info!(dir = %dir.display(), "converted the data directory to the log format");
        }
        let disk = Disk { log };
        let (jobs, rx) = mpsc::channel(QUEUE);
        // No consumer reads these yet, and the buffer is allocated whole up front (about 90
        // bytes a slot): a lagging receiver is told it missed events.
        let (changes, _) = broadcast::channel(1024);
        let writer_state = state.clone();
        let writer_changes = changes.clone();
        let handle = std::thread::Builder::new()
            .name("orbis-store-writer".into())
            .spawn(move || writer(disk, rx, writer_state, writer_changes))
            .map_err(io)?;
        Ok(EmbeddedStore { state, jobs, changes, writer: Some(handle) })
    }

    async fn submit<T>(&self, job: Job, rx: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// The writer loop: group commit of everything queued, and a compaction of the log when one
/// is due. When the store closes the log already holds everything acknowledged.
fn writer(mut disk: Disk, mut rx: mpsc::Receiver<Job>, state: Arc<RwLock<State>>, changes: broadcast::Sender<Change>) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        commit_group(&mut disk, jobs, &state, &changes);
        disk.maybe_compact(&state);
    }
}

enum Outcome {
    Write(WriteReply, Result<Vec<Result<Change, NgsiError>>, StoreError>),
    Meta(oneshot::Sender<Result<(), StoreError>>),
    MetaDelete(oneshot::Sender<Result<bool, StoreError>>, bool),
}

fn commit_group(disk: &mut Disk, jobs: Vec<Job>, state: &RwLock<State>, changes: &broadcast::Sender<Change>) {
    // Entity states decided in this group, by (tenant, id); None = deleted.
    let mut overlay: HashMap<(String, String), Option<Arc<Entity>>, foldhash::fast::RandomState> = HashMap::default();
    let mut new_tenants: HashSet<String> = HashSet::new();
    let mut meta_ops: Vec<(String, String, Option<Value>)> = Vec::new();
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(jobs.len());
    let mut published: Vec<Change> = Vec::new();
    let observer = state.read().observer.clone();
    let mut observed: Vec<(String, String, Value)> = Vec::new();

    let mut ops: Vec<DiskOp> = Vec::new();
    // What this group makes obsolete in the log (estimated), for deciding when to compact.
    let mut superseded = 0u64;
    let result: Result<(), StoreError> = (|| {
        {
            let snapshot = state.read();
            for job in jobs {
                match job {
                    Job::Write { tenant, create_tenant, writes, reply } => {
                        let exists = snapshot.tenants.contains_key(&tenant) || new_tenants.contains(&tenant);
                        if !exists && !create_tenant {
                            let err =
                                NgsiError::new(ErrorKind::NonexistentTenant, format!("tenant {tenant} does not exist"));
                            outcomes.push(Outcome::Write(reply, Ok(writes.iter().map(|_| Err(err.clone())).collect())));
                            continue;
                        }
                        let mut results = Vec::with_capacity(writes.len());
                        let mut changed_any = false;
                        for w in writes {
                            let okey = (tenant.clone(), w.id.clone());
                            let current: Option<Arc<Entity>> = match overlay.get(&okey) {
                                Some(v) => v.clone(),
                                None => {
                                    snapshot.tenants.get(&tenant).and_then(|t| t.entities.get(w.id.as_str()).cloned())
                                }
                            };
                            match (w.mutate)(current.as_deref()) {
                                Err(e) => results.push(Err(e)),
                                Ok(Mutation::Keep) => results.push(Ok(Change {
                                    tenant: tenant.clone(),
                                    id: w.id.clone(),
                                    old: current.clone(),
                                    new: current,
                                })),
                                Ok(Mutation::Put(mut e)) => {
                                    // Entities live long in memory: drop the growth slack.
                                    e.attrs.shrink_to_fit();
                                    let bytes = e.stored();
                                    let op = DiskOp::PutEntity { key: entity_key(&tenant, &w.id), bytes };
                                    if current.is_some() {
                                        superseded += supersedes(&op);
                                    }
                                    ops.push(op);
                                    let new = Arc::new(e);
                                    overlay.insert(okey, Some(new.clone()));
                                    changed_any = true;
                                    let c = Change { tenant: tenant.clone(), id: w.id, old: current, new: Some(new) };
                                    published.push(c.clone());
                                    results.push(Ok(c));
                                }
                                Ok(Mutation::Delete) => {
                                    let op = DiskOp::DelEntity { key: entity_key(&tenant, &w.id) };
                                    superseded += supersedes(&op);
                                    ops.push(op);
                                    overlay.insert(okey, None);
                                    changed_any = true;
                                    let c = Change { tenant: tenant.clone(), id: w.id, old: current, new: None };
                                    published.push(c.clone());
                                    results.push(Ok(c));
                                }
                            }
                        }
                        if !exists && changed_any && tenant != DEFAULT_TENANT {
                            ops.push(DiskOp::PutTenant { name: tenant.clone() });
                            new_tenants.insert(tenant);
                        }
                        outcomes.push(Outcome::Write(reply, Ok(results)));
                    }
                    Job::PutMetaMany { docs, collection, reply } => {
                        for (key, doc) in docs {
                            let bytes = serde_json::to_vec(&doc).map_err(io)?;
                            let op = DiskOp::PutMeta { key: format!("{collection}\u{0}{key}"), bytes };
                            if snapshot.meta.get(&collection).is_some_and(|m| m.contains_key(&key)) {
                                superseded += supersedes(&op);
                            }
                            ops.push(op);
                            meta_ops.push((collection.clone(), key, Some(doc)));
                        }
                        outcomes.push(Outcome::Meta(reply));
                    }
                    Job::DeleteMetaMany { keys, collection, reply } => {
                        for key in keys {
                            let op = DiskOp::DelMeta { key: format!("{collection}\u{0}{key}") };
                            superseded += supersedes(&op);
                            ops.push(op);
                            meta_ops.push((collection.clone(), key, None));
                        }
                        outcomes.push(Outcome::Meta(reply));
                    }
                    Job::DeleteMeta { key, collection, reply } => {
                        // Whether the document exists after this group's earlier operations.
                        let existed = match meta_ops.iter().rev().find(|(c, k, _)| *c == collection && *k == key) {
                            Some((_, _, doc)) => doc.is_some(),
                            None => snapshot.meta.get(&collection).is_some_and(|m| m.contains_key(&key)),
                        };
                        let op = DiskOp::DelMeta { key: format!("{collection}\u{0}{key}") };
                        if existed {
                            superseded += supersedes(&op);
                        }
                        ops.push(op);
                        meta_ops.push((collection, key, None));
                        outcomes.push(Outcome::MetaDelete(reply, existed));
                    }
                }
            }
        }
        if let Some(obs) = &observer
            && !published.is_empty()
        {
            observed = obs.prepare(&published);
            for (coll, key, doc) in &observed {
                let bytes = serde_json::to_vec(doc).map_err(io)?;
                ops.push(DiskOp::PutMeta { key: format!("{coll}\u{0}{key}"), bytes });
                meta_ops.push((coll.clone(), key.clone(), Some(doc.clone())));
            }
        }
        disk.log(ops, superseded)?;
        Ok(())
    })();

    if let Err(e) = result {
        tracing::error!(error = %e, "store commit failed; the group's writes are rejected");
        for o in outcomes {
            match o {
                Outcome::Write(reply, _) => drop(reply.send(Err(StoreError::Io(e.to_string())))),
                Outcome::Meta(reply) => drop(reply.send(Err(StoreError::Io(e.to_string())))),
                Outcome::MetaDelete(reply, _) => drop(reply.send(Err(StoreError::Io(e.to_string())))),
            }
        }
        return;
    }
    {
        let mut st = state.write();
        for t in new_tenants {
            st.tenants.entry(t).or_default();
        }
        for ((tenant, id), e) in overlay {
            let ts = st.tenants.entry(tenant).or_default();
            match e {
                Some(e) => ts.insert(e),
                None => ts.remove(&id),
            }
        }
        for (coll, key, doc) in meta_ops {
            let m = st.meta.entry(coll.clone()).or_default();
            match doc {
                Some(d) => {
                    m.insert(key, d);
                }
                None => {
                    remove_meta(m, &coll, &key);
                }
            }
        }
    }
    // The observer acts before the callers hear back, so what it keeps (the history of TRoE)
    // is readable as soon as a write is acknowledged.
    if let Some(obs) = &observer
        && !published.is_empty()
    {
        obs.committed(&published, observed);
    }
    for o in outcomes {
        match o {
            Outcome::Write(reply, res) => drop(reply.send(res)),
            Outcome::Meta(reply) => drop(reply.send(Ok(()))),
            Outcome::MetaDelete(reply, existed) => drop(reply.send(Ok(existed))),
        }
    }
    // Without receivers, sending would only keep the last changes (and the entities they hold)
    // alive in the channel's ring.
    if changes.receiver_count() == 0 {
        return;
    }
    for c in published {
        // Receivers that lag are told by the channel.
        let _ = changes.send(c);
    }
}

/// The entities with a value of the filter's range attribute inside the range, in creation
/// order, when the value index is the cheaper way in.
/// How many candidates an index may offer before a scan in creation order is the cheaper
/// plan. An index plan must collect and sort all its candidates; a scan stops once it has
/// `want` matches, after about `want × scanned / candidates` entities (a counting query cannot
/// stop early, so there the index wins whenever it offers fewer candidates than the scan).
fn index_cap(ts: &TenantState, filter: &EntityFilter, want: usize, count: bool) -> usize {
    let scanned: usize = match &filter.types {
        Some(types) => types.iter().filter_map(|t| ts.by_type.get(t.as_str())).map(BTreeSet::len).sum(),
        None => ts.entities.len(),
    };
    if count || filter.sort.is_some() || filter.sort_key.is_some() {
        return scanned;
    }
    let balance = ((want.max(1) as f64) * (scanned as f64)).sqrt() as usize;
    balance.min(scanned)
}

fn range_candidates<'a>(ts: &'a TenantState, filter: &EntityFilter, cap: usize) -> Option<Vec<&'a OrderKey>> {
    use std::ops::Bound;
    let r = filter.range.as_ref()?;
    // The value index holds numbers (and the numbers of arrays) only, while `q` also compares
    // numeric strings as numbers: while some instance of the attribute is no plain number, the
    // index may miss a match, so a scan decides.
    if ts.columns.get(r.attr.as_str()).is_some_and(|c| c.others > 0) {
        return None;
    }
    let Some(index) = ts.numbers.get(r.attr.as_str()) else { return Some(Vec::new()) };
    let lo = match r.lo {
        Bound::Included(x) => Bound::Included((Num(x), (i64::MIN, Arc::from("")))),
        Bound::Excluded(x) => Bound::Excluded((Num(x), (i64::MAX, Arc::from("\u{10FFFF}")))),
        Bound::Unbounded => Bound::Unbounded,
    };
    let hi = match r.hi {
        Bound::Included(x) => Bound::Included((Num(x), (i64::MAX, Arc::from("\u{10FFFF}")))),
        Bound::Excluded(x) => Bound::Excluded((Num(x), (i64::MIN, Arc::from("")))),
        Bound::Unbounded => Bound::Unbounded,
    };
    // BTreeSet::range panics on an empty or inverted range: answer those directly.
    if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) = (&lo, &hi) {
        let both_included = matches!((&lo, &hi), (Bound::Included(_), Bound::Included(_)));
        if a > b || (a == b && !both_included) {
            return Some(Vec::new());
        }
    }
    // References, not clones: giving up after `cap` candidates must cost little.
    let mut keys = Vec::new();
    for (_, key) in index.range((lo, hi)) {
        keys.push(key);
        if keys.len() > cap {
            return None;
        }
    }
    keys.sort_unstable();
    keys.dedup();
    Some(keys)
}

/// The column of the filter's range attribute, when a scan of it is the cheaper way in: it
/// holds every value of the attribute (no instance is anything but a plain number), and it is
/// not much longer than the scan it replaces (its entries cost far less than reading
/// entities, but those of other types are read for nothing).
fn column_plan<'a>(ts: &'a TenantState, filter: &'a EntityFilter) -> Option<(&'a super::NumRange, &'a Column)> {
    let range = filter.range.as_ref()?;
    let column = ts.columns.get(range.attr.as_str())?;
    if column.others > 0 {
        return None;
    }
    let scanned: usize = match &filter.types {
        Some(types) => types.iter().filter_map(|t| ts.by_type.get(t.as_str())).map(BTreeSet::len).sum(),
        None => ts.entities.len(),
    };
    (column.values.len() <= scanned.saturating_mul(8)).then_some((range, column))
}

/// Answers a near-query from the R-tree when every candidate entry is a Point (a degenerate
/// box): the distance comes from the index entry, so no stored geometry is read. `None` when the
/// filter is not such a query or an entry is not a point; the general plan then applies.
fn near_plan(ts: &TenantState, filter: &EntityFilter, offset: usize, limit: usize, count: bool) -> Option<Page> {
    let near = filter.near.as_ref()?;
    if filter.ids.is_some() || filter.sort.is_some() {
        return None;
    }
    let (_, [x0, y0, x1, y1]) = filter.geo_box.as_ref()?;
    let Some(tree) = ts.geo.get(near.geoproperty.as_str()) else {
        return Some(Page { entities: Vec::new(), total: count.then_some(0) });
    };
    let envelope = AABB::from_corners([*x0, *y0], [*x1, *y1]);
    // Every qualifying instance with its distance; an entity with several instances appears
    // several times, and its nearest instance comes first once sorted.
    let mut cands: Vec<(f64, &OrderKey)> = Vec::with_capacity(256);
    let from = crate::query::geo::DistanceFrom::new(near.point);
    let all_points = each_in_box(tree.root(), &envelope, &mut |g| {
        let (lo, hi) = (g.geom().lower(), g.geom().upper());
        if lo != hi {
            return false;
        }
        let d = from.to(lo);
        if near.max.is_none_or(|m| d <= m) && near.min.is_none_or(|m| d >= m) {
            cands.push((d, &g.data));
        }
        true
    });
    if !all_points {
        return None;
    }
    // Nearest first (ties in creation order). Only what a page needs is ordered, looked up and
    // refined: the next nearest `chunk` candidates are selected (linear time) and sorted, and
    // the chunk doubles when the refinement rejects too many. A count visits them all.
    let by_distance = |a: &(f64, &OrderKey), b: &(f64, &OrderKey)| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1));
    let want = offset.saturating_add(limit);
    let (mut entities, mut matched) = (Vec::with_capacity(limit.min(cands.len())), 0usize);
    let mut seen: HashSet<*const str, foldhash::fast::RandomState> = HashSet::default();
    let mut chunk = if count { cands.len() } else { want.saturating_add(want / 4).max(16) };
    let mut start = 0;
    'chunks: while start < cands.len() {
        let end = start.saturating_add(chunk).min(cands.len());
        let rest = &mut cands[start..];
        if end < start + rest.len() {
            rest.select_nth_unstable_by(end - start - 1, by_distance);
        }
        rest[..end - start].sort_unstable_by(by_distance);
        for (_, key) in &cands[start..end] {
            if !seen.insert(Arc::as_ptr(&key.1)) {
                continue;
            }
            let Some(e) = ts.entities.get(&key.1).filter(|e| filter.matches(e)) else { continue };
            if matched >= offset && matched < want {
                entities.push(e.clone());
            }
            matched += 1;
            if !count && matched >= want {
                break 'chunks;
            }
        }
        start = end;
        chunk = chunk.saturating_mul(2);
    }
    Some(Page { entities, total: count.then_some(matched) })
}

/// Calls `f` on every index entry whose box intersects `env`, until `f` returns false (then
/// returns false). A plain recursive walk: rstar's selection iterator costs about twice as
/// many instructions per entry.
fn each_in_box<'a>(
    node: &'a ParentNode<GeoEntry>,
    env: &AABB<[f64; 2]>,
    f: &mut impl FnMut(&'a GeoEntry) -> bool,
) -> bool {
    let ([x0, y0], [x1, y1]) = (env.lower(), env.upper());
    for child in node.children() {
        match child {
            RTreeNode::Leaf(g) => {
                let ([a0, b0], [a1, b1]) = (g.geom().lower(), g.geom().upper());
                if a0 <= x1 && x0 <= a1 && b0 <= y1 && y0 <= b1 && !f(g) {
                    return false;
                }
            }
            RTreeNode::Parent(p) => {
                if p.envelope().intersects(env) && !each_in_box(p, env, f) {
                    return false;
                }
            }
        }
    }
    true
}

/// The entities whose GeoProperty box intersects the filter's search box, in creation order,
/// when the spatial index is the cheaper way in (fewer candidates than the type index offers).
fn geo_candidates(ts: &TenantState, filter: &EntityFilter, cap: usize) -> Option<Vec<OrderKey>> {
    let (prop, [x0, y0, x1, y1]) = filter.geo_box.as_ref()?;
    let Some(tree) = ts.geo.get(prop.as_str()) else { return Some(Vec::new()) };
    let envelope = AABB::from_corners([*x0, *y0], [*x1, *y1]);
    let mut keys: Vec<OrderKey> = Vec::new();
    for g in tree.locate_in_envelope_intersecting(&envelope) {
        keys.push(g.data.clone());
        if keys.len() > cap {
            return None;
        }
    }
    if filter.sort.is_some() || filter.sort_key.is_some() {
        // The results are sorted afterwards: creation order only breaks ties, and the ids of one
        // entity's index entries share an allocation, so pointers stand in for string compares.
        keys.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| Arc::as_ptr(&a.1).cast::<u8>().cmp(&Arc::as_ptr(&b.1).cast::<u8>()))
        });
        keys.dedup_by(|a, b| a.0 == b.0 && Arc::ptr_eq(&a.1, &b.1));
        return Some(keys);
    }
    keys.sort();
    keys.dedup();
    Some(keys)
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn tenant_exists(&self, tenant: &str) -> Result<bool, StoreError> {
        Ok(self.state.read().tenants.contains_key(tenant))
    }

    async fn tenants(&self) -> Result<Vec<String>, StoreError> {
        let mut t: Vec<String> = self.state.read().tenants.keys().filter(|k| !k.is_empty()).cloned().collect();
        t.sort();
        Ok(t)
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Arc<Entity>>, StoreError> {
        Ok(self.state.read().tenants.get(tenant).and_then(|t| t.entities.get(id).cloned()))
    }

    async fn query(
        &self,
        tenant: &str,
        filter: &EntityFilter,
        offset: usize,
        limit: usize,
        count: bool,
    ) -> Result<Page, StoreError> {
        let st = self.state.read();
        let Some(ts) = st.tenants.get(tenant) else {
            return Ok(Page { entities: Vec::new(), total: count.then_some(0) });
        };
        if let Some(page) = near_plan(ts, filter, offset, limit, count) {
            return Ok(page);
        }
        let mut page = Vec::with_capacity(limit.min(1024));
        let mut matched = 0usize;
        let sorting = filter.sort.is_some() || filter.sort_key.is_some();
        let mut visit = |e: &Arc<Entity>| -> bool {
            // A numeric range is tested on the stored value first: most candidates of a
            // selective `q` fail it without the whole filter being evaluated.
            if filter.range.as_ref().is_some_and(|r| !r.may_hold(e)) || !filter.matches(e) {
                return true;
            }
            if sorting {
                // Sorting needs every match; the page is cut after the sort.
                page.push(e.clone());
                return true;
            }
            if matched >= offset && page.len() < limit {
                page.push(e.clone());
            }
            matched += 1;
            // Keep going only while counting or while the page is not full.
            count || page.len() < limit
        };
        if let Some(ids) = &filter.ids {
            let mut found: Vec<&Arc<Entity>> = ids.iter().filter_map(|i| ts.entities.get(i.as_str())).collect();
            found.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            found.dedup_by(|a, b| a.id == b.id);
            for e in found {
                if !visit(e) {
                    break;
                }
            }
        } else if let Some(keys) = range_candidates(ts, filter, {
            // The column plan reads about want × column / candidates entries, far cheaper each
            // than sorting a candidate: with a column the value index must be twice as selective.
            let cap = index_cap(ts, filter, offset.saturating_add(limit), count);
            if column_plan(ts, filter).is_some() && !count { cap / 2 } else { cap }
        }) {
            for (_, id) in keys {
                if let Some(e) = ts.entities.get(id)
                    && !visit(e)
                {
                    break;
                }
            }
        } else if let Some((range, column)) = column_plan(ts, filter) {
            // Creation order, reading only the entities whose value is inside the range (an
            // entity with several values inside it is visited once).
            let mut last: Option<&OrderKey> = None;
            for (key, x) in &column.values {
                if !range.contains(x.0) || last.is_some_and(|l| l.0 == key.0 && l.1 == key.1) {
                    continue;
                }
                last = Some(key);
                if let Some(e) = ts.entities.get(&key.1)
                    && !visit(e)
                {
                    break;
                }
            }
        } else if let Some(keys) = geo_candidates(ts, filter, index_cap(ts, filter, usize::MAX, true)) {
            for (_, id) in &keys {
                if let Some(e) = ts.entities.get(id)
                    && !visit(e)
                {
                    break;
                }
            }
        } else if let Some(types) = &filter.types {
            let keys: Box<dyn Iterator<Item = &OrderKey>> = if types.len() == 1 {
                match ts.by_type.get(types[0].as_str()) {
                    Some(set) => Box::new(set.iter()),
                    None => Box::new(std::iter::empty()),
                }
            } else {
                let union: BTreeSet<&OrderKey> =
                    types.iter().filter_map(|t| ts.by_type.get(t.as_str())).flatten().collect();
                Box::new(union.into_iter())
            };
            for (_, id) in keys {
                if let Some(e) = ts.entities.get(id)
                    && !visit(e)
                {
                    break;
                }
            }
        } else {
            for (_, id) in &ts.order {
                if let Some(e) = ts.entities.get(id)
                    && !visit(e)
                {
                    break;
                }
            }
        }
        if let Some(key) = &filter.sort_key {
            // Each key once; the stable sort keeps creation order among equal keys.
            let mut keyed: Vec<(f64, Arc<Entity>)> = page.into_iter().filter_map(|e| Some((key(&e)?, e))).collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            let total = keyed.len();
            let entities = keyed.into_iter().skip(offset).take(limit).map(|(_, e)| e).collect();
            return Ok(Page { entities, total: count.then_some(total) });
        }
        if let Some(sort) = &filter.sort {
            page.sort_by(|a, b| sort(a, b));
            let total = page.len();
            let entities = page.into_iter().skip(offset).take(limit).collect();
            return Ok(Page { entities, total: count.then_some(total) });
        }
        Ok(Page { entities: page, total: count.then_some(matched) })
    }

    async fn write(
        &self,
        tenant: &str,
        create_tenant: bool,
        writes: Vec<Write>,
    ) -> Result<Vec<Result<Change, NgsiError>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Write { tenant: tenant.to_owned(), create_tenant, writes, reply }, rx).await
    }

    async fn catalogue(&self, tenant: &str) -> Result<Catalogue, StoreError> {
        let st = self.state.read();
        let mut cat = Catalogue::default();
        let Some(ts) = st.tenants.get(tenant) else { return Ok(cat) };
        for (t, (n, attrs)) in &ts.counters.types {
            let stat = TypeStat {
                entities: *n,
                attrs: attrs.iter().map(|(a, kinds)| (a.to_string(), kinds_of(kinds).collect())).collect(),
            };
            for a in attrs.keys() {
                cat.attrs.entry(a.to_string()).or_insert_with(AttrStat::default).types.insert(t.to_string());
            }
            cat.types.insert(t.to_string(), stat);
        }
        for (a, (n, kinds)) in &ts.counters.attrs {
            let stat = cat.attrs.entry(a.to_string()).or_default();
            stat.entities = *n;
            stat.kinds = kinds_of(kinds).collect();
        }
        Ok(cat)
    }

    async fn put_meta(&self, collection: &str, key: &str, doc: Value) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        // One document is a batch of one.
        let docs = vec![(key.to_owned(), doc)];
        self.submit(Job::PutMetaMany { docs, collection: collection.to_owned(), reply }, rx).await
    }

    async fn delete_meta(&self, collection: &str, key: &str) -> Result<bool, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::DeleteMeta { key: key.to_owned(), collection: collection.to_owned(), reply }, rx).await
    }

    async fn get_meta(&self, collection: &str, key: &str) -> Result<Option<Value>, StoreError> {
        Ok(self.state.read().meta.get(collection).and_then(|m| m.get(key).cloned()))
    }

    async fn list_meta(&self, collection: &str) -> Result<Vec<(String, Value)>, StoreError> {
        Ok(self
            .state
            .read()
            .meta
            .get(collection)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }

    async fn put_meta_many(&self, collection: &str, docs: Vec<(String, Value)>) -> Result<(), StoreError> {
        if docs.is_empty() {
            return Ok(());
        }
        let (reply, rx) = oneshot::channel();
        self.submit(Job::PutMetaMany { docs, collection: collection.to_owned(), reply }, rx).await
    }

    async fn delete_meta_many(&self, collection: &str, keys: Vec<String>) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let (reply, rx) = oneshot::channel();
        self.submit(Job::DeleteMetaMany { keys, collection: collection.to_owned(), reply }, rx).await
    }

    fn set_observer(&self, observer: Arc<dyn ChangeObserver>) {
        self.state.write().observer = Some(observer);
    }

    fn changes(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonld::CORE;
    use crate::model::parse::{Purpose, parse_entity};
    use proptest::prelude::*;

    fn located(i: usize, lon: f64, lat: f64, ty: &str) -> Entity {
        let v = serde_json::json!({"id": format!("urn:p:{i}"), "type": ty,
            "location": {"type": "Point", "coordinates": [lon, lat]}});
        let input = parse_entity(&v, &CORE, Purpose::Create, i as i64).unwrap();
        input.into_entity(format!("urn:p:{i}"), i as i64)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]
        /// The spatial-index plan returns exactly what a full scan with the same predicate returns.
        #[test]
        fn spatial_index_plan_equals_full_scan(
            points in proptest::collection::vec((-20.0f64..20.0, -20.0f64..20.0, 0usize..3), 1..60),
            bx in (-25.0f64..25.0, -25.0f64..25.0, 0.0f64..30.0, 0.0f64..30.0),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let store = EmbeddedStore::open(dir.path()).unwrap();
                let writes = points.iter().enumerate().map(|(i, (lon, lat, t))| {
                    let e = located(i, *lon, *lat, ["A", "B", "C"][*t]);
                    Write::new(e.id.to_string(), move |_| Ok(Mutation::Put(e.clone())))
                }).collect();
                store.write("", false, writes).await.unwrap();
                let (x0, y0) = (bx.0, bx.1);
                let (x1, y1) = (bx.0 + bx.2, bx.1 + bx.3);
                let loc = "https://uri.etsi.org/ngsi-ld/location".to_owned();
                let inside: crate::store::Predicate = Arc::new(move |e: &Entity| {
                    e.attrs.get("https://uri.etsi.org/ngsi-ld/location").is_some_and(|l| {
                        let v = l[0].value();
                        let c = &v["coordinates"];
                        let (x, y) = (c[0].as_f64().unwrap(), c[1].as_f64().unwrap());
                        x >= x0 && x <= x1 && y >= y0 && y <= y1
                    })
                });
                let types = Some(vec![CORE.expand("A"), CORE.expand("B")]);
                let scan = EntityFilter { predicate: Some(inside.clone()), types: types.clone(), ..Default::default() };
                let indexed = EntityFilter { predicate: Some(inside), types, geo_box: Some((loc, [x0, y0, x1, y1])), ..Default::default() };
                let a = store.query("", &scan, 0, 1000, true).await.unwrap();
                let b = store.query("", &indexed, 0, 1000, true).await.unwrap();
                let ids = |p: &Page| p.entities.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
                assert_eq!(ids(&a), ids(&b));
                assert_eq!(a.total, b.total);
            });
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]
        /// The value-index plan returns exactly what a full scan with the same q returns.
        #[test]
        fn value_index_plan_equals_full_scan(
            values in proptest::collection::vec(proptest::option::of(-50i64..50), 1..60),
            op in 0usize..6,
            a in -60i64..60,
            b in -60i64..60,
            arrays in any::<bool>(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let store = EmbeddedStore::open(dir.path()).unwrap();
                let writes = values.iter().enumerate().map(|(i, v)| {
                    let mut body = serde_json::json!({"id": format!("urn:n:{i}"), "type": "T"});
                    if let Some(v) = v {
                        // Some values are arrays (q matches if any element matches) or numeric
                        // strings (q compares them as numbers). Without them every value is a
                        // plain number, so the column plan applies.
                        body["speed"] = if arrays && i % 5 == 0 {
                            serde_json::json!([v, v + 100])
                        } else if arrays && i % 7 == 0 {
                            serde_json::json!(v.to_string())
                        } else {
                            serde_json::json!(v)
                        };
                    }
                    let e = parse_entity(&body, &CORE, Purpose::Create, i as i64).unwrap().into_entity(format!("urn:n:{i}"), i as i64);
                    Write::new(e.id.to_string(), move |_| Ok(Mutation::Put(e.clone())))
                }).collect();
                store.write("", false, writes).await.unwrap();
                // Then every third entity is deleted and every third one's speed moves (or goes
                // away), so the indexes follow updates and deletions too.
                let changes = values.iter().enumerate().filter(|(i, _)| i % 3 != 2).map(|(i, v)| {
                    let id = format!("urn:n:{i}");
                    if i % 3 == 0 {
                        return Write::new(id, |_| Ok(Mutation::Delete));
                    }
                    let mut body = serde_json::json!({"id": id.clone(), "type": "T"});
                    if let Some(v) = v.filter(|v| v % 4 != 0) {
                        body["speed"] = serde_json::json!(v + 7);
                    }
                    let e = parse_entity(&body, &CORE, Purpose::Create, i as i64).unwrap().into_entity(id.clone(), i as i64);
                    Write::new(id, move |_| Ok(Mutation::Put(e.clone())))
                }).collect();
                store.write("", false, changes).await.unwrap();
                let src = match op {
                    0 => format!("speed>{a}"),
                    1 => format!("speed>={a}"),
                    2 => format!("speed<{a}"),
                    3 => format!("speed<={a}"),
                    4 => format!("speed=={a}"),
                    _ => format!("speed=={a}..{b}"),
                };
                let q = crate::query::q::compile(&src, &CORE).unwrap();
                let range = q.numeric_range();
                assert!(range.is_some(), "{src} implies a range");
                let q = Arc::new(q);
                let qq = q.clone();
                let scan = EntityFilter { predicate: Some(Arc::new(move |e: &Entity| qq.matches(e))), ..Default::default() };
                let indexed = EntityFilter { predicate: Some(Arc::new(move |e: &Entity| q.matches(e))), range, ..Default::default() };
                if !arrays {
                    let st = store.state.read();
                    let ts = st.tenants.get("").unwrap();
                    let holders = ts.entities.values().filter(|e| e.attrs.contains_key(CORE.expand("speed").as_str())).count();
                    assert_eq!(column_plan(ts, &indexed).is_some(), holders > 0);
                }
                // Counting takes the value index; short pages of many candidates take the column
                // (or, with arrays, the scan with the range pre-test).
                for (offset, limit, count) in [(0, 1000, true), (0, 2, false), (1, 3, false), (5, 1, false)] {
                    let x = store.query("", &scan, offset, limit, count).await.unwrap();
                    let y = store.query("", &indexed, offset, limit, count).await.unwrap();
                    let ids = |p: &Page| p.entities.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
                    assert_eq!(ids(&x), ids(&y), "{} {} {}", src, offset, limit);
                    assert_eq!(x.total, y.total);
                }
            });
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]
        /// The range test a scan makes before the predicate never refuses an entity the query
        /// matches, whatever form the value takes (number, numeric string, array, relationship).
        #[test]
        fn range_precheck_never_refuses_a_match(
            v in -60i64..60,
            form in 0usize..6,
            op in 0usize..6,
            a in -60i64..60,
            b in -60i64..60,
        ) {
            let speed = match form {
                0 => serde_json::json!(v),
                1 => serde_json::json!(v as f64 + 0.5),
                2 => serde_json::json!(v.to_string()),
                3 => serde_json::json!([v, v + 100]),
                4 => serde_json::json!({"type": "Relationship", "object": format!("urn:x:{v}")}),
                _ => serde_json::json!({"type": "Property", "value": {"@type": "Number", "@value": v}}),
            };
            let body = serde_json::json!({"id": "urn:n:1", "type": "T", "speed": speed});
            let e = parse_entity(&body, &CORE, Purpose::Create, 1).unwrap().into_entity("urn:n:1".into(), 1);
            let src = match op {
                0 => format!("speed>{a}"),
                1 => format!("speed>={a}"),
                2 => format!("speed<{a}"),
                3 => format!("speed<={a}"),
                4 => format!("speed=={a}"),
                _ => format!("speed=={a}..{b}"),
            };
            let q = crate::query::q::compile(&src, &CORE).unwrap();
            let range = q.numeric_range().unwrap();
            prop_assert!(!q.matches(&e) || range.may_hold(&e), "{} on {}", src, body);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]
        /// A near-query answered from the index entries gives the same entities in the same
        /// order as the general plan (predicate plus distance key).
        #[test]
        fn near_plan_equals_general_plan(
            points in proptest::collection::vec((-1.0f64..1.0, -1.0f64..1.0, 0usize..3), 1..80),
            at in (-1.0f64..1.0, -1.0f64..1.0),
            max in 1_000.0f64..150_000.0,
            min in proptest::option::of(0.0f64..50_000.0),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let store = EmbeddedStore::open(dir.path()).unwrap();
                let writes = points.iter().enumerate().map(|(i, (lon, lat, t))| {
                    // Entities of type B are refused by the query, so pages need more candidates.
                    let e = located(i, *lon, *lat, ["A", "B", "A"][*t]);
                    Write::new(e.id.to_string(), move |_| Ok(Mutation::Put(e.clone())))
                }).collect();
                store.write("", false, writes).await.unwrap();
                let rel = match min {
                    Some(m) => format!("near;maxDistance=={max};minDistance=={}", m.min(max)),
                    None => format!("near;maxDistance=={max}"),
                };
                let coords = format!("[{},{}]", at.0, at.1);
                let geo = crate::query::geo::parse(&rel, "Point", &coords, None).unwrap().resolve(&CORE);
                let typed = crate::query::Selector {
                    types: Some(crate::query::types::TypeSel::Is(CORE.expand("A"))),
                    ..Default::default()
                };
                let query = crate::query::EntityQuery { geo: Some(geo), selectors: vec![typed], ..Default::default() };
                let fast = query.into_filter();
                assert!(fast.near.is_some());
                let general = EntityFilter { near: None, geo_box: None, ..fast.clone() };
                {
                    // Points are answered from the index entries, not by the general plan.
                    let st = store.state.read();
                    let ts = st.tenants.get("").unwrap();
                    assert!(near_plan(ts, &fast, 0, 5, false).is_some());
                }
                for (offset, limit, count) in [(0, 1000, true), (0, 5, false), (3, 4, true), (2, 20, false), (0, 1, false)] {
                    let a = store.query("", &fast, offset, limit, count).await.unwrap();
                    let b = store.query("", &general, offset, limit, count).await.unwrap();
                    let ids = |p: &Page| p.entities.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
                    assert_eq!(ids(&a), ids(&b));
                    assert_eq!(a.total, b.total);
                }
            });
        }
    }

    /// Everything the indexes and counters hold, in a canonical order.
    fn index_snapshot(ts: &TenantState) -> String {
        use std::collections::BTreeMap;
        let key = |k: &OrderKey| (k.0, k.1.to_string());
        let ids: Vec<String> = {
            let mut v: Vec<String> = ts.entities.values().map(|e| e.id.to_string()).collect();
            v.sort();
            v
        };
        let order: Vec<_> = ts.order.iter().map(key).collect();
        let by_type: BTreeMap<_, Vec<_>> =
            ts.by_type.iter().map(|(t, s)| (t.clone(), s.iter().map(key).collect())).collect();
        let geo: BTreeMap<_, Vec<_>> = ts
            .geo
            .iter()
            .map(|(n, tree)| {
                let mut v: Vec<String> = tree.iter().map(|g| format!("{:?} {:?}", g.geom(), key(&g.data))).collect();
                v.sort();
                (n.to_string(), v)
            })
            .collect();
        let numbers: BTreeMap<_, Vec<_>> = ts
            .numbers
            .iter()
            .map(|(n, s)| (n.to_string(), s.iter().map(|(x, k)| (x.0.to_bits(), key(k))).collect()))
            .collect();
        let columns: BTreeMap<_, _> = ts
            .columns
            .iter()
            .map(|(n, c)| {
                (n.to_string(), (c.others, c.values.iter().map(|(k, x)| (key(k), x.0.to_bits())).collect::<Vec<_>>()))
            })
            .collect();
        let types: BTreeMap<_, _> = ts
            .counters
            .types
            .iter()
            .map(|(t, (n, attrs))| {
                (t.clone(), (*n, attrs.iter().map(|(a, k)| (a.to_string(), *k)).collect::<BTreeMap<_, _>>()))
            })
            .collect();
        let attrs: BTreeMap<_, _> = ts.counters.attrs.iter().map(|(a, (n, k))| (a.to_string(), (*n, *k))).collect();
        format!("{ids:?}\n{order:?}\n{by_type:?}\n{geo:?}\n{numbers:?}\n{columns:?}\n{types:?}\n{attrs:?}")
    }

    /// A random attribute instance: numbers, numeric strings, arrays, relationships, points
    /// and polygons, sometimes with a datasetId.
    fn any_attr() -> impl Strategy<Value = serde_json::Value> {
        (0usize..7, -5i64..5, proptest::option::of(0usize..2)).prop_map(|(form, v, ds)| {
            let mut a = match form {
                0 => serde_json::json!({"type": "Property", "value": v}),
                1 => serde_json::json!({"type": "Property", "value": v.to_string()}),
                2 => serde_json::json!({"type": "Property", "value": [v, v + 1]}),
                3 => serde_json::json!({"type": "Relationship", "object": format!("urn:x:{v}")}),
                4 => serde_json::json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [v, v + 1]}}),
                5 => serde_json::json!({"type": "GeoProperty", "value": {"type": "Polygon",
                    "coordinates": [[[v, v], [v + 1, v], [v + 1, v + 1], [v, v]]]}}),
                _ => serde_json::json!({"type": "Property", "value": v, "observedAt": format!("2026-01-0{}T00:00:00.000Z", v.rem_euclid(9) + 1)}),
            };
            if let Some(d) = ds {
                a["datasetId"] = serde_json::json!(format!("urn:ds:{d}"));
            }
            a
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]
        /// Indexes and counters maintained through random puts (values changed, attributes added
        /// and removed, kinds changed, types changed, entities recreated) and deletions equal
        /// those of a state built from scratch with the final entities.
        #[test]
        fn updated_indexes_equal_rebuilt_indexes(
            steps in proptest::collection::vec(
                (0usize..6, proptest::collection::vec((0usize..4, proptest::collection::vec(any_attr(), 1..3)), 0..4), 0usize..8),
                1..40,
            ),
        ) {
            let mut ts = TenantState::default();
            for (i, (slot, attrs, how)) in steps.iter().enumerate() {
                let id = format!("urn:u:{slot}");
                if *how == 0 {
                    ts.remove(&id);
                    continue;
                }
                let current = ts.entities.get(id.as_str()).cloned();
                let ty = if *how == 1 { "B" } else { "A" };
                let mut body = serde_json::json!({"id": id, "type": ty});
                for (name, instances) in attrs {
                    body[["p", "q", "location", "r"][*name]] = serde_json::Value::Array(instances.clone());
                }
                let Ok(input) = parse_entity(&body, &CORE, Purpose::Create, i as i64) else { continue };
                let fresh = input.into_entity(id.clone(), i as i64);
                let e = match (&current, how) {
                    // An update of the stored entity: its id allocation and createdAt are kept.
                    (Some(cur), 2..=5) => {
                        let mut e = Entity::clone(cur);
                        if *how == 5 {
                            e.types = fresh.types.clone();
                        }
                        for (name, list) in fresh.attrs.iter().take(if *how == 3 { 1 } else { 4 }) {
                            e.attrs.insert(name.clone(), list.clone());
                        }
                        if *how == 4 && let Some(first) = e.attrs.keys().next().cloned() {
                            e.attrs.shift_remove(&first);
                        }
                        e.modified_at = i as i64;
                        e
                    }
                    _ => fresh,
                };
                ts.insert(Arc::new(e));
            }
            let mut rebuilt = TenantState::default();
            for e in ts.entities.values() {
                rebuilt.insert(e.clone());
            }
            prop_assert_eq!(index_snapshot(&ts), index_snapshot(&rebuilt));
        }
    }

    #[tokio::test]
    async fn spatial_index_follows_moves_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let loc = "https://uri.etsi.org/ngsi-ld/location".to_owned();
        let boxed = |b: [f64; 4]| EntityFilter { geo_box: Some((loc.clone(), b)), ..Default::default() };
        let put = |e: Entity| vec![Write::new(e.id.to_string(), move |_| Ok(Mutation::Put(e.clone())))];
        store.write("", false, put(located(1, 1.0, 1.0, "A"))).await.unwrap();
        assert_eq!(store.query("", &boxed([0.0, 0.0, 2.0, 2.0]), 0, 10, true).await.unwrap().total, Some(1));
        store.write("", false, put(located(1, 10.0, 10.0, "A"))).await.unwrap();
        assert_eq!(store.query("", &boxed([0.0, 0.0, 2.0, 2.0]), 0, 10, true).await.unwrap().total, Some(0));
        assert_eq!(store.query("", &boxed([9.0, 9.0, 11.0, 11.0]), 0, 10, true).await.unwrap().total, Some(1));
        store.write("", false, vec![Write::new("urn:p:1", |_| Ok(Mutation::Delete))]).await.unwrap();
        assert_eq!(store.query("", &boxed([9.0, 9.0, 11.0, 11.0]), 0, 10, true).await.unwrap().total, Some(0));
    }

    #[tokio::test]
    async fn embedded_store_passes_the_shared_suite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        crate::store::suite::run(move || {
            let s: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&path).unwrap());
            s
        })
        .await;
    }

    /// Sizes small enough that segments rotate and compactions run within a test.
    fn tiny() -> LogConfig {
        LogConfig { first_segment: 4096, max_segment: 16384, compact_min: 8192 }
    }

    #[tokio::test]
    async fn embedded_store_passes_the_shared_suite_while_compacting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        crate::store::suite::run(move || {
            let s: Arc<dyn Store> = Arc::new(EmbeddedStore::open_with(&path, tiny()).unwrap());
            s
        })
        .await;
    }

    /// Every entity, tenant and document, as a comparable listing.
    async fn dump(store: &EmbeddedStore) -> (Vec<String>, Vec<(String, Value)>) {
        let mut entities = Vec::new();
        for t in store.tenants().await.unwrap() {
            let page = store.query(&t, &EntityFilter::default(), 0, usize::MAX, true).await.unwrap();
            entities
                .extend(page.entities.iter().map(|e| format!("{t}/{}", serde_json::to_string(e.as_ref()).unwrap())));
        }
        entities.sort();
        (entities, store.list_meta("subs").await.unwrap())
    }

    #[tokio::test]
    async fn compaction_keeps_exactly_the_live_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_with(dir.path(), tiny()).unwrap();
        for round in 0..40i64 {
            let tenant = if round % 2 == 0 { "" } else { "t1" };
            let writes = (0..20)
                .map(|i| {
                    let e = located(i, round as f64, 1.0, "A");
                    match (round + i as i64) % 5 {
                        0 => Write::new(e.id.to_string(), |_| Ok(Mutation::Delete)),
                        _ => Write::new(e.id.to_string(), move |_| Ok(Mutation::Put(e.clone()))),
                    }
                })
                .collect();
            store.write(tenant, true, writes).await.unwrap();
            store.put_meta("subs", &format!("s{}", round % 7), serde_json::json!({ "round": round })).await.unwrap();
            if round % 3 == 0 {
                store.delete_meta("subs", &format!("s{}", (round + 1) % 7)).await.unwrap();
            }
        }
        let before = dump(&store).await;
        drop(store);
        let snapshots = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".snap"))
            .count();
        assert_eq!(snapshots, 1, "the log was compacted");
        let store = EmbeddedStore::open_with(dir.path(), tiny()).unwrap();
        assert_eq!(dump(&store).await, before);
        assert!(store.tenant_exists("t1").await.unwrap());
    }

    #[tokio::test]
    async fn a_data_directory_of_an_earlier_version_is_converted() {
        let dir = tempfile::tempdir().unwrap();
        let e = located(7, 1.0, 2.0, "A");
        {
            // The earlier layout: a redb checkpoint and a write-ahead log after it.
            let db = redb::Database::create(dir.path().join("orbis.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(ENTITIES).unwrap();
                t.insert("t1\u{0}urn:p:7", serde_json::to_vec(&e).unwrap().as_slice()).unwrap();
                txn.open_table(TENANTS).unwrap().insert("t1", &[][..]).unwrap();
                txn.open_table(META).unwrap().insert("subs\u{0}a", &b"{\"x\":1}"[..]).unwrap();
            }
            txn.commit().unwrap();
            let mut wal = Vec::new();
            DiskOp::PutMeta { key: "subs\u{0}b".into(), bytes: b"2".to_vec() }.encode_for_test(&mut wal);
            std::fs::write(dir.path().join("orbis.wal"), wal).unwrap();
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.get("t1", "urn:p:7").await.unwrap().as_deref(), Some(&e));
        let docs = store.list_meta("subs").await.unwrap();
        assert_eq!(docs, vec![("a".to_owned(), serde_json::json!({"x": 1})), ("b".to_owned(), serde_json::json!(2))]);
        assert!(!dir.path().join("orbis.redb").exists() && !dir.path().join("orbis.wal").exists());
        drop(store);
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.get("t1", "urn:p:7").await.unwrap().as_deref(), Some(&e));
        assert_eq!(store.list_meta("subs").await.unwrap().len(), 2);
    }
}
