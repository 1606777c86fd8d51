//! The durable measure buffer: MQTT and AMQP measures are appended here and acknowledged to their
//! transport once on disk, then written to the broker in order from here.
//!
//! It exists because acknowledging a message only once the broker has accepted it ties the
//! agent's throughput to the broker's latency and hands every outage to the MQTT broker, whose
//! queues are small (Mosquitto keeps 1,000 QoS 1 messages per subscriber by default and drops the
//! rest): a broker outage of a second at 20,000 measures/s would lose measures. With the buffer,
//! an outage lasts as long as the disk allows (`buffer_max_bytes`; beyond it appends wait, so the
//! transports fall back to holding messages unacknowledged).
//!
//! Layout: segment files `seg-<n>.log` of records (`len u32 LE, crc32 u32 LE, JSON`), and a
//! `cursor` file naming the first record not yet accepted by the broker. One thread appends:
//! it takes every waiting record, writes them, makes them durable with one `fdatasync` (group
//! commit) and only then answers the appenders. One task drains in order: it reads records after
//! the cursor, submits them to the writer (which keeps each entity's order), and a second task
//! advances the cursor as the broker accepts them, persisting it every 200 ms and deleting
//! consumed segments. A restart replays from the persisted cursor: measures accepted in the last
//! 200 ms before a crash are sent again (at least once, in the same order). A new segment is
//! started at every open, so a torn last record of a crash is never appended to; a record whose
//! CRC fails ends its segment.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Notify, mpsc, oneshot};

use super::client::Tenant;
use super::writer::{Accepted, Writer, is_stopped};
use crate::error::{AgentError, Result};
use crate::metrics::Metrics;

/// A segment is closed and a new one started beyond this size.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Appends waiting for the appender thread, at most.
const APPEND_QUEUE: usize = 4096;
/// Records submitted to the writer and not yet accepted, at most.
const IN_FLIGHT: usize = 8192;
/// How often the cursor is persisted and consumed segments deleted.
const CURSOR_EVERY: Duration = Duration::from_millis(200);
/// Records larger than this are refused (a corrupt length must not allocate gigabytes).
const MAX_RECORD: usize = 64 * 1024 * 1024;

/// One buffered write: the entities of one message for one broker and tenant.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    base: Option<String>,
    #[serde(rename = "s")]
    service: String,
    #[serde(rename = "p")]
    subservice: String,
    #[serde(rename = "e")]
    entities: Vec<Value>,
}

/// A position in the log: segment number and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
struct Pos {
    segment: u64,
    offset: u64,
}

struct Append {
    bytes: Vec<u8>,
    done: oneshot::Sender<Result<()>>,
}

struct Shared {
    dir: PathBuf,
    /// The segment being appended to, and how many of its bytes are durable.
    head_segment: AtomicU64,
    head_durable: AtomicU64,
    /// Bytes on disk in segments not yet deleted.
    disk_bytes: AtomicU64,
    max_bytes: u64,
    /// Woken after each durable append, for the drainer.
    appended: Notify,
}

/// The buffer: `append` resolves once the record is durable.
#[derive(Clone)]
pub struct Buffer {
    tx: mpsc::Sender<Append>,
    shared: Arc<Shared>,
}

/// A measure the buffer could not take: reported like a stopping writer's (`AGENT_STOPPING`), so
/// the transports leave the message unacknowledged with their broker rather than dropping it.
fn io_err(e: impl std::fmt::Display) -> AgentError {
    AgentError::new(super::writer::STOPPED, 503, format!("measure buffer: {e}"))
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("seg-{n:020}.log"))
}

fn segments(dir: &Path) -> std::io::Result<BTreeSet<u64>> {
    let mut out = BTreeSet::new();
    for e in fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_prefix("seg-").and_then(|s| s.strip_suffix(".log")).and_then(|s| s.parse().ok()) {
            out.insert(n);
        }
    }
    Ok(out)
}

fn read_cursor(dir: &Path) -> Pos {
    let Ok(text) = fs::read_to_string(dir.join("cursor")) else { return Pos::default() };
    let mut it = text.split_whitespace().map(|x| x.parse::<u64>());
    match (it.next(), it.next()) {
        (Some(Ok(segment)), Some(Ok(offset))) => Pos { segment, offset },
        _ => Pos::default(),
    }
}

fn write_cursor(dir: &Path, pos: Pos) -> std::io::Result<()> {
    let tmp = dir.join("cursor.tmp");
    {
        let mut f = File::create(&tmp)?;
        write!(f, "{} {}", pos.segment, pos.offset)?;
        f.sync_data()?;
    }
    fs::rename(tmp, dir.join("cursor"))?;
    File::open(dir)?.sync_all()
}

