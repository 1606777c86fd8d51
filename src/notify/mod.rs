//! Subscriptions and notifications (GS CIM 009 §5.8, §5.11).
//!
//! The notifier keeps every subscription compiled in memory, indexed per tenant
//! ([`matcher::TenantIndex`]), and observes the store's commits ([`ChangeObserver`]): before a
//! group of writes is made durable it finds the subscriptions the changes fire and returns one
//! outbox entry per notification, which the store logs in the same commit; once the group is
//! durable the notifications are queued for delivery. So a notification is never lost between
//! a write and its delivery, even through a crash: at start-up the outbox is read back and what
//! it holds is sent again. Delivery ([`deliver`]) runs per subscription in order, retries with
//! backoff within a retry window, and counts every attempt in the subscription's status.
//!
//! Context source registration subscriptions ([`csource`]) live in the same notifier: they
//! share the stored and compiled forms, the delivery queue and the statistics, and are fired by
//! the registry ([`Notifier::registration_changed`]) rather than by the store.

pub mod amqp;
pub mod csource;
pub mod deliver;
pub mod http;
pub mod matcher;
pub mod mqtt;
pub mod payload;
pub mod periodic;
pub mod sender;
pub mod subscription;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value, json};

use crate::error::{ErrorKind, NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::jsonld::resolver::Resolver;
use crate::model::now_millis;
use crate::registry::Registrations;
use crate::registry::registration::{CompiledRegistration, RegDoc};
use crate::store::{Change, ChangeObserver, Store};
use matcher::{Fired, TenantIndex};
use subscription::{Compiled, SubDoc};

/// The store collection holding subscriptions (key: tenant NUL id).
pub const SUBSCRIPTIONS: &str = "subscriptions";
/// The store collection holding notifications not yet delivered (key: sequence number).
pub const OUTBOX: &str = "outbox";

/// Delivery settings.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// Time-out of one delivery attempt.
    pub timeout: std::time::Duration,
    /// How long a notification is retried before it is given up (and counted as failed).
    pub retry_window: std::time::Duration,
    /// Notifications queued in memory before writers wait (back-pressure).
    pub queue: usize,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            timeout: std::time::Duration::from_secs(10),
            retry_window: std::time::Duration::from_secs(600),
            queue: 10_000,
            concurrency: 256,
        }
    }
}

/// The two kinds of subscription the notifier holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Subscriptions to entities (`/subscriptions`, §5.8).
    Entity,
    /// Subscriptions to context source registrations (`/csourceSubscriptions`, §5.11).
    Csource,
}

impl Kind {
    /// The store collection holding them.
    pub fn collection(self) -> &'static str {
        match self {
            Kind::Entity => SUBSCRIPTIONS,
            Kind::Csource => csource::CSOURCE_SUBSCRIPTIONS,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Entity => "subscription",
            Kind::Csource => "context source registration subscription",
        }
    }

    /// The key of a subscription's delivery queue and timer: the two kinds have separate id
    /// spaces, so a registration subscription's key is set apart.
    pub(crate) fn work_key(self, tenant: &str, id: &str) -> String {
        match self {
            Kind::Entity => key(tenant, id),
            Kind::Csource => format!("{tenant}\u{0}\u{1}{id}"),
        }
    }
}

/// A subscription known to the notifier.
pub struct Entry {
    pub doc: SubDoc,
    pub compiled: Arc<Compiled>,
    /// When a change last fired it (throttling), in milliseconds.
    pub last_fired: Option<i64>,
    /// Whether its statistics changed since they were last persisted.
    pub dirty: bool,
}

/// One notification to deliver: a subscription and the entities it is told about.
#[derive(Debug, Clone)]
pub struct Job {
    /// The outbox key (None for periodic notifications, which are not kept in the outbox).
    pub outbox: Option<String>,
    pub tenant: String,
    pub sub: String,
    pub fired: Vec<Fired>,
    /// When the notification was first queued (the retry window starts here).
    pub queued_at: i64,
    /// For a context source registration subscription: the registrations to notify (`fired`
    /// is then empty).
    pub csource: Option<Arc<csource::Payload>>,
}

impl Job {
    pub fn kind(&self) -> Kind {
        if self.csource.is_some() { Kind::Csource } else { Kind::Entity }
    }

