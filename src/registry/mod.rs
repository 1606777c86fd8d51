//! Context source registrations (GS CIM 009 §5.9 registration, §5.10 discovery).
//!
//! A registration tells the broker that another NGSI-LD endpoint (a context source: a broker,
//! an IoT agent) holds or serves some entities and attributes. The broker keeps every
//! registration in memory, per tenant, compiled for lookups ([`registration::CompiledRegistration`])
//! and indexed by the entity types it names, and persists it in the store's meta collection
//! `registrations` (loaded at start, so registrations survive a restart). Two consumers read
//! it: the registration API (`ops/*_registration*.rs`) and the forwarding layer, which asks
//! [`Registrations::matching`] which sources to distribute an operation to.
//!
//! Every change (create, update, delete) is told to the notifier once it is persisted, which
//! notifies the context source registration subscriptions it concerns
//! ([`crate::notify::Notifier::registration_changed`]); registrations are not entities, so the
//! store's change observer does not see them.
//!
//! Creating or updating an exclusive or redirect registration is checked against the other
//! registrations and the broker's own entities (§4.3.6.3, §5.9.2.4, §5.9.3.4); those checks and
//! every write run one at a time, so two concurrent registrations cannot both pass them.

pub mod registration;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::RwLock;
use serde_json::{Map, Value, json};

use crate::error::{ErrorKind, NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::parse::is_uri;
use crate::model::{now_millis, parse_datetime};
use crate::store::Store;
use registration::{CompiledRegistration, Discovery, Mode, Op, RegDoc};

/// The store collection holding registrations (key: tenant NUL id).
pub const REGISTRATIONS: &str = "registrations";

/// How often delivery statistics recorded by the forwarding layer are written to the store.
const STATS_FLUSH: Duration = Duration::from_secs(2);

/// A registration known to the registry.
struct Entry {
    doc: RegDoc,
    compiled: Arc<CompiledRegistration>,
    /// Whether its statistics changed since they were last persisted.
    dirty: bool,
}

/// One tenant's registrations, indexed by the entity types they name.
#[derive(Default)]
struct TenantRegs {
    regs: HashMap<String, Entry>,
    /// Registration ids by the expanded entity types their information names.
    by_type: HashMap<String, BTreeSet<String>>,
    /// Registrations with an information item about any entity (no `entities`).
    untyped: BTreeSet<String>,
}

impl TenantRegs {
    fn insert(&mut self, e: Entry) {
        let id = e.doc.id.clone();
        self.remove(&id);
        for t in e.compiled.types() {
            self.by_type.entry(t.clone()).or_default().insert(id.clone());
        }
        if e.compiled.untyped() {
            self.untyped.insert(id.clone());
        }
        self.regs.insert(id, e);
    }

    fn remove(&mut self, id: &str) -> Option<Entry> {
        let old = self.regs.remove(id)?;
        for t in old.compiled.types() {
            if let Some(set) = self.by_type.get_mut(t) {
                set.remove(id);
                if set.is_empty() {
                    self.by_type.remove(t);
                }
            }
        }
        self.untyped.remove(id);
        Some(old)
    }

    /// The registrations that may name an entity of one of `types` (all when `types` is empty).
    fn candidates<'a>(&'a self, types: &[String]) -> Box<dyn Iterator<Item = &'a Entry> + 'a> {
        if types.is_empty() {
            return Box::new(self.regs.values());
        }
        let mut ids: BTreeSet<&str> = self.untyped.iter().map(String::as_str).collect();
        for t in types {
            if let Some(set) = self.by_type.get(t) {
                ids.extend(set.iter().map(String::as_str));
            }
        }
        Box::new(ids.into_iter().filter_map(|id| self.regs.get(id)))
    }
}

fn conflict(detail: String) -> NgsiError {
    // GS CIM 009 §5.9.2.4 calls this error Conflict; its HTTP binding (Table 6.3.2-1) answers
    // 409, the status of AlreadyExists, which has the problem type.
    NgsiError::new(ErrorKind::AlreadyExists, format!("Conflict: {detail}"))
}

fn not_found(id: &str) -> NgsiError {
    NgsiError::not_found(format!("registration {id} not found"))
}