impl Buffer {
    /// Opens (or creates) the buffer in `dir` and starts draining it into `writer`: whatever an
    /// earlier run left after its cursor is written first.
    pub fn open(dir: &Path, max_bytes: u64, writer: Writer, metrics: Arc<Metrics>) -> Result<Buffer, String> {
        fs::create_dir_all(dir).map_err(|e| format!("measure buffer {}: {e}", dir.display()))?;
        let existing = segments(dir).map_err(|e| format!("measure buffer {}: {e}", dir.display()))?;
        let mut cursor = read_cursor(dir);
        if let Some(&first) = existing.first()
            && cursor.segment < first
        {
            cursor = Pos { segment: first, offset: 0 };
        }
        let disk: u64 = existing.iter().filter_map(|n| fs::metadata(segment_path(dir, *n)).ok()).map(|m| m.len()).sum();
        let head = existing.last().map_or(cursor.segment.max(1), |n| n + 1).max(cursor.segment);
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            head_segment: AtomicU64::new(head),
            head_durable: AtomicU64::new(0),
            disk_bytes: AtomicU64::new(disk),
            // The segment being appended to is never deleted: the budget must exceed it.
            max_bytes: max_bytes.max(2 * SEGMENT_BYTES),
            appended: Notify::new(),
        });
        let file = File::create(segment_path(dir, head)).map_err(|e| format!("measure buffer: {e}"))?;
        let (tx, rx) = mpsc::channel(APPEND_QUEUE);
        let appender_shared = shared.clone();
        std::thread::Builder::new()
            .name("agent-buffer".into())
            .spawn(move || appender(appender_shared, rx, head, file))
            .map_err(|e| format!("measure buffer thread: {e}"))?;
        let (accepted_tx, accepted_rx) = mpsc::channel(IN_FLIGHT);
        tokio::spawn(drain(shared.clone(), cursor, writer, accepted_tx));
        tokio::spawn(commit(shared.clone(), cursor, accepted_rx, metrics));
        Ok(Buffer { tx, shared })
    }

    /// Queues the entities of one message for the log (waiting while the appender's queue is
    /// full); the returned future resolves once they are on disk. Appends are made durable in the
    /// order they were queued.
    pub async fn append(&self, base: Option<&str>, tenant: &Tenant, entities: Vec<Value>) -> Result<Accepted> {
        if entities.is_empty() {
            return Ok(Accepted::ready());
        }
        let record = Record {
            base: base.map(str::to_owned),
            service: tenant.service.clone(),
            subservice: tenant.subservice.clone(),
            entities,
        };
        let json = serde_json::to_vec(&record).map_err(io_err)?;
        if json.len() > MAX_RECORD {
            return Err(AgentError::bad_payload("a message too large for the measure buffer"));
        }
        let mut bytes = Vec::with_capacity(json.len() + 8);
        bytes.extend_from_slice(&(json.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
        bytes.extend_from_slice(&json);
        let (done, rx) = oneshot::channel();
        self.tx.send(Append { bytes, done }).await.map_err(|_| io_err("stopped"))?;
        Ok(Accepted::from_receiver(rx))
    }

    /// Bytes on disk not yet consumed (for metrics and tests).
    pub fn disk_bytes(&self) -> u64 {
        self.shared.disk_bytes.load(Ordering::Relaxed)
    }
}

/// The appender thread: group commits until every `Buffer` is dropped.
fn appender(shared: Arc<Shared>, mut rx: mpsc::Receiver<Append>, mut segment: u64, file: File) {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut size = 0u64;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        if size >= SEGMENT_BYTES {
            match File::create(segment_path(&shared.dir, segment + 1)) {
                Ok(f) => {
                    let _ = out.flush().and_then(|_| out.get_ref().sync_data());
                    segment += 1;
                    out = BufWriter::with_capacity(1 << 20, f);
                    size = 0;
                    shared.head_durable.store(0, Ordering::SeqCst);
                    shared.head_segment.store(segment, Ordering::SeqCst);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a new buffer segment; appending to the current one")
                }
            }
        }
        // The disk budget: wait for the drainer to free space (the transports wait meanwhile).
        while shared.disk_bytes.load(Ordering::Relaxed) > shared.max_bytes {
            std::thread::sleep(Duration::from_millis(20));
        }
        let written: u64 = batch.iter().map(|a| a.bytes.len() as u64).sum();
        let result = batch
            .iter()
            .try_for_each(|a| out.write_all(&a.bytes))
            .and_then(|_| out.flush())
            .and_then(|_| out.get_ref().sync_data());
        match result {
            Ok(()) => {
                size += written;
                shared.disk_bytes.fetch_add(written, Ordering::Relaxed);
                shared.head_durable.store(size, Ordering::SeqCst);
                shared.appended.notify_one();
                for a in batch {
                    let _ = a.done.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot write the measure buffer");
                for a in batch {
                    let _ = a.done.send(Err(io_err(&e)));
                }
                // What was half written must not be read: continue in a fresh segment.
                if let Ok(f) = File::create(segment_path(&shared.dir, segment + 1)) {
                    segment += 1;
                    out = BufWriter::with_capacity(1 << 20, f);
                    size = 0;
                    shared.head_durable.store(0, Ordering::SeqCst);
                    shared.head_segment.store(segment, Ordering::SeqCst);
                }
            }
        }
    }
}

/// Reads one record at `pos` from an open segment: `Ok(None)` when there is no whole, valid
/// record there (end of data, torn or corrupt record).
fn read_record(file: &mut File, pos: Pos, limit: u64) -> std::io::Result<Option<(Record, u64)>> {
    if pos.offset + 8 > limit {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(pos.offset))?;
    let mut head = [0u8; 8];
    file.read_exact(&mut head)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len > MAX_RECORD || pos.offset + 8 + len as u64 > limit {
        return Ok(None);
    }
    let mut body = vec![0u8; len];
    file.read_exact(&mut body)?;
    if crc32fast::hash(&body) != crc {
        return Ok(None);
    }
    match serde_json::from_slice::<Record>(&body) {
        Ok(r) => Ok(Some((r, pos.offset + 8 + len as u64))),
        Err(_) => Ok(None),
    }
}

/// The drainer: reads records in order and submits them to the writer.
async fn drain(shared: Arc<Shared>, mut pos: Pos, writer: Writer, accepted: mpsc::Sender<(Pos, Accepted)>) {
    let mut file: Option<(u64, File)> = None;
    loop {
        let head = shared.head_segment.load(Ordering::SeqCst);
        let limit = if pos.segment == head {
            shared.head_durable.load(Ordering::SeqCst)
        } else {
            fs::metadata(segment_path(&shared.dir, pos.segment)).map(|m| m.len()).unwrap_or(0)
        };
        if file.as_ref().map(|(n, _)| *n) != Some(pos.segment) {
            file = File::open(segment_path(&shared.dir, pos.segment)).ok().map(|f| (pos.segment, f));
        }
        let next = match file.as_mut() {
            Some((_, f)) => read_record(f, pos, limit).unwrap_or(None),
            None => None,
        };
        match next {
            Some((record, end)) => {
                let tenant = Tenant::new(record.service, record.subservice);
                let done = writer.submit(record.base.as_deref(), tenant, record.entities).await;
                pos.offset = end;
                if accepted.send((pos, done)).await.is_err() {
                    return;
                }
            }
            None if pos.segment < head => {
                // The end of a closed segment (or a torn record in it): on to the next one.
                pos = Pos { segment: pos.segment + 1, offset: 0 };
            }
            None => {
                let _ = tokio::time::timeout(Duration::from_millis(50), shared.appended.notified()).await;
                if accepted.is_closed() {
                    return;
                }
            }
        }
    }
}

/// Advances the cursor as the broker accepts records, in order; persists it and deletes consumed
/// segments every `CURSOR_EVERY`.
async fn commit(shared: Arc<Shared>, start: Pos, mut accepted: mpsc::Receiver<(Pos, Accepted)>, metrics: Arc<Metrics>) {
    let mut done = start;
    let mut saved = start;
    let mut tick = tokio::time::interval(CURSOR_EVERY);
    loop {
        tokio::select! {
            next = accepted.recv() => {
                let Some((pos, result)) = next else { break };
                match result.await {
                    Ok(()) => {}
                    Err(e) if is_stopped(&e) => break,
                    Err(e) => {
                        Metrics::inc(&metrics.messages_rejected);
                        tracing::warn!(error = %e, "the context broker refused buffered measures; they are dropped");
                    }
                }
                done = pos;
            }
            _ = tick.tick() => {
                if done != saved {
                    persist(&shared, done).await;
                    saved = done;
                }
            }
        }
    }
    if done != saved {
        persist(&shared, done).await;
    }
}

/// Writes the cursor and deletes the segments wholly before it.
async fn persist(shared: &Arc<Shared>, pos: Pos) {
    let shared = shared.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = write_cursor(&shared.dir, pos) {
            tracing::warn!(error = %e, "cannot persist the measure buffer's cursor");
            return;
        }
        if let Ok(all) = segments(&shared.dir) {
            for n in all.range(..pos.segment) {
                let path = segment_path(&shared.dir, *n);
                let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                if fs::remove_file(&path).is_ok() {
                    shared.disk_bytes.fetch_sub(len.min(shared.disk_bytes.load(Ordering::Relaxed)), Ordering::Relaxed);
                }
            }
        }
    })
    .await;
}