    /// The key of the subscription's delivery queue.
    pub(crate) fn work_key(&self) -> String {
        self.kind().work_key(&self.tenant, &self.sub)
    }
}

#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) subs: HashMap<String, Entry>,
    index: HashMap<String, TenantIndex>,
    /// Context source registration subscriptions (few, so not indexed).
    pub(crate) csubs: HashMap<String, Entry>,
}

pub(crate) fn key(tenant: &str, id: &str) -> String {
    format!("{tenant}\u{0}{id}")
}

impl Registry {
    pub(crate) fn of(&self, kind: Kind) -> &HashMap<String, Entry> {
        match kind {
            Kind::Entity => &self.subs,
            Kind::Csource => &self.csubs,
        }
    }

    pub(crate) fn of_mut(&mut self, kind: Kind) -> &mut HashMap<String, Entry> {
        match kind {
            Kind::Entity => &mut self.subs,
            Kind::Csource => &mut self.csubs,
        }
    }

    fn insert(&mut self, e: Entry) {
        let k = key(&e.doc.tenant, &e.doc.id);
        self.remove(&k);
        self.index.entry(e.doc.tenant.clone()).or_default().add(&e.compiled);
        self.subs.insert(k, e);
    }

    fn remove(&mut self, k: &str) -> Option<Entry> {
        let old = self.subs.remove(k)?;
        if let Some(ix) = self.index.get_mut(&old.doc.tenant) {
            ix.remove(&old.compiled);
            if ix.is_empty() {
                self.index.remove(&old.doc.tenant);
            }
        }
        Some(old)
    }
}

/// The notifier: subscriptions, matching, the outbox and delivery.
pub struct Notifier {
    /// The base URL contexts are hosted under (implicitly created ones included).
    public_base: String,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) resolver: Arc<Resolver>,
    pub(crate) registry: RwLock<Registry>,
    /// Jobs matched in the group being committed (with their outbox key), queued once it is
    /// durable.
    staged: Mutex<Option<(String, Vec<Job>)>>,
    /// Serializes writes of subscription documents (API changes and statistics), so an older
    /// copy never overwrites a newer one and a deleted subscription never comes back.
    pub(crate) persist_lock: tokio::sync::Mutex<()>,
    seq: AtomicU64,
    pub(crate) queue: deliver::Queue,
    pub(crate) periodic: periodic::Timers,
    /// The registry of context source registrations (for the notifications that registration
    /// subscriptions send when they are created, updated or periodic).
    registrations: OnceLock<Weak<Registrations>>,
}