/// The registry: every tenant's registrations, persisted, with lookups for discovery and
/// forwarding.
pub struct Registrations {
    store: Arc<dyn Store>,
    tenants: RwLock<HashMap<String, TenantRegs>>,
    /// Serialises writes, so conflict checks see every registration written before.
    writes: tokio::sync::Mutex<()>,
    /// The next [`CompiledRegistration::seq`].
    next_seq: AtomicU64,
    /// Told of every change, for context source registration subscriptions.
    notifier: OnceLock<Arc<crate::notify::Notifier>>,
}

/// A registration as stored and as compiled.
pub type Snapshot = (RegDoc, Arc<CompiledRegistration>);

fn key(tenant: &str, id: &str) -> String {
    format!("{tenant}\u{0}{id}")
}

impl Registrations {
    /// Loads the stored registrations (one that no longer compiles is logged and skipped) and
    /// starts the task that persists delivery statistics. Must run inside a tokio runtime.
    pub async fn start(store: Arc<dyn Store>) -> Result<Arc<Registrations>, String> {
        let r = Arc::new(Registrations {
            store: store.clone(),
            tenants: RwLock::new(HashMap::new()),
            writes: tokio::sync::Mutex::new(()),
            next_seq: AtomicU64::new(0),
            notifier: OnceLock::new(),
        });
        for (k, v) in store.list_meta(REGISTRATIONS).await.map_err(|e| e.to_string())? {
            let doc: RegDoc = match serde_json::from_value(v) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(key = %k, error = %e, "a stored registration is unreadable; skipped");
                    continue;
                }
            };
            match registration::compile(&doc.id, &doc.tenant, &doc.body, doc.context.clone(), doc.created_at) {
                Ok(c) => r.install(doc, c, false),
                Err(e) => tracing::error!(id = %doc.id, error = %e, "a stored registration does not compile; skipped"),
            }
        }
        let weak: Weak<Registrations> = Arc::downgrade(&r);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(STATS_FLUSH).await;
                let Some(r) = weak.upgrade() else { break };
                if let Err(e) = r.flush_stats().await {
                    tracing::warn!(error = %e, "persisting registration statistics failed");
                }
            }
        });
        Ok(r)
    }

    /// Installs a registration; one it replaces hands over its statistics (the in-memory ones
    /// are the newest), whether they still need persisting, and its place in the order.
    fn install(&self, mut doc: RegDoc, mut compiled: CompiledRegistration, mut dirty: bool) {
        let mut tenants = self.tenants.write();
        let t = tenants.entry(doc.tenant.clone()).or_default();
        match t.regs.get(&doc.id) {
            Some(old) => {
                doc.stats = old.doc.stats.clone();
                dirty |= old.dirty;
                compiled.seq = old.compiled.seq;
            }
            None => compiled.seq = self.next_seq.fetch_add(1, Ordering::Relaxed),
        }
        t.insert(Entry { doc, compiled: Arc::new(compiled), dirty });
    }

    async fn persist(&self, doc: &RegDoc) -> NgsiResult<()> {
        let v = serde_json::to_value(doc).map_err(|e| NgsiError::internal(e.to_string()))?;
        self.store.put_meta(REGISTRATIONS, &key(&doc.tenant, &doc.id), v).await?;
        Ok(())
    }

    /// Connects the notifier (once, at start-up): from then on it is told of every change.
    pub fn set_notifier(&self, n: Arc<crate::notify::Notifier>) {
        let _ = self.notifier.set(n);
    }

    async fn changed(&self, tenant: &str, old: Option<&Snapshot>, new: Option<&Snapshot>) {
        if let Some(n) = self.notifier.get() {
            n.registration_changed(tenant, old, new).await;
        }
    }

    fn snapshot(&self, tenant: &str, id: &str) -> Option<Snapshot> {
        self.tenants.read().get(tenant)?.regs.get(id).map(|e| (e.doc.clone(), e.compiled.clone()))
    }

    /// A tenant's registrations, oldest first.
    pub fn all(&self, tenant: &str) -> Vec<Snapshot> {
        let tenants = self.tenants.read();
        let Some(t) = tenants.get(tenant) else { return Vec::new() };
        let mut all: Vec<&Entry> = t.regs.values().collect();
        all.sort_by_key(|e| (e.compiled.created_at, e.compiled.seq));
        all.into_iter().map(|e| (e.doc.clone(), e.compiled.clone())).collect()
    }

    fn doc(&self, tenant: &str, id: &str) -> Option<RegDoc> {
        self.tenants.read().get(tenant)?.regs.get(id).map(|e| e.doc.clone())
    }

    /// Creates a registration from a client body (without `@context`), with the request's
    /// context; returns its id (generated when the body has none).
    pub async fn create(&self, tenant: &str, mut body: Map<String, Value>, ctx: Arc<Context>) -> NgsiResult<String> {
        let id = match body.get("id") {
            Some(Value::String(id)) if is_uri(id) => id.clone(),
            Some(_) => return Err(NgsiError::bad_data("the registration id must be a URI")),
            None => format!("urn:ngsi-ld:ContextSourceRegistration:{}", uuid::Uuid::new_v4()),
        };
        body.insert("id".into(), json!(id));
        let body = registration::normalize(body, &ctx)?;
        let now = now_millis();
        check_future(&body, now)?;
        let doc = RegDoc {
            id: id.clone(),
            tenant: tenant.to_owned(),
            body,
            context: ctx.original.clone(),
            created_at: now,
            modified_at: now,
            stats: Default::default(),
        };
        let compiled = registration::compile(&id, tenant, &doc.body, doc.context.clone(), now)?;
        let _w = self.writes.lock().await;
        if self.doc(tenant, &id).is_some() {
            return Err(NgsiError::new(ErrorKind::AlreadyExists, format!("registration {id} already exists")));
        }
        self.check_conflicts(tenant, &compiled).await?;
        self.check_held(tenant, &compiled).await?;
        self.persist(&doc).await?;
        self.install(doc, compiled, false);
        let new = self.snapshot(tenant, &id);
        self.changed(tenant, None, new.as_ref()).await;
        Ok(id)
    }

    /// Updates a registration with a fragment (§5.9.3): members given replace the stored ones
    /// whole, `null` removes one; the result must still be a valid registration.
    pub async fn update(&self, tenant: &str, id: &str, patch: Map<String, Value>, ctx: Arc<Context>) -> NgsiResult<()> {
        let _w = self.writes.lock().await;
        let mut doc = self.doc(tenant, id).ok_or_else(|| not_found(id))?;
        if patch.is_empty() {
            return Err(NgsiError::bad_data("an empty fragment updates nothing"));
        }
        if let Some(v) = patch.get("id")
            && v.as_str() != Some(id)
        {
            return Err(NgsiError::bad_data("the id of a registration cannot change"));
        }
        for (k, v) in registration::normalize(patch, &ctx)? {
            if v.is_null() {
                doc.body.remove(&k);
            } else {
                doc.body.insert(k, v);
            }
        }
        let now = now_millis();
        check_future(&doc.body, now)?;
        doc.modified_at = now;
        let compiled = registration::compile(id, tenant, &doc.body, doc.context.clone(), doc.created_at)?;
        self.check_conflicts(tenant, &compiled).await?;
        self.check_held(tenant, &compiled).await?;
        // Statistics may have moved on since the document was read.
        let old = self.snapshot(tenant, id);
        if let Some((d, _)) = &old {
            doc.stats = d.stats.clone();
        }
        self.persist(&doc).await?;
        self.install(doc, compiled, false);
        let new = self.snapshot(tenant, id);
        self.changed(tenant, old.as_ref(), new.as_ref()).await;
        Ok(())
    }

    /// Deletes a registration (§5.9.4).
    pub async fn delete(&self, tenant: &str, id: &str) -> NgsiResult<()> {
        let _w = self.writes.lock().await;
        let Some(old) = self.snapshot(tenant, id) else {
            return Err(not_found(id));
        };
        self.store.delete_meta(REGISTRATIONS, &key(tenant, id)).await?;
        {
            let mut tenants = self.tenants.write();
            if let Some(t) = tenants.get_mut(tenant) {
                t.remove(id);
                if t.regs.is_empty() {
                    tenants.remove(tenant);
                }
            }
        }
        self.changed(tenant, Some(&old), None).await;
        Ok(())
    }

    /// A registration as clients see it (§5.10.1), names compacted with `ctx`.
    pub fn get(&self, tenant: &str, id: &str, ctx: &Context, sys_attrs: bool) -> NgsiResult<Value> {
        let tenants = self.tenants.read();
        let e = tenants.get(tenant).and_then(|t| t.regs.get(id)).ok_or_else(|| not_found(id))?;
        Ok(registration::render(&e.doc, &e.compiled, ctx, sys_attrs))
    }

    /// The registrations of a tenant answering a discovery query (§5.10.2), oldest first: one
    /// page and the total.
    pub fn query(
        &self,
        tenant: &str,
        d: &Discovery,
        ctx: &Context,
        offset: usize,
        limit: usize,
        sys_attrs: bool,
    ) -> (Vec<Value>, usize) {
        let tenants = self.tenants.read();
        let Some(t) = tenants.get(tenant) else {
            return (Vec::new(), 0);
        };
        let now = now_millis();
        let mut all: Vec<&Entry> = t.regs.values().filter(|e| d.matches(&e.compiled, now)).collect();
        all.sort_by_key(|e| (e.compiled.created_at, e.compiled.seq));
        let page = all
            .iter()
            .skip(offset)
            .take(limit)
            .map(|e| registration::render(&e.doc, &e.compiled, ctx, sys_attrs))
            .collect();
        (page, all.len())
    }

    /// The registrations the forwarding layer distributes an operation to.
    ///
    /// Returns the live registrations of `tenant` (not expired, and with no
    /// `observationInterval` that has ended) that serve `op` (their `operations`, groups
    /// expanded; `federationOps` by default) and have an information item that
    ///
    /// - may describe the entity: no `entities` (any entity), or an EntityInfo whose `id`
    ///   equals `entity_id`, or whose `idPattern` matches it, or which has neither; an EntityInfo
    ///   with an id or a pattern matches any `entity_id: None` (a query across entities, where the
    ///   id is not known yet); and whose type is one of `types` (expanded; an empty slice means
    ///   the type is unknown, as for Retrieve Entity by id, and matches any type);
    /// - and covers the attributes: `attrs: None` (all attributes, no projection) matches every
    ///   item; `Some(names)` (expanded) matches an item naming any of them in `propertyNames`
    ///   or `relationshipNames`, or naming no attribute at all (which stands for every attribute).
    ///
    /// The mode is not a filter: the result is ordered exclusive, redirect, inclusive, auxiliary
    /// (then oldest first), so the caller sees first the registrations that take data away from
    /// the broker. Use [`CompiledRegistration::attributes_for`] to learn which attributes of the
    /// entity a registration provides, `mode`, `endpoint`, `context_source_info`,
    /// `remote_tenant` and `management` to build the forwarded request, and
    /// [`Registrations::record_outcome`] to report how it went. With no registration in the
    /// tenant this is a hash lookup, so calling it on every request is cheap.
    pub fn matching(
        &self,
        tenant: &str,
        entity_id: Option<&str>,
        types: &[String],
        attrs: Option<&[String]>,
        op: Op,
    ) -> Vec<Arc<CompiledRegistration>> {
        let tenants = self.tenants.read();
        let Some(t) = tenants.get(tenant) else {
            return Vec::new();
        };
        let now = now_millis();
        let mut out: Vec<Arc<CompiledRegistration>> = t
            .candidates(types)
            .filter(|e| e.compiled.current(now) && e.compiled.serves(op, entity_id, types, attrs))
            .map(|e| e.compiled.clone())
            .collect();
        out.sort_by_key(|c| (c.mode, c.created_at, c.seq));
        out
    }

    /// The live exclusive and redirect registrations about this entity that do not serve `op`:
    /// the parts of the entity they hold cannot be reached by the operation (a Conflict part,
    /// GS CIM 009 §5.6.6.4).
    pub fn proxied_without(
        &self,
        tenant: &str,
        entity_id: &str,
        types: &[String],
        op: Op,
    ) -> Vec<Arc<CompiledRegistration>> {
        let tenants = self.tenants.read();
        let Some(t) = tenants.get(tenant) else {
            return Vec::new();
        };
        let now = now_millis();
        t.candidates(types)
            .filter(|e| {
                let c = &e.compiled;
                c.current(now)
                    && c.mode.is_proxied()
                    && !c.operations.contains(op)
                    && c.information.iter().any(|i| i.matches_entity(Some(entity_id), types))
            })
            .map(|e| e.compiled.clone())
            .collect()
    }

    /// The Conflict of an operation that cannot reach the part of `entity_id` a registration
    /// from [`Registrations::proxied_without`] holds.
    pub fn unserved(reg: &CompiledRegistration, entity_id: &str, op: Op) -> NgsiError {
        NgsiError::new(
            ErrorKind::Conflict,
            format!(
                "registration {} ({}) holds part of {entity_id} and does not serve {}",
                reg.id,
                reg.mode.name(),
                op.name()
            ),
        )
    }

    /// Whether a tenant has any registration (a fast check before a lookup).
    pub fn has_any(&self, tenant: &str) -> bool {
        self.tenants.read().get(tenant).is_some_and(|t| !t.regs.is_empty())
    }

    /// The number of registrations (all tenants).
    pub fn count(&self) -> usize {
        self.tenants.read().values().map(|t| t.regs.len()).sum()
    }

    /// Records the outcome of one distributed operation sent to a registered source: counts it
    /// in `timesSent` (and `timesFailed`), sets `lastSuccess` or `lastFailure` and the `status`
    /// shown on GET. Persisted within a few seconds.
    pub fn record_outcome(&self, tenant: &str, id: &str, success: bool) {
        let now = now_millis();
        let mut tenants = self.tenants.write();
        let Some(e) = tenants.get_mut(tenant).and_then(|t| t.regs.get_mut(id)) else {
            return;
        };
        let s = &mut e.doc.stats;
        s.times_sent += 1;
        if success {
            s.last_success = Some(now);
            s.consecutive_errors = 0;
        } else {
            s.times_failed += 1;
            s.last_failure = Some(now);
            s.consecutive_errors += 1;
        }
        e.dirty = true;
    }

    /// Persists the statistics that changed since the last call, in one commit.
    pub async fn flush_stats(&self) -> NgsiResult<()> {
        let docs: Vec<RegDoc> = {
            let mut tenants = self.tenants.write();
            tenants
                .values_mut()
                .flat_map(|t| t.regs.values_mut())
                .filter(|e| e.dirty)
                .map(|e| {
                    e.dirty = false;
                    e.doc.clone()
                })
                .collect()
        };
        if docs.is_empty() {
            return Ok(());
        }
        let _w = self.writes.lock().await;
        let mut batch = Vec::with_capacity(docs.len());
        for d in docs {
            // A registration deleted meanwhile stays deleted; one updated meanwhile was written
            // whole with its statistics, so the copy taken above is not older than the store's.
            if self.doc(&d.tenant, &d.id).is_some_and(|now| now.modified_at == d.modified_at) {
                let v = serde_json::to_value(&d).map_err(|e| NgsiError::internal(e.to_string()))?;
                batch.push((key(&d.tenant, &d.id), v));
            }
        }
        if !batch.is_empty() {
            self.store.put_meta_many(REGISTRATIONS, batch).await?;
        }
        Ok(())
    }

    /// The checks of §4.3.6.3 and §5.9.2.4 for an exclusive or redirect registration: it may not
    /// overlap another exclusive registration (nor an exclusive one a redirect one: overlapping
    /// redirect registrations are allowed, operations go to all of them): a Conflict (409).
    /// Data the broker already holds does not block a registration: the ETSI distributed tests
    /// create the entity locally first and then register it (D011_01_exc and others); from
    /// then on the registered attributes are served by the source.
    /// GS CIM 009 §5.9.2.4: a redirect registration may not cover an entity the broker holds
    /// (with one of its attributes, when it names attributes), an exclusive one an attribute an
    /// entity the broker holds has; the broker's data would be shadowed (Conflict, 409).
    async fn check_held(&self, tenant: &str, c: &CompiledRegistration) -> NgsiResult<()> {
        if !c.mode.is_proxied() || !self.store.tenant_exists(tenant).await? {
            return Ok(());
        }
        for info in &c.information {
            let names: Option<Vec<String>> = (!info.all_attrs()).then(|| info.names().cloned().collect());
            for e in &info.entities {
                let filter = crate::store::EntityFilter {
                    ids: e.id.clone().map(|i| vec![i]),
                    id_pattern: if e.id.is_none() { e.id_pattern.clone() } else { None },
                    types: (!e.types.is_empty()).then(|| e.types.clone()),
                    attrs: names.clone(),
                    ..Default::default()
                };
                let page = self.store.query(tenant, &filter, 0, 1, false).await?;
                if let Some(found) = page.entities.first() {
                    return Err(conflict(format!(
                        "the broker holds {}{}, which this {} registration would shadow",
                        found.id,
                        if names.is_some() { " with some of the registered attributes" } else { "" },
                        c.mode.name()
                    )));
                }
            }
        }
        Ok(())
    }

    async fn check_conflicts(&self, tenant: &str, c: &CompiledRegistration) -> NgsiResult<()> {
        if !c.mode.is_proxied() {
            return Ok(());
        }
        let now = now_millis();
        if let Some(t) = self.tenants.read().get(tenant) {
            for e in t.regs.values() {
                let o = &e.compiled;
                if o.id == c.id || !o.live(now) || !o.mode.is_proxied() {
                    continue;
                }
                if c.mode == Mode::Redirect && o.mode == Mode::Redirect {
                    continue;
                }
                if c.overlaps(o) {
                    return Err(conflict(format!(
                        "the {} registration {} already covers some of these entities and attributes",
                        o.mode.name(),
                        o.id
                    )));
                }
            }
        }
        Ok(())
    }
}

