//! The northbound writer: every measure the transports accept goes to the broker through here.
//!
//! It exists so that a measure is never lost because the broker is briefly down or slow, while the
//! agent's memory stays bounded. Jobs (the entities of one message) are queued per (broker,
//! tenant) lane, several jobs are merged into one upsert of at most `batch_max` entities, and a
//! lane keeps several upserts in flight as long as they touch different entities, so each entity's
//! updates reach the broker in the order they were submitted. Unreachable brokers, 5xx and 429
//! answers are retried with exponential backoff until the writer is shut down; any other refusal
//! rejects the job and the submitter learns the broker's error. At most `queue_capacity` entities
//! wait at any time: beyond that, `submit` waits (back-pressure) instead of growing a queue.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

use crate::error::{AgentError, Result};
use crate::metrics::Metrics;
use crate::ngsi::client::{BrokerClient, Tenant};

/// Upserts of one lane in flight at once (each on entities no other in-flight upsert touches).
const LANE_IN_FLIGHT: usize = 4;
/// Upserts in flight at once over all lanes.
const TOTAL_IN_FLIGHT: usize = 32;
/// First and longest pause between two attempts of a failing upsert.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The broker base URL and tenant a job goes to: jobs of one lane may share an upsert.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LaneKey {
    base: String,
    tenant: Tenant,
}

/// The entities of one submitted message and whom to tell once they are written.
struct Job {
    entities: Vec<Value>,
    ids: HashSet<String>,
    done: oneshot::Sender<Result<()>>,
    /// Capacity held until the job is resolved.
    _permit: Option<OwnedSemaphorePermit>,
}

#[derive(Default)]
struct Lane {
    queue: VecDeque<Job>,
    /// Entity ids in upserts in flight, with how many upserts hold each.
    in_flight_ids: HashMap<String, usize>,
    running: usize,
}

struct Inner {
    client: BrokerClient,
    default_base: String,
    batch_max: usize,
    lanes: Mutex<HashMap<LaneKey, Lane>>,
    capacity: Arc<Semaphore>,
    capacity_total: usize,
    requests: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
}

/// The batching, retrying writer. Cheap to clone; all clones share the queues.
#[derive(Clone)]
pub struct Writer {
    inner: Arc<Inner>,
}

/// Resolves when the broker has accepted every entity of a submitted job, or with the broker's
/// error when it refused them (or `ENTITY_GENERIC_ERROR` 503 when the writer stopped first).
pub struct Accepted {
    rx: Option<oneshot::Receiver<Result<()>>>,
}

impl Accepted {
    /// A job with nothing to write: already accepted.
    pub fn ready() -> Self {
        Accepted { rx: None }
    }

    /// Resolves with what the sender reports (an error if it goes away first).
    pub(crate) fn from_receiver(rx: oneshot::Receiver<Result<()>>) -> Self {
        Accepted { rx: Some(rx) }
    }
}

impl Future for Accepted {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.rx.as_mut() {
            None => Poll::Ready(Ok(())),
            Some(rx) => Pin::new(rx).poll(cx).map(|r| r.unwrap_or_else(|_| Err(stopped()))),
        }
    }
}

impl Writer {
    /// A writer sending to `client`'s broker unless a job names another (`cbHost`).
    pub fn new(client: BrokerClient, batch_max: usize, queue_capacity: usize, metrics: Arc<Metrics>) -> Self {
        let capacity_total = queue_capacity.clamp(1, Semaphore::MAX_PERMITS);
        let (stop, _) = watch::channel(false);
        Writer {
            inner: Arc::new(Inner {
                default_base: client.base().to_owned(),
                client,
                batch_max: batch_max.max(1),
                lanes: Mutex::new(HashMap::new()),
                capacity: Arc::new(Semaphore::new(capacity_total)),
                capacity_total,
                requests: Arc::new(Semaphore::new(TOTAL_IN_FLIGHT)),
                metrics,
                stop,
            }),
        }
    }