impl Notifier {
    /// Creates the notifier, loads subscriptions and the outbox, installs it as the store's
    /// observer and starts delivery. Must run inside a tokio runtime.
    pub async fn start(
        store: Arc<dyn Store>,
        resolver: Arc<Resolver>,
        settings: NotifySettings,
        public_base: String,
    ) -> Result<Arc<Notifier>, String> {
        let queue = deliver::Queue::new(&settings);
        let n = Arc::new(Notifier {
            public_base,
            store: store.clone(),
            resolver,
            registry: RwLock::new(Registry::default()),
            staged: Mutex::new(None),
            persist_lock: tokio::sync::Mutex::new(()),
            seq: AtomicU64::new((now_millis().max(0) as u64) << 16),
            queue,
            periodic: periodic::Timers::default(),
            registrations: OnceLock::new(),
        });
        for kind in [Kind::Entity, Kind::Csource] {
            let docs = store.list_meta(kind.collection()).await.map_err(|e| e.to_string())?;
            for (k, v) in docs {
                let doc: SubDoc = match serde_json::from_value(v) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::error!(key = %k, error = %e, "a stored subscription is unreadable; skipped");
                        continue;
                    }
                };
                match n.compile_doc(&doc, kind).await {
                    Ok(c) => n.install(doc, c, kind),
                    Err(e) => {
                        tracing::error!(id = %doc.id, error = %e, "a stored subscription does not compile; skipped")
                    }
                }
            }
        }
        store.set_observer(n.clone());
        // What the outbox holds (notifications not delivered before a stop or a crash) is read
        // back by the delivery loop, in order, as room allows.
        n.queue.mark_spilled();
        deliver::start(n.clone(), settings);
        Ok(n)
    }

    /// Compiles a stored subscription with its context (and its `jsonldContext`, which decides
    /// how notifications are compacted).
    async fn compile_doc(&self, doc: &SubDoc, kind: Kind) -> NgsiResult<Compiled> {
        let ctx = self.context_of(&doc.context).await?;
        let mut c = match kind {
            Kind::Entity => subscription::compile(&doc.id, &doc.tenant, &doc.body, ctx)?,
            Kind::Csource => csource::compile(&doc.id, &doc.tenant, &doc.body, ctx)?,
        };
        if let Some(Value::String(url)) = doc.body.get("jsonldContext") {
            // An implicitly created context is both: resolve (and count) it once.
            let notify = if doc.context.as_str() == Some(url.as_str()) {
                c.ctx.clone()
            } else {
                self.resolver.from_url(url).await?
            };
            c.notify_ctx = Some((notify, url.clone()));
        }
        Ok(c)
    }

    async fn context_of(&self, v: &Value) -> NgsiResult<Arc<Context>> {
        match v {
            Value::Null => Ok(crate::jsonld::CORE.clone()),
            other => self.resolver.from_value(other).await,
        }
    }

    fn install(self: &Arc<Self>, doc: SubDoc, compiled: Compiled, kind: Kind) {
        let compiled = Arc::new(compiled);
        let wk = kind.work_key(&doc.tenant, &doc.id);
        self.periodic.cancel(&wk);
        if compiled.time_interval.is_some() {
            self.periodic.start(self.clone(), wk, compiled.clone());
        }
        let e = Entry { doc, compiled, last_fired: None, dirty: false };
        match kind {
            Kind::Entity => self.registry.write().insert(e),
            Kind::Csource => {
                self.registry.write().csubs.insert(key(&e.doc.tenant, &e.doc.id), e);
            }
        }
    }

    /// Lets registration subscriptions read the registrations (set once at start-up; the
    /// registry holds the notifier, so this link is weak).
    pub fn set_registrations(&self, r: &Arc<Registrations>) {
        let _ = self.registrations.set(Arc::downgrade(r));
    }

    /// Creates a subscription from a client body (already without `@context`).
    pub async fn create(
        self: &Arc<Self>,
        tenant: &str,
        body: Map<String, Value>,
        ctx: Arc<Context>,
    ) -> NgsiResult<String> {
        self.create_of(Kind::Entity, tenant, body, ctx).await
    }

    /// Creates a subscription of either kind. A registration subscription is sent the
    /// registrations it matches at once (§5.11.7).
    pub async fn create_of(
        self: &Arc<Self>,
        kind: Kind,
        tenant: &str,
        mut body: Map<String, Value>,
        ctx: Arc<Context>,
    ) -> NgsiResult<String> {
        if body.get("jsonldContext").is_some_and(|v| !v.as_str().is_some_and(crate::model::parse::is_uri)) {
            return Err(NgsiError::bad_data("jsonldContext must be a URI"));
        }
        let id = match body.get("id") {
            Some(Value::String(id)) if crate::model::parse::is_uri(id) => id.clone(),
            Some(_) => return Err(NgsiError::bad_data(format!("the {} id must be a URI", kind.noun()))),
            None => format!("urn:ngsi-ld:Subscription:{}", uuid::Uuid::new_v4()),
        };
        body.insert("id".into(), json!(id));
        let mut body = subscription::normalize(body, &ctx);
        let implicit = self.implicit_context(&ctx, &mut body).await?;
        let now = now_millis();
        if let Some(t) = body.get("expiresAt").and_then(Value::as_str).and_then(crate::model::parse_datetime)
            && t <= now
        {
            return Err(NgsiError::bad_data("expiresAt must be in the future"));
        }
        let doc = SubDoc {
            id: id.clone(),
            tenant: tenant.to_owned(),
            body,
            context: implicit.map(Value::String).unwrap_or_else(|| ctx.original.clone()),
            created_at: now,
            modified_at: now,
            stats: Default::default(),
        };
        let compiled = self.compile_doc(&doc, kind).await?;
        let k = key(tenant, &id);
        let _guard = self.persist_lock.lock().await;
        if self.registry.read().of(kind).contains_key(&k) {
            return Err(NgsiError::new(ErrorKind::AlreadyExists, format!("{} {id} already exists", kind.noun())));
        }
        self.persist(&doc, kind).await?;
        self.install(doc, compiled, kind);
        drop(_guard);
        if kind == Kind::Csource {
            self.csource_current(tenant, &id).await;
        }
        Ok(id)
    }

    /// A context given inline (an object, or several documents) is hosted as an ImplicitlyCreated
    /// context, as Orion-LD does: the subscription keeps its URL (shown as `jsonldContext` unless
    /// one was given) and notifications can name it in a Link header. A single URL stays as is.
    async fn implicit_context(&self, ctx: &Context, body: &mut Map<String, Value>) -> NgsiResult<Option<String>> {
        let single_url = match &ctx.original {
            Value::Null | Value::String(_) => true,
            Value::Array(items) => items.len() == 1 && items[0].is_string(),
            _ => false,
        };
        if single_url {
            return Ok(None);
        }
        let entry = self.resolver.host_implicit(ctx.original.clone(), &self.public_base).await?;
        let doc = serde_json::to_value(&entry).map_err(|e| NgsiError::internal(e.to_string()))?;
        self.store.put_meta(crate::ops::contexts::COLLECTION, &entry.id, doc).await?;
        if !body.contains_key("jsonldContext") {
            body.insert("jsonldContext".into(), json!(entry.url));
        }
        Ok(Some(entry.url))
    }

    async fn persist(&self, doc: &SubDoc, kind: Kind) -> NgsiResult<()> {
        let v = serde_json::to_value(doc).map_err(|e| NgsiError::internal(e.to_string()))?;
        self.store.put_meta(kind.collection(), &key(&doc.tenant, &doc.id), v).await?;
        Ok(())
    }

    fn not_found(id: &str, kind: Kind) -> NgsiError {
        NgsiError::new(ErrorKind::ResourceNotFound, format!("{} {id} not found", kind.noun()))
    }

    fn render(e: &Entry, kind: Kind, ctx: &Context, now: i64, sys_attrs: bool) -> Value {
        match kind {
            Kind::Entity => subscription::render(&e.doc, &e.compiled, ctx, now, sys_attrs),
            Kind::Csource => csource::render(&e.doc, &e.compiled, ctx, now, sys_attrs),
        }
    }

    /// A subscription as clients see it.
    pub fn get(&self, tenant: &str, id: &str, ctx: &Context, sys_attrs: bool) -> NgsiResult<Value> {
        self.get_of(Kind::Entity, tenant, id, ctx, sys_attrs)
    }

    /// A subscription of either kind as clients see it.
    pub fn get_of(&self, kind: Kind, tenant: &str, id: &str, ctx: &Context, sys_attrs: bool) -> NgsiResult<Value> {
        let reg = self.registry.read();
        let e = reg.of(kind).get(&key(tenant, id)).ok_or_else(|| Self::not_found(id, kind))?;
        Ok(Self::render(e, kind, ctx, now_millis(), sys_attrs))
    }

    /// A tenant's subscriptions, oldest first: one page and the total.
    pub fn list(
        &self,
        tenant: &str,
        ctx: &Context,
        offset: usize,
        limit: usize,
        sys_attrs: bool,
    ) -> (Vec<Value>, usize) {
        self.list_of(Kind::Entity, tenant, ctx, offset, limit, sys_attrs)
    }

    /// A tenant's subscriptions of one kind, oldest first: one page and the total.
    pub fn list_of(
        &self,
        kind: Kind,
        tenant: &str,
        ctx: &Context,
        offset: usize,
        limit: usize,
        sys_attrs: bool,
    ) -> (Vec<Value>, usize) {
        let reg = self.registry.read();
        let mut all: Vec<&Entry> = reg.of(kind).values().filter(|e| e.doc.tenant == tenant).collect();
        all.sort_by(|a, b| a.doc.created_at.cmp(&b.doc.created_at).then_with(|| a.doc.id.cmp(&b.doc.id)));
        let now = now_millis();
        let page = all.iter().skip(offset).take(limit).map(|e| Self::render(e, kind, ctx, now, sys_attrs)).collect();
        (page, all.len())
    }

    /// Updates a subscription with a fragment (GS CIM 009 §5.8.2): members given replace the
    /// stored ones, `null` removes one; the result must still be a valid subscription.
    pub async fn update(
        self: &Arc<Self>,
        tenant: &str,
        id: &str,
        patch: Map<String, Value>,
        ctx: Arc<Context>,
    ) -> NgsiResult<()> {
        self.update_of(Kind::Entity, tenant, id, patch, ctx).await
    }

    /// Updates a subscription of either kind. An updated registration subscription is sent
    /// every registration it now matches (§5.11.7).
    pub async fn update_of(
        self: &Arc<Self>,
        kind: Kind,
        tenant: &str,
        id: &str,
        patch: Map<String, Value>,
        ctx: Arc<Context>,
    ) -> NgsiResult<()> {
        let mut doc = {
            let reg = self.registry.read();
            reg.of(kind).get(&key(tenant, id)).ok_or_else(|| Self::not_found(id, kind))?.doc.clone()
        };
        if patch.is_empty() {
            return Err(NgsiError::bad_data("an empty fragment updates nothing"));
        }
        if let Some(v) = patch.get("id")
            && v.as_str() != Some(id)
        {
            return Err(NgsiError::bad_data(format!("the id of a {} cannot change", kind.noun())));
        }
        // Members given replace the stored ones whole (GS CIM 009 §5.8.2); null removes one.
        let patch = subscription::normalize(patch, &ctx);
        for (k, v) in patch {
            if v.is_null() {
                doc.body.remove(&k);
            } else {
                doc.body.insert(k, v);
            }
        }
        let now = now_millis();
        if let Some(t) = doc.body.get("expiresAt").and_then(Value::as_str).and_then(crate::model::parse_datetime)
            && t <= now
        {
            return Err(NgsiError::bad_data("expiresAt must be in the future"));
        }
        doc.modified_at = now;
        let compiled = self.compile_doc(&doc, kind).await?;
        let _guard = self.persist_lock.lock().await;
        // Statistics may have moved on while the update was compiled; a concurrent delete wins.
        match self.registry.read().of(kind).get(&key(tenant, id)) {
            Some(e) => doc.stats = e.doc.stats.clone(),
            None => return Err(Self::not_found(id, kind)),
        }
        self.persist(&doc, kind).await?;
        self.install(doc, compiled, kind);
        drop(_guard);
        if kind == Kind::Csource {
            self.csource_current(tenant, id).await;
        }
        Ok(())
    }

    pub async fn delete(&self, tenant: &str, id: &str) -> NgsiResult<()> {
        self.delete_of(Kind::Entity, tenant, id).await
    }

    /// Deletes a subscription of either kind.
    pub async fn delete_of(&self, kind: Kind, tenant: &str, id: &str) -> NgsiResult<()> {
        let k = key(tenant, id);
        let _guard = self.persist_lock.lock().await;
        if !self.registry.read().of(kind).contains_key(&k) {
            return Err(Self::not_found(id, kind));
        }
        self.store.delete_meta(kind.collection(), &k).await?;
        self.periodic.cancel(&kind.work_key(tenant, id));
        match kind {
            Kind::Entity => {
                self.registry.write().remove(&k);
            }
            Kind::Csource => {
                self.registry.write().csubs.remove(&k);
            }
        }
        Ok(())
    }

    /// The registrations a registration subscription matches now, rendered for it.
    pub(crate) fn csource_matching(&self, c: &Compiled) -> Vec<Value> {
        let Some(r) = self.registrations.get().and_then(Weak::upgrade) else {
            return Vec::new();
        };
        let now = now_millis();
        r.all(&c.tenant)
            .iter()
            .filter(|(_, reg)| csource::matches(c, reg, now))
            .map(|(doc, reg)| csource::render_registration(c, doc, reg))
            .collect()
    }

    /// Sends a registration subscription the registrations it matches now (`newlyMatching`),
    /// if it is active and matches any.
    async fn csource_current(&self, tenant: &str, id: &str) {
        let Some(c) = self.registry.read().csubs.get(&key(tenant, id)).map(|e| e.compiled.clone()) else {
            return;
        };
        if !c.live(now_millis()) {
            return;
        }
        let data = self.csource_matching(&c);
        if data.is_empty() {
            return;
        }
        let payload = csource::Payload { reason: csource::Reason::NewlyMatching, data };
        self.queue.push_loose(Self::csource_job(&c, payload)).await;
    }

    pub(crate) fn csource_job(c: &Compiled, p: csource::Payload) -> Job {
        Job {
            outbox: None,
            tenant: c.tenant.clone(),
            sub: c.id.clone(),
            fired: Vec::new(),
            queued_at: now_millis(),
            csource: Some(Arc::new(p)),
        }
    }

    /// Tells the registration subscriptions of a tenant that a registration was created (`old`
    /// None), updated or deleted (`new` None), once the change is persisted. Each active
    /// subscription that matched the old or matches the new state is notified:
    /// `newlyMatching`, `updated` or `noLongerMatching` (§5.11.7), throttling permitting.
    ///
    /// The notifications are queued in memory only (waiting for room when the queue is full):
    /// unlike entity notifications they have no outbox entry, because registrations are not
    /// written through the store's group commit.
    pub async fn registration_changed(
        &self,
        tenant: &str,
        old: Option<&(RegDoc, Arc<CompiledRegistration>)>,
        new: Option<&(RegDoc, Arc<CompiledRegistration>)>,
    ) {
        let now = now_millis();
        let jobs: Vec<Job> = {
            let mut reg = self.registry.write();
            let mut jobs = Vec::new();
            for e in reg.csubs.values_mut().filter(|e| e.doc.tenant == tenant) {
                let c = &e.compiled;
                if !c.live(now) {
                    continue;
                }
                let was = old.is_some_and(|(_, r)| csource::matches(c, r, now));
                let is = new.is_some_and(|(_, r)| csource::matches(c, r, now));
                let (reason, shown) = match (was, is, new, old) {
                    (false, true, Some(n), _) => (csource::Reason::NewlyMatching, n),
                    (true, true, Some(n), _) => (csource::Reason::Updated, n),
                    (true, false, Some(n), _) | (true, false, None, Some(n)) => (csource::Reason::NoLongerMatching, n),
                    _ => continue,
                };
                if let (Some(t), Some(last)) = (c.throttling, e.last_fired)
                    && ((now - last) as f64) < t * 1000.0
                {
                    continue;
                }
                e.last_fired = Some(now);
                let data = vec![csource::render_registration(c, &shown.0, &shown.1)];
                jobs.push(Self::csource_job(c, csource::Payload { reason, data }));
            }
            jobs
        };
        for j in jobs {
            self.queue.push_loose(j).await;
        }
    }

    /// The number of entity subscriptions (all tenants), for `/version`.
    pub fn count(&self) -> usize {
        self.registry.read().subs.len()
    }

    fn next_key(&self) -> String {
        format!("{:020}", self.seq.fetch_add(1, Ordering::Relaxed))
    }

    /// Turns an outbox entry back into jobs; the entities are read in their current state (a
    /// deleted one is notified as deleted). Jobs of deleted subscriptions are dropped, and an
    /// entry left with none is discarded.
    pub(crate) async fn jobs_from_outbox(
        &self,
        k: &str,
        v: &Value,
        cache: &mut deliver::EntityCache,
    ) -> Result<Vec<Job>, crate::store::StoreError> {
        let now = now_millis();
        let queued_at = v["at"].as_i64().unwrap_or(now);
        let mut jobs = Vec::new();
        for j in v["jobs"].as_array().into_iter().flatten() {
            let (Some(tenant), Some(sub)) = (j["t"].as_str(), j["s"].as_str()) else { continue };
            if !self.registry.read().subs.contains_key(&key(tenant, sub)) {
                continue;
            }
            let mut fired = Vec::new();
            for item in j["e"].as_array().into_iter().flatten() {
                let Some(id) = item["id"].as_str() else { continue };
                let ck = (tenant.to_owned(), id.to_owned());
                let current = match cache.get(&ck) {
                    Some(e) => e.clone(),
                    None => {
                        let e = self.store.get(tenant, id).await?;
                        cache.insert(ck, e.clone());
                        e
                    }
                };
                match current {
                    Some(e) => fired.push(Fired::current(e)),
                    None => {
                        let types: crate::model::Types = item["types"]
                            .as_array()
                            .map(|a| a.iter().filter_map(|t| t.as_str().map(crate::model::intern)).collect())
                            .unwrap_or_default();
                        let gone = crate::model::Entity {
                            id: id.into(),
                            types,
                            scope: None,
                            attrs: Default::default(),
                            created_at: now,
                            modified_at: now,
                        };
                        fired.push(Fired {
                            old: Some(Arc::new(gone)),
                            new: None,
                            event: matcher::Event::EntityDeleted,
                            deleted: Vec::new(),
                        });
                    }
                }
            }
            jobs.push(Job {
                outbox: Some(k.to_owned()),
                tenant: tenant.to_owned(),
                sub: sub.to_owned(),
                fired,
                queued_at,
                csource: None,
            });
        }
        if jobs.is_empty() {
            self.queue.discard(k.to_owned());
        }
        Ok(jobs)
    }
}

