//! Delivery: notifications queued in memory, sent per subscription in order, retried with
//! exponential backoff while the receiver fails, for at most the retry window; nothing is
//! dropped silently. The subscription's status counts notifications, not attempts (`timesSent`
//! once per notification, `timesFailed` once per notification that failed, as Orion-LD, which
//! does not retry, counts them and the ETSI suite expects, 047_06); every attempt updates
//! `lastNotification`, `lastSuccess`/`lastFailure` and `status`.
//!
//! Memory is bounded: at most `queue` notifications are held in memory. Beyond that a
//! notification is only in the durable outbox (where the store put it with the write that
//! caused it) and is read back once the queue has drained, so a receiver that is down neither
//! loses notifications nor makes writers wait for it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::sender::{SendError, Sender};
use super::{Job, Kind, Notifier, NotifySettings, OUTBOX, key};
use crate::model::now_millis;

/// The most outbox keys remembered as waiting (about 60 bytes each); beyond that, read-backs scan
/// the outbox.
const SPILL_INDEX: usize = 1_000_000;

/// The in-memory queue: per subscription, its notifications in order.
pub struct Queue {
    inner: Mutex<Inner>,
    /// Free places in memory.
    room: Arc<Semaphore>,
    capacity: usize,
    /// Outbox entries that stayed only in the store because the queue was full, oldest first
    /// (at most SPILL_INDEX entries; beyond that `unindexed` is set).
    spill: Mutex<VecDeque<String>>,
    /// Set when the outbox may hold entries neither in memory nor in `spill` (at start-up, or
    /// when `spill` overflowed): the next read-back scans the whole outbox.
    unindexed: AtomicBool,
    wake: tokio::sync::Notify,
}

/// An outbox entry in memory: the notifications of one write group not yet finished, and the
/// room they took.
struct Held {
    remaining: usize,
    permits: u32,
}

#[derive(Default)]
struct Inner {
    per_sub: HashMap<String, VecDeque<Job>>,
    /// Subscriptions whose queue has a worker.
    running: HashSet<String>,
    /// Subscriptions with work and no worker yet.
    ready: VecDeque<String>,
    /// Outbox entries in memory (so a read-back never queues them twice).
    held: HashMap<String, Held>,
    /// Outbox keys done with (every notification delivered or given up), to delete from the store.
    done: Vec<String>,
}