    /// Queues the entities for the broker at `base` (the agent's broker when `None`) in `tenant`,
    /// waiting while the queue is full. The returned future resolves once they are written.
    pub async fn submit(&self, base: Option<&str>, tenant: Tenant, entities: Vec<Value>) -> Accepted {
        if entities.is_empty() {
            return Accepted::ready();
        }
        let inner = &self.inner;
        let (tx, rx) = oneshot::channel();
        if *inner.stop.borrow() {
            let _ = tx.send(Err(stopped()));
            return Accepted { rx: Some(rx) };
        }
        // A job larger than the whole queue takes the whole queue rather than waiting forever.
        let wanted = entities.len().min(inner.capacity_total) as u32;
        let permit = match inner.capacity.clone().acquire_many_owned(wanted).await {
            Ok(p) => p,
            Err(_) => {
                let _ = tx.send(Err(stopped()));
                return Accepted { rx: Some(rx) };
            }
        };
        let base = base.map(|b| b.trim_end_matches('/')).filter(|b| !b.is_empty()).unwrap_or(&inner.default_base);
        let key = LaneKey { base: base.to_owned(), tenant };
        let ids = entities.iter().filter_map(|e| e.get("id").and_then(Value::as_str)).map(str::to_owned).collect();
        let job = Job { entities, ids, done: tx, _permit: Some(permit) };
        inner.lanes.lock().entry(key.clone()).or_default().queue.push_back(job);
        Inner::pump(inner, &key);
        Accepted { rx: Some(rx) }
    }

    /// Entities waiting or in flight.
    pub fn queued(&self) -> usize {
        self.inner.capacity_total - self.inner.capacity.available_permits()
    }

    /// Stops retrying: every job not yet written resolves with a 503 error, and later submissions
    /// are refused at once.
    /// Resolves when the writer stops: transports wait on it to stop taking messages.
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.stop.subscribe();
        async move {
            loop {
                if *rx.borrow_and_update() {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }
    }

    pub fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        self.inner.capacity.close();
        let drained: Vec<Job> = self.inner.lanes.lock().values_mut().flat_map(|lane| lane.queue.drain(..)).collect();
        for job in drained {
            let _ = job.done.send(Err(stopped()));
        }
    }
}