impl ChangeObserver for Notifier {
    fn prepare(&self, changes: &[Change]) -> Vec<(String, String, Value)> {
        let now = now_millis();
        let mut reg = self.registry.write();
        let mut staged = self.staged.lock();
        // Jobs left from a group whose commit failed describe writes that did not happen.
        if let Some((k, _)) = staged.take() {
            self.queue.unhold(&k);
        }
        if reg.subs.is_empty() {
            return Vec::new();
        }
        // Per subscription (by key), the entities fired, in commit order.
        let mut hits: Vec<(String, Vec<Fired>)> = Vec::new();
        let mut slot: HashMap<String, usize> = HashMap::new();
        for c in changes {
            let Some(ix) = reg.index.get(&c.tenant) else { continue };
            let mut cands: HashSet<&str> = HashSet::new();
            ix.candidates(c.old.as_deref(), c.new.as_deref(), &mut cands);
            let mut fired_here: Vec<(String, Fired)> = Vec::new();
            for sub in cands {
                let k = key(&c.tenant, sub);
                let Some(e) = reg.subs.get(&k) else { continue };
                if !e.compiled.live(now) {
                    continue;
                }
                if let Some(f) = matcher::fires(&e.compiled, c.old.as_ref(), c.new.as_ref()) {
                    fired_here.push((k, f));
                }
            }
            for (k, f) in fired_here {
                match slot.get(&k) {
                    Some(&i) => hits[i].1.push(f),
                    None => {
                        // Throttling: at most one notification per period, decided when it fires.
                        let Some(e) = reg.subs.get_mut(&k) else { continue };
                        if let (Some(t), Some(last)) = (e.compiled.throttling, e.last_fired)
                            && ((now - last) as f64) < t * 1000.0
                        {
                            continue;
                        }
                        e.last_fired = Some(now);
                        slot.insert(k.clone(), hits.len());
                        hits.push((k, vec![f]));
                    }
                }
            }
        }
        if hits.is_empty() {
            return Vec::new();
        }
        // One outbox entry for the whole group: one logged document however many notify.
        let okey = self.next_key();
        let mut listed = Vec::with_capacity(hits.len());
        let mut jobs = Vec::with_capacity(hits.len());
        for (k, fired) in hits {
            let Some(e) = reg.subs.get(&k) else { continue };
            let entities: Vec<Value> = fired
                .iter()
                .filter_map(|f| f.new.as_ref().or(f.old.as_ref()))
                .map(|e| json!({"id": e.id, "types": e.types}))
                .collect();
            listed.push(json!({"t": e.doc.tenant, "s": e.doc.id, "e": entities}));
            jobs.push(Job {
                outbox: Some(okey.clone()),
                tenant: e.doc.tenant.clone(),
                sub: e.doc.id.clone(),
                fired,
                queued_at: now,
                csource: None,
            });
        }
        self.queue.hold(&okey, jobs.len());
        let doc = json!({"at": now, "jobs": listed});
        *staged = Some((okey.clone(), jobs));
        vec![(OUTBOX.to_owned(), okey, doc)]
    }

    fn committed(&self, _changes: &[Change], _docs: Vec<(String, String, Value)>) {
        if let Some((k, jobs)) = self.staged.lock().take() {
            self.queue.push_committed(&k, jobs);
        }
    }
}