/// `expiresAt`, when given, must lie in the future (§5.9.2.4, §5.9.3.4).
fn check_future(body: &Map<String, Value>, now: i64) -> NgsiResult<()> {
    match body.get("expiresAt").and_then(Value::as_str).and_then(parse_datetime) {
        Some(t) if t <= now => Err(NgsiError::bad_data("expiresAt must be in the future")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonld::CORE;
    use crate::model::{AttrKind, Attribute, Entity};
    use crate::store::embedded::EmbeddedStore;
    use crate::store::{Mutation, Write};

    const V: &str = "https://uri.etsi.org/ngsi-ld/default-context/";

    fn x(n: &str) -> String {
        format!("{V}{n}")
    }

    async fn registry(dir: &std::path::Path) -> (Arc<dyn Store>, Arc<Registrations>) {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir).unwrap());
        let r = Registrations::start(store.clone()).await.unwrap();
        (store, r)
    }

    async fn register(r: &Registrations, tenant: &str, body: Value) -> NgsiResult<String> {
        let mut body = body.as_object().unwrap().clone();
        body.insert("type".into(), json!("ContextSourceRegistration"));
        body.entry("endpoint").or_insert(json!("http://source.example.org"));
        r.create(tenant, body, CORE.clone()).await
    }

    fn ids(v: Vec<Arc<CompiledRegistration>>) -> Vec<String> {
        v.iter().map(|c| c.id.clone()).collect()
    }

    #[tokio::test]
    async fn matching_honours_ids_patterns_types_and_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let (_, r) = registry(dir.path()).await;
        register(
            &r,
            "",
            json!({"id": "urn:r:byid", "information": [{"entities": [{"id": "urn:v:1", "type": "Vehicle"}],
                   "propertyNames": ["speed"]}]}),
        )
        .await
        .unwrap();
        register(&r, "", json!({"id": "urn:r:pattern", "information": [{"entities": [{"idPattern": "^urn:v:[0-4]$", "type": "Vehicle"}]}]}))
            .await
            .unwrap();
        register(&r, "", json!({"id": "urn:r:attrs", "information": [{"relationshipNames": ["owner"]}]}))
            .await
            .unwrap();
        let vehicle = [x("Vehicle")];
        let m = |id: Option<&str>, types: &[String], attrs: Option<&[String]>| {
            ids(r.matching("", id, types, attrs, Op::RetrieveEntity))
        };
        assert_eq!(m(Some("urn:v:1"), &vehicle, None), ["urn:r:byid", "urn:r:pattern", "urn:r:attrs"]);
        assert_eq!(m(Some("urn:v:7"), &vehicle, None), ["urn:r:attrs"]);
        // An unknown type matches any registered type; a known other type does not.
        assert_eq!(m(Some("urn:v:1"), &[], None), ["urn:r:byid", "urn:r:pattern", "urn:r:attrs"]);
        assert_eq!(m(Some("urn:v:1"), &[x("Building")], None), ["urn:r:attrs"]);
        // A query across entities (no id) meets every registration of the type.
        assert_eq!(m(None, &vehicle, None), ["urn:r:byid", "urn:r:pattern", "urn:r:attrs"]);
        // Attributes: a registration naming none covers all of them.
        assert_eq!(m(Some("urn:v:1"), &vehicle, Some(&[x("speed")])), ["urn:r:byid", "urn:r:pattern"]);
        assert_eq!(m(Some("urn:v:1"), &vehicle, Some(&[x("owner")])), ["urn:r:pattern", "urn:r:attrs"]);
        assert_eq!(m(Some("urn:v:1"), &vehicle, Some(&[x("colour")])), ["urn:r:pattern"]);
        // Other tenants see nothing.
        assert!(r.matching("acme", Some("urn:v:1"), &vehicle, None, Op::RetrieveEntity).is_empty());
        assert!(!r.has_any("acme") && r.has_any(""));
        // What each provides for the entity.
        let byid = r.matching("", Some("urn:v:1"), &vehicle, None, Op::RetrieveEntity);
        assert_eq!(byid[0].attributes_for(Some("urn:v:1"), &vehicle), Some(vec![x("speed")]));
        assert_eq!(byid[1].attributes_for(Some("urn:v:1"), &vehicle), None);
        assert_eq!(byid[0].attributes_for(Some("urn:v:9"), &vehicle), Some(vec![]));
    }

    #[tokio::test]
    async fn matching_honours_operations_mode_order_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let (_, r) = registry(dir.path()).await;
        let info = json!([{"entities": [{"id": "urn:robot:1", "type": "Robot"}], "propertyNames": ["position"]}]);
        register(&r, "t", json!({"id": "urn:r:inc", "information": [{"entities": [{"type": "Robot"}]}]}))
            .await
            .unwrap();
        register(
            &r,
            "t",
            json!({"id": "urn:r:exc", "information": info, "mode": "exclusive", "operations": ["updateOps"]}),
        )
        .await
        .unwrap();
        register(
            &r,
            "t",
            json!({"id": "urn:r:aux", "information": [{"entities": [{"type": "Robot"}]}], "mode": "auxiliary"}),
        )
        .await
        .unwrap();
        let robot = [x("Robot")];
        let m = |op: Op| ids(r.matching("t", Some("urn:robot:1"), &robot, Some(&[x("position")]), op));
        // Commands (updateOps) go to the exclusive source only; reads go to the default
        // federationOps and to the auxiliary source (retrieveOps by default), exclusive first.
        assert_eq!(m(Op::UpdateAttrs), ["urn:r:exc"]);
        assert_eq!(m(Op::UpdateEntity), ["urn:r:exc"]);
        assert!(m(Op::MergeEntity).is_empty());
        assert_eq!(m(Op::RetrieveEntity), ["urn:r:inc", "urn:r:aux"]);
        assert_eq!(m(Op::CreateSubscription), ["urn:r:inc"]);
        // Expiry and an observation interval in the past take a registration out of lookups.
        let later = now_millis() + 3_600_000;
        register(
            &r,
            "t",
            json!({"id": "urn:r:soon", "information": [{"entities": [{"type": "Robot"}]}],
                   "expiresAt": crate::model::format_millis(later)}),
        )
        .await
        .unwrap();
        register(
            &r,
            "t",
            json!({"id": "urn:r:past", "information": [{"entities": [{"type": "Robot"}]}],
                   "observationInterval": {"startAt": "2020-01-01T00:00:00Z", "endAt": "2021-01-01T00:00:00Z"}}),
        )
        .await
        .unwrap();
        assert_eq!(m(Op::QueryEntity), ["urn:r:inc", "urn:r:soon", "urn:r:aux"]);
        let soon = r.matching("t", None, &robot, None, Op::QueryEntity).into_iter().find(|c| c.id == "urn:r:soon");
        let soon = soon.unwrap();
        assert!(soon.current(later - 1) && !soon.current(later));
    }

    #[tokio::test]
    async fn registrations_survive_a_restart_and_deletion_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, r) = registry(dir.path()).await;
            register(&r, "t", json!({"id": "urn:r:1", "information": [{"entities": [{"type": "Robot"}]}]}))
                .await
                .unwrap();
            register(&r, "t", json!({"id": "urn:r:2", "information": [{"entities": [{"type": "Robot"}]}]}))
                .await
                .unwrap();
            r.delete("t", "urn:r:2").await.unwrap();
            r.record_outcome("t", "urn:r:1", false);
            r.flush_stats().await.unwrap();
            drop(r);
            drop(store);
        }
        let (_, r) = registry(dir.path()).await;
        assert_eq!(ids(r.matching("t", None, &[x("Robot")], None, Op::QueryEntity)), ["urn:r:1"]);
        let got = r.get("t", "urn:r:1", &CORE, false).unwrap();
        assert_eq!(got["status"], "failed");
        assert_eq!(got["timesFailed"], 1);
        assert!(got["lastFailure"].is_string());
    }

    async fn put_entity(store: &Arc<dyn Store>, tenant: &str, id: &str, ty: &str, attr: &str) {
        let e = Entity {
            id: id.into(),
            types: [crate::model::intern(&x(ty))].into_iter().collect(),
            scope: None,
            attrs: Default::default(),
            created_at: 0,
            modified_at: 0,
        };
        let attr = x(attr);
        let w = Write::new(id, move |_| {
            let mut e = e.clone();
            e.put_instance(&attr, Attribute::new(AttrKind::Property, &json!(1), 0));
            Ok(Mutation::Put(e))
        });
        store.write(tenant, true, vec![w]).await.unwrap().pop().unwrap().unwrap();
    }

    #[tokio::test]
    async fn proxied_registrations_are_checked_for_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let (store, r) = registry(dir.path()).await;
        let exclusive = |id: &str, attr: &str| {
            json!({"id": id, "mode": "exclusive",
                   "information": [{"entities": [{"id": "urn:robot:1", "type": "Robot"}], "propertyNames": [attr]}]})
        };
        register(&r, "t", exclusive("urn:r:a", "position")).await.unwrap();
        // The same entity and attribute: conflict, for exclusive and redirect alike.
        let e = register(&r, "t", exclusive("urn:r:b", "position")).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        assert!(e.detail.starts_with("Conflict"));
        let redirect = json!({"id": "urn:r:c", "mode": "redirect",
                              "information": [{"entities": [{"type": "Robot"}]}]});
        assert_eq!(register(&r, "t", redirect.clone()).await.unwrap_err().kind, ErrorKind::AlreadyExists);
        // Another attribute, another tenant, or an inclusive registration: no conflict.
        register(&r, "t", exclusive("urn:r:d", "orientation")).await.unwrap();
        register(&r, "u", exclusive("urn:r:a", "position")).await.unwrap();
        register(&r, "t", json!({"id": "urn:r:e", "information": [{"entities": [{"type": "Robot"}]}]})).await.unwrap();
        // Redirect registrations may overlap each other.
        let redirect2 =
            |id: &str| json!({"id": id, "mode": "redirect", "information": [{"entities": [{"type": "Drone"}]}]});
        register(&r, "t", redirect2("urn:r:f")).await.unwrap();
        register(&r, "t", redirect2("urn:r:g")).await.unwrap();
        // Local data the registration would shadow blocks it (§5.9.2.4): an exclusive one naming
        // an attribute the entity has; another attribute is free.
        put_entity(&store, "v", "urn:robot:9", "Robot", "position").await;
        let e = register(
            &r,
            "v",
            json!({"mode": "exclusive",
                   "information": [{"entities": [{"id": "urn:robot:9", "type": "Robot"}], "propertyNames": ["position"]}]}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        assert!(e.detail.contains("urn:robot:9"), "{}", e.detail);
        register(
            &r,
            "v",
            json!({"mode": "exclusive",
                   "information": [{"entities": [{"id": "urn:robot:9", "type": "Robot"}], "propertyNames": ["speed"]}]}),
        )
        .await
        .unwrap();
        let e = register(&r, "v", json!({"mode": "redirect", "information": [{"entities": [{"type": "Robot"}]}]}))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        // An update is checked the same way (without meeting itself).
        let id = register(&r, "v", json!({"information": [{"entities": [{"type": "Robot"}]}]})).await.unwrap();
        let patch = json!({"mode": "redirect"}).as_object().unwrap().clone();
        assert_eq!(r.update("v", &id, patch, CORE.clone()).await.unwrap_err().kind, ErrorKind::AlreadyExists);
        let patch = json!({"endpoint": "http://elsewhere.example.org"}).as_object().unwrap().clone();
        r.update("v", &id, patch, CORE.clone()).await.unwrap();
    }
}