impl Inner {
    /// Starts as many upserts of the lane as its limits allow.
    fn pump(self: &Arc<Self>, key: &LaneKey) {
        loop {
            let batch = {
                let mut lanes = self.lanes.lock();
                let Some(lane) = lanes.get_mut(key) else { return };
                if lane.running >= LANE_IN_FLIGHT {
                    return;
                }
                let batch = take_batch(lane, self.batch_max);
                if batch.is_empty() {
                    if lane.running == 0 && lane.queue.is_empty() {
                        lanes.remove(key);
                    }
                    return;
                }
                for job in &batch {
                    for id in &job.ids {
                        *lane.in_flight_ids.entry(id.clone()).or_default() += 1;
                    }
                }
                lane.running += 1;
                batch
            };
            let this = self.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let ids: Vec<String> = batch.iter().flat_map(|j| j.ids.iter().cloned()).collect();
                this.send_batch(&key, batch).await;
                {
                    let mut lanes = this.lanes.lock();
                    if let Some(lane) = lanes.get_mut(&key) {
                        lane.running -= 1;
                        for id in ids {
                            if let Some(n) = lane.in_flight_ids.get_mut(&id) {
                                *n -= 1;
                                if *n == 0 {
                                    lane.in_flight_ids.remove(&id);
                                }
                            }
                        }
                    }
                }
                this.pump(&key);
            });
        }
    }

    /// Writes a batch; when the broker refuses a batch of several jobs, each job is retried alone
    /// so that one bad job does not reject the others.
    async fn send_batch(&self, key: &LaneKey, batch: Vec<Job>) {
        let client = if key.base == self.default_base { self.client.clone() } else { self.client.with_base(&key.base) };
        if batch.len() == 1 {
            for job in batch {
                let r = self.write(&client, &key.tenant, &job.entities).await;
                self.settle(job, r);
            }
            return;
        }
        let entities: Vec<Value> = batch.iter().flat_map(|j| j.entities.iter().cloned()).collect();
        match self.write(&client, &key.tenant, &entities).await {
            Ok(()) => {
                for job in batch {
                    let _ = job.done.send(Ok(()));
                }
            }
            Err(e) if is_stopped(&e) => {
                for job in batch {
                    let _ = job.done.send(Err(e.clone()));
                }
            }
            Err(_) => {
                for job in batch {
                    let r = self.write(&client, &key.tenant, &job.entities).await;
                    self.settle(job, r);
                }
            }
        }
    }

    /// Tells the submitter how its job ended, counting the entities the broker refused. A
    /// refusal the broker sent with a success status (a 207 partial failure) is reported as 500.
    fn settle(&self, job: Job, mut result: Result<()>) {
        if let Err(e) = &mut result
            && !is_stopped(e)
        {
            Metrics::add(&self.metrics.entities_rejected, job.entities.len() as u64);
            tracing::warn!(error = %e.message, "the broker refused a measure");
            if e.status < 400 {
                e.status = 500;
            }
        }
        let _ = job.done.send(result);
    }

    /// Upserts the entities in chunks of `batch_max`, retrying each chunk while the broker is
    /// unreachable or overloaded, until it is accepted, refused, or the writer stops.
    async fn write(&self, client: &BrokerClient, tenant: &Tenant, entities: &[Value]) -> Result<()> {
        for chunk in entities.chunks(self.batch_max) {
            let mut pause = BACKOFF_START;
            let mut stop = self.stop.subscribe();
            loop {
                if *stop.borrow() {
                    return Err(stopped());
                }
                let result = {
                    let Ok(_slot) = self.requests.acquire().await else {
                        return Err(stopped());
                    };
                    client.upsert(tenant, chunk).await
                };
                match result {
                    Ok(()) => {
                        Metrics::add(&self.metrics.entities_upserted, chunk.len() as u64);
                        break;
                    }
                    Err(e) if retriable(e.status) => {
                        Metrics::inc(&self.metrics.upsert_retries);
                        tracing::warn!(broker = client.base(), error = %e.message, retry_in_ms = pause.as_millis() as u64, "upsert failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = stop.changed() => {}
                        }
                        pause = (pause * 2).min(BACKOFF_MAX);
                    }
                    Err(e) => {
                        tracing::debug!(broker = client.base(), error = %e.message, "the broker refused an upsert");
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The error name of a job the writer gave up on because it is stopping (the message was not
/// written, and transports leave it to their broker for redelivery).
pub const STOPPED: &str = "AGENT_STOPPING";

fn stopped() -> AgentError {
    AgentError::new(STOPPED, 503, "the agent is stopping; the measure was not written")
}

/// Whether an error means the job was not written because the writer stopped.
pub fn is_stopped(e: &AgentError) -> bool {
    e.name == STOPPED
}

/// Whether a failed upsert is worth retrying: the broker was unreachable (reported as 503), timed
/// out, overloaded or failing.
fn retriable(status: u16) -> bool {
    status >= 500 || status == 429 || status == 408
}

/// The next batch of a lane: queued jobs in order, up to `batch_max` entities (a larger job goes
/// alone). A job touching an entity that an upsert in flight is writing waits, and so does every
/// later job touching an entity of a waiting job, so each entity's updates stay in order; other
/// jobs go ahead of it. Only the first jobs of the queue are considered, to bound the work.
fn take_batch(lane: &mut Lane, batch_max: usize) -> Vec<Job> {
    let mut batch: Vec<Job> = Vec::new();
    let mut size = 0;
    let mut blocked: HashSet<String> = HashSet::new();
    let mut kept: VecDeque<Job> = VecDeque::new();
    let mut scanned = 0;
    let scan_limit = batch_max.saturating_mul(4).max(64);
    while let Some(job) = lane.queue.pop_front() {
        scanned += 1;
        let waits = job.ids.iter().any(|id| lane.in_flight_ids.contains_key(id) || blocked.contains(id));
        let too_big = !batch.is_empty() && size + job.entities.len() > batch_max;
        if waits || too_big {
            blocked.extend(job.ids.iter().cloned());
            kept.push_back(job);
        } else {
            size += job.entities.len();
            batch.push(job);
        }
        if size >= batch_max || scanned >= scan_limit {
            break;
        }
    }
    // The jobs left behind keep their places at the front.
    while let Some(job) = kept.pop_back() {
        lane.queue.push_front(job);
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(ids: &[&str]) -> (Job, oneshot::Receiver<Result<()>>) {
        let (tx, rx) = oneshot::channel();
        let entities: Vec<Value> = ids.iter().map(|id| json!({"id": id, "type": "T"})).collect();
        let ids = ids.iter().map(|s| s.to_string()).collect();
        (Job { entities, ids, done: tx, _permit: None }, rx)
    }

    #[test]
    fn batches_respect_the_size_limit_and_keep_order() {
        let mut lane = Lane::default();
        let mut rxs = Vec::new();
        for ids in [&["a", "b"][..], &["c"], &["d", "e"], &["f"]] {
            let (j, rx) = job(ids);
            lane.queue.push_back(j);
            rxs.push(rx);
        }
        let first = take_batch(&mut lane, 3);
        let ids: Vec<&str> = first.iter().flat_map(|j| j.entities.iter()).filter_map(|e| e["id"].as_str()).collect();
        assert_eq!(ids, vec!["a", "b", "c"]);
        let second = take_batch(&mut lane, 3);
        assert_eq!(second.len(), 2);
        assert!(lane.queue.is_empty());
    }

    fn batch_ids(batch: &[Job]) -> Vec<String> {
        batch.iter().flat_map(|j| j.entities.iter()).filter_map(|e| e["id"].as_str()).map(str::to_owned).collect()
    }

    #[test]
    fn a_job_on_an_entity_in_flight_waits_with_the_later_jobs_it_shares_entities_with() {
        let mut lane = Lane::default();
        lane.in_flight_ids.insert("a".into(), 1);
        let mut rxs = Vec::new();
        for ids in [&["a"][..], &["b"], &["a", "c"], &["c"], &["d"]] {
            let (j, rx) = job(ids);
            lane.queue.push_back(j);
            rxs.push(rx);
        }
        // `a` is in flight: its job waits, so does the later job on `a` and `c`, and the job on
        // `c` after that one; `b` and `d` go ahead.
        assert_eq!(batch_ids(&take_batch(&mut lane, 10)), vec!["b", "d"]);
        assert_eq!(lane.queue.len(), 3);
        lane.in_flight_ids.clear();
        assert_eq!(batch_ids(&take_batch(&mut lane, 10)), vec!["a", "a", "c", "c"]);
    }

    #[test]
    fn an_oversized_job_goes_alone() {
        let mut lane = Lane::default();
        let (j1, _r1) = job(&["a", "b", "c", "d"]);
        let (j2, _r2) = job(&["e"]);
        lane.queue.push_back(j1);
        lane.queue.push_back(j2);
        assert_eq!(take_batch(&mut lane, 2).len(), 1);
        assert_eq!(take_batch(&mut lane, 2).len(), 1);
    }

    #[test]
    fn only_unreachable_overloaded_or_failing_brokers_are_retried() {
        assert!(retriable(503));
        assert!(retriable(500));
        assert!(retriable(429));
        assert!(!retriable(400));
        assert!(!retriable(404));
        assert!(!retriable(207));
    }

    /// What the stand-in broker saw: each upsert's `id=value` pairs, and how many upserts
    /// arrived while another one on the same entity was still being answered.
    #[derive(Default)]
    struct Seen {
        requests: Vec<Vec<String>>,
        in_flight: HashMap<String, usize>,
        overlaps: usize,
    }

    /// A stand-in broker: records every upsert and answers per `answer` (given the request's
    /// number, from 0, and its entity ids) after `delay` (given the ids) milliseconds.
    async fn mock_broker(
        answer: fn(usize, &[String]) -> u16,
        delay: fn(&HashSet<String>) -> u64,
    ) -> (String, Arc<Mutex<Seen>>) {
        use actix_web::{App, HttpResponse, HttpServer, web};
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let data = web::Data::new(seen.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = HttpServer::new(move || {
            App::new().app_data(data.clone()).route(
                "/ngsi-ld/v1/entityOperations/upsert/",
                web::post().to(move |seen: web::Data<Arc<Mutex<Seen>>>, body: web::Bytes| async move {
                    let entities: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
                    let ids: HashSet<String> =
                        entities.iter().filter_map(|e| e["id"].as_str()).map(str::to_owned).collect();
                    let n = {
                        let mut seen = seen.lock();
                        seen.requests
                            .push(entities.iter().map(|e| format!("{}={}", e["id"], e["v"]["value"])).collect());
                        for id in &ids {
                            let count = seen.in_flight.entry(id.clone()).or_default();
                            *count += 1;
                            if *count > 1 {
                                seen.overlaps += 1;
                            }
                        }
                        seen.requests.len() - 1
                    };
                    tokio::time::sleep(Duration::from_millis(delay(&ids))).await;
                    {
                        let mut seen = seen.lock();
                        for id in &ids {
                            if let Some(c) = seen.in_flight.get_mut(id) {
                                *c -= 1;
                            }
                        }
                    }
                    let ids: Vec<String> = ids.into_iter().collect();
                    let status = answer(n, &ids);
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"))
                        .body(format!("answer {status}"))
                }),
            )
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        (format!("http://127.0.0.1:{port}"), seen)
    }

    fn entity(id: &str, v: i64) -> Value {
        json!({"id": id, "type": "T", "v": {"type": "Property", "value": v}})
    }

    #[tokio::test]
    async fn a_failing_broker_is_retried_until_it_accepts() {
        let (url, seen) = mock_broker(|n, _| if n < 2 { 503 } else { 204 }, |_| 0).await;
        let metrics = Arc::new(Metrics::default());
        let writer = Writer::new(BrokerClient::new(&url, 2000), 10, 100, metrics.clone());
        let r = writer.submit(None, Tenant::new("t", "/"), vec![entity("urn:a", 1)]).await.await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(seen.lock().requests.len(), 3);
        assert_eq!(metrics.upsert_retries.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert_eq!(metrics.entities_upserted.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(writer.queued(), 0);
    }

    #[tokio::test]
    async fn a_refused_job_is_rejected_alone_and_its_batch_mates_are_written() {
        let (url, _seen) =
            mock_broker(|_, ids| if ids.iter().any(|i| i == "urn:bad") { 400 } else { 201 }, |_| 50).await;
        let metrics = Arc::new(Metrics::default());
        let writer = Writer::new(BrokerClient::new(&url, 2000), 10, 100, metrics.clone());
        // The first job occupies the lane's entity while the others queue up and batch together.
        let first = writer.submit(None, Tenant::default(), vec![entity("urn:x", 0)]).await;
        let good = writer.submit(None, Tenant::default(), vec![entity("urn:x", 1)]).await;
        let bad = writer.submit(None, Tenant::default(), vec![entity("urn:bad", 2)]).await;
        assert!(first.await.is_ok());
        assert!(good.await.is_ok());
        let e = bad.await.expect_err("refused");
        assert_eq!(e.status, 400);
        assert!(e.message.contains("answer 400"));
        assert_eq!(metrics.entities_rejected.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn jobs_are_batched_and_each_entity_keeps_its_order() {
        // Upserts of `urn:e0` are slow, so the other entities' updates overtake them.
        let (url, seen) = mock_broker(|_, _| 204, |ids| if ids.contains("urn:e0") { 100 } else { 10 }).await;
        let writer = Writer::new(BrokerClient::new(&url, 2000), 50, 1000, Arc::new(Metrics::default()));
        let mut pending = Vec::new();
        for i in 0..40 {
            let id = format!("urn:e{}", i % 4);
            pending.push(writer.submit(None, Tenant::default(), vec![entity(&id, i)]).await);
        }
        for p in pending {
            assert!(p.await.is_ok());
        }
        let seen = seen.lock();
        assert!(seen.requests.len() < 40, "jobs were merged into fewer upserts: {}", seen.requests.len());
        assert_eq!(seen.requests.iter().map(Vec::len).sum::<usize>(), 40);
        assert_eq!(seen.overlaps, 0, "two upserts of one entity were in flight at once");
        // Upserts touching one entity never overlap, so the broker sees each entity's updates in
        // submission order.
        for e in 0..4 {
            let prefix = format!("\"urn:e{e}\"=");
            let values: Vec<i64> = seen
                .requests
                .iter()
                .flatten()
                .filter_map(|s| s.strip_prefix(&prefix))
                .filter_map(|v| v.parse().ok())
                .collect();
            let expected: Vec<i64> = (0..40).filter(|i| i % 4 == e).collect();
            assert_eq!(values, expected, "order of urn:e{e}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_broker_keeps_the_job_until_shutdown_and_capacity_is_bounded() {
        // Port 9 (discard) on 127.0.0.1 refuses connections: the broker is unreachable.
        let client = BrokerClient::new("http://127.0.0.1:9", 500);
        let metrics = Arc::new(Metrics::default());
        let writer = Writer::new(client, 10, 2, metrics.clone());
        let accepted = writer.submit(None, Tenant::default(), vec![json!({"id": "urn:a", "type": "T"})]).await;
        let second = writer.submit(None, Tenant::default(), vec![json!({"id": "urn:b", "type": "T"})]).await;
        assert_eq!(writer.queued(), 2);
        // The queue is full: a third submission waits.
        let third = tokio::time::timeout(
            Duration::from_millis(300),
            writer.submit(None, Tenant::default(), vec![json!({"id": "urn:c", "type": "T"})]),
        )
        .await;
        assert!(third.is_err(), "a full queue makes submitters wait");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(metrics.upsert_retries.load(std::sync::atomic::Ordering::Relaxed) >= 1);
        writer.shutdown();
        let e = accepted.await.expect_err("unwritten at shutdown");
        assert!(is_stopped(&e));
        assert!(second.await.is_err());
    }
}