impl Queue {
    pub fn new(s: &NotifySettings) -> Queue {
        Queue {
            inner: Mutex::new(Inner::default()),
            room: Arc::new(Semaphore::new(s.queue)),
            capacity: s.queue,
            spill: Mutex::new(VecDeque::new()),
            unindexed: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// The room a group of `n` notifications takes (at most the whole queue, so any group fits).
    fn room_for(&self, n: usize) -> u32 {
        n.clamp(1, self.capacity) as u32
    }

    /// Marks an outbox entry as in memory before the store makes it visible, so a read-back of
    /// the outbox never queues it a second time.
    pub fn hold(&self, outbox: &str, jobs: usize) {
        self.inner.lock().held.insert(outbox.to_owned(), Held { remaining: jobs, permits: 0 });
    }

    pub fn unhold(&self, outbox: &str) {
        self.inner.lock().held.remove(outbox);
    }

    fn enqueue(&self, jobs: Vec<Job>) {
        let mut inner = self.inner.lock();
        for j in jobs {
            let k = j.work_key();
            inner.per_sub.entry(k.clone()).or_default().push_back(j);
            if !inner.running.contains(&k) && !inner.ready.contains(&k) {
                inner.ready.push_back(k);
            }
        }
        drop(inner);
        self.wake.notify_one();
    }

    /// Queues a periodic notification (not in the outbox), waiting for room.
    pub async fn push_loose(&self, j: Job) {
        match self.room.acquire().await {
            Ok(p) => p.forget(),
            Err(_) => return,
        }
        self.enqueue(vec![j]);
    }

    /// Queues the notifications of an outbox entry read back from the store, waiting for room;
    /// nothing happens if the entry is already in memory.
    pub async fn push_group(&self, outbox: String, jobs: Vec<Job>) {
        if jobs.is_empty() || self.inner.lock().held.contains_key(&outbox) {
            return;
        }
        let permits = self.room_for(jobs.len());
        match self.room.acquire_many(permits).await {
            Ok(p) => p.forget(),
            Err(_) => return,
        }
        {
            let mut inner = self.inner.lock();
            if inner.held.contains_key(&outbox) {
                drop(inner);
                self.room.add_permits(permits as usize);
                return;
            }
            inner.held.insert(outbox, Held { remaining: jobs.len(), permits });
        }
        self.enqueue(jobs);
    }

    /// Queues the notifications of a write group (their outbox entry already held), never
    /// waiting: when the queue is full they stay only in the outbox and are read back later.
    pub fn push_committed(&self, outbox: &str, jobs: Vec<Job>) {
        let permits = self.room_for(jobs.len());
        match self.room.try_acquire_many(permits) {
            Ok(p) => {
                p.forget();
                if let Some(h) = self.inner.lock().held.get_mut(outbox) {
                    h.permits = permits;
                }
                self.enqueue(jobs);
            }
            Err(_) => {
                self.unhold(outbox);
                let mut spill = self.spill.lock();
                if spill.len() < SPILL_INDEX {
                    spill.push_back(outbox.to_owned());
                } else {
                    self.unindexed.store(true, Ordering::Release);
                }
            }
        }
    }

    fn finish(&self, j: &Job) {
        let Some(o) = &j.outbox else {
            self.room.add_permits(1);
            return;
        };
        let mut inner = self.inner.lock();
        let release = match inner.held.get_mut(o) {
            Some(h) => {
                h.remaining = h.remaining.saturating_sub(1);
                (h.remaining == 0).then_some(h.permits)
            }
            None => None,
        };
        if let Some(permits) = release {
            inner.held.remove(o);
            inner.done.push(o.clone());
            drop(inner);
            self.room.add_permits(permits as usize);
        }
    }

    /// Forgets an outbox entry that has nothing left to deliver.
    pub fn discard(&self, outbox: String) {
        self.inner.lock().done.push(outbox);
    }

    /// Asks for the outbox to be read back (at start-up).
    pub fn mark_spilled(&self) {
        self.unindexed.store(true, Ordering::Release);
    }

    /// How many notifications are in memory.
    pub fn len(&self) -> usize {
        self.capacity - self.room.available_permits()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The transports by URI scheme.
pub struct Senders {
    http: Arc<dyn Sender>,
    mqtt: Arc<dyn Sender>,
    amqp: Arc<dyn Sender>,
}

impl Senders {
    fn new(s: &NotifySettings) -> Senders {
        Senders {
            http: Arc::new(super::http::HttpSender::new(s.timeout)),
            mqtt: Arc::new(super::mqtt::MqttSender::with_timeout(s.timeout)),
            amqp: Arc::new(super::amqp::AmqpSender::with_timeout(s.timeout)),
        }
    }

    fn for_uri(&self, uri: &str) -> Result<Arc<dyn Sender>, SendError> {
        let scheme = uri.split(':').next().unwrap_or("").to_ascii_lowercase();
        match scheme.as_str() {
            "http" | "https" => Ok(self.http.clone()),
            "mqtt" | "mqtts" => Ok(self.mqtt.clone()),
            "amqp" | "amqps" => Ok(self.amqp.clone()),
            other => Err(SendError(format!("no transport for {other}:// endpoints"))),
        }
    }
}

/// Starts the dispatcher and the flusher.
pub fn start(n: Arc<Notifier>, s: NotifySettings) {
    let senders = Arc::new(Senders::new(&s));
    let in_flight = Arc::new(Semaphore::new(s.concurrency));
    let window = s.retry_window;
    let dispatcher = n.clone();
    tokio::spawn(async move {
        loop {
            let next = dispatcher.queue.inner.lock().ready.pop_front();
            match next {
                Some(k) => {
                    dispatcher.queue.inner.lock().running.insert(k.clone());
                    let (n, senders, in_flight) = (dispatcher.clone(), senders.clone(), in_flight.clone());
                    tokio::spawn(async move { work(n, k, senders, in_flight, window).await });
                }
                None => dispatcher.queue.wake.notified().await,
            }
        }
    });
    // Three loops, so that none waits for another: clearing the outbox of what was delivered,
    // reading back what stayed only in the outbox, and persisting statistics.
    let outbox = n.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            flush_outbox(&outbox).await;
        }
    });
    let reloader = n.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            reload_spilled(&reloader).await;
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            flush_stats(&n).await;
        }
    });
}

/// Drains one subscription's queue, in order.
async fn work(n: Arc<Notifier>, k: String, senders: Arc<Senders>, in_flight: Arc<Semaphore>, window: Duration) {
    loop {
        let job = {
            let mut inner = n.queue.inner.lock();
            match inner.per_sub.get_mut(&k).and_then(VecDeque::pop_front) {
                Some(j) => j,
                None => {
                    inner.per_sub.remove(&k);
                    inner.running.remove(&k);
                    return;
                }
            }
        };
        deliver(&n, &job, &senders, &in_flight, window).await;
        n.queue.finish(&job);
    }
}

/// Sends one notification until it is accepted or its retry window has passed.
async fn deliver(n: &Notifier, job: &Job, senders: &Senders, in_flight: &Semaphore, window: Duration) {
    let k = key(&job.tenant, &job.sub);
    let kind = job.kind();
    let mut backoff = Duration::from_millis(250);
    let mut first = true;
    loop {
        let Some(compiled) = n.registry.read().of(kind).get(&k).map(|e| e.compiled.clone()) else {
            // The subscription is gone: nobody is waiting for this notification any more.
            return;
        };
        let linked = match compiled.render.join {
            _ if job.csource.is_some() => None,
            Some(_) => {
                let roots: Vec<&crate::model::Entity> = job.fired.iter().filter_map(|f| f.new.as_deref()).collect();
                let level = compiled.render.join_level;
                match crate::ops::retrieve_entity::linked(n.store.as_ref(), &job.tenant, &roots, level, &[]).await {
                    Ok(l) => Some(Arc::new(l)),
                    Err(e) => {
                        tracing::warn!(sub = %job.sub, error = %e, "linked entities could not be read for a join");
                        None
                    }
                }
            }
            None => None,
        };
        let now = now_millis();
        let out = match &job.csource {
            Some(p) => super::csource::build(&compiled, p, now),
            None => super::payload::build(&compiled, &job.fired, linked, now),
        };
        let result = match senders.for_uri(&out.uri) {
            Ok(sender) => {
                let _permit = in_flight.acquire().await;
                sender.send(&out).await
            }
            Err(e) => Err(e),
        };
        let ok = result.is_ok();
        record(n, kind, &k, now, result.err(), first);
        first = false;
        if ok {
            return;
        }
        if now_millis() - job.queued_at > window.as_millis() as i64 {
            tracing::warn!(sub = %job.sub, "a notification was given up after its retry window");
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Records one delivery attempt in the subscription's status; `first`: the notification's
/// first attempt, the only one counted in `timesSent` and `timesFailed`.
pub(crate) fn record(n: &Notifier, kind: Kind, k: &str, now: i64, err: Option<SendError>, first: bool) {
    let mut reg = n.registry.write();
    let Some(e) = reg.of_mut(kind).get_mut(k) else { return };
    let s = &mut e.doc.stats;
    if first {
        s.times_sent += 1;
    }
    s.last_notification = Some(now);
    match err {
        None => {
            s.last_success = Some(now);
            s.consecutive_errors = 0;
            s.last_error = None;
        }
        Some(err) => {
            tracing::debug!(sub = %e.doc.id, error = %err, "notification failed");
            if first {
                s.times_failed += 1;
            }
            s.last_failure = Some(now);
            s.consecutive_errors += 1;
            s.last_error = Some(err.0);
        }
    }
    e.dirty = true;
}

async fn flush_outbox(n: &Notifier) {
    let done = std::mem::take(&mut n.queue.inner.lock().done);
    if done.is_empty() {
        return;
    }
    if let Err(e) = n.store.delete_meta_many(OUTBOX, done.clone()).await {
        tracing::error!(error = %e, "cannot clear delivered notifications from the outbox; retrying");
        n.queue.inner.lock().done.extend(done);
    }
}

/// Persists the statistics that changed, in one commit. Statistics are not on the path of any
/// write: after a crash they may lag by up to one flush period (2 s).
pub(crate) async fn flush_stats(n: &Notifier) {
    let _guard = n.persist_lock.lock().await;
    for kind in [Kind::Entity, Kind::Csource] {
        let docs: Vec<(String, serde_json::Value)> = {
            let mut reg = n.registry.write();
            reg.of_mut(kind)
                .iter_mut()
                .filter(|(_, e)| e.dirty)
                .filter_map(|(k, e)| {
                    e.dirty = false;
                    serde_json::to_value(&e.doc).ok().map(|v| (k.clone(), v))
                })
                .collect()
        };
        if docs.is_empty() {
            continue;
        }
        if let Err(e) = n.store.put_meta_many(kind.collection(), docs).await {
            tracing::error!(error = %e, "cannot persist subscription statistics");
        }
    }
}

/// Reads back notifications that stayed in the outbox while the queue was full: first those
/// remembered in the spill index, in order, then (after a start-up or an index overflow) any
/// other entry the outbox holds.
async fn reload_spilled(n: &Notifier) {
    if n.queue.len() > n.queue.capacity / 2 {
        return;
    }
    let mut room = n.queue.room.available_permits();
    let mut cache = EntityCache::default();
    loop {
        let Some(k) = n.queue.spill.lock().pop_front() else { break };
        let v = match n.store.get_meta(OUTBOX, &k).await {
            Ok(Some(v)) => v,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                n.queue.spill.lock().push_front(k);
                return;
            }
        };
        if !try_reload(n, k, &v, &mut room, &mut cache).await {
            return;
        }
    }
    if !n.queue.unindexed.swap(false, Ordering::AcqRel) {
        return;
    }
    let items = match n.store.list_meta(OUTBOX).await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the outbox");
            n.queue.unindexed.store(true, Ordering::Release);
            return;
        }
    };
    let mut items: Vec<(String, serde_json::Value)> = {
        let inner = n.queue.inner.lock();
        let done: HashSet<&String> = inner.done.iter().collect();
        items.into_iter().filter(|(k, _)| !inner.held.contains_key(k) && !done.contains(k)).collect()
    };
    items.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in items {
        if !try_reload(n, k, &v, &mut room, &mut cache).await {
            // The rest waits for the next read-back.
            n.queue.unindexed.store(true, Ordering::Release);
            return;
        }
    }
}

/// Entities read back in one read-back round, by tenant and id.
pub(crate) type EntityCache = HashMap<(String, String), Option<Arc<crate::model::Entity>>>;

/// Queues one outbox entry if there is room; false when there is none (the entry is put back
/// at the front of the spill index).
async fn try_reload(n: &Notifier, k: String, v: &serde_json::Value, room: &mut usize, cache: &mut EntityCache) -> bool {
    let jobs_count = v["jobs"].as_array().map_or(0, Vec::len);
    let need = n.queue.room_for(jobs_count) as usize;
    if need > *room {
        n.queue.spill.lock().push_front(k);
        return false;
    }
    let jobs = match n.jobs_from_outbox(&k, v, cache).await {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::error!(error = %e, "cannot read back a notification");
            n.queue.spill.lock().push_back(k);
            return true;
        }
    };
    if !jobs.is_empty() {
        *room -= n.queue.room_for(jobs.len()) as usize;
        n.queue.push_group(k, jobs).await;
    }
    true
}
