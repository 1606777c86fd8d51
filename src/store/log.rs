//! The embedded store's durable side: an append-only log of operations and snapshots of the
//! whole state, in one directory. This is what makes a write durable before it is acknowledged.
//!
//! Every entity and document lives in memory, so the disk only has to be able to rebuild that
//! state at start. A B-tree file would rewrite pages for every change; here a group of writes is
//! appended to the active log segment as checksummed records and made durable with one
//! `fdatasync`. Segments are zero-filled when they are created, so appending inside one changes
//! no file metadata and the sync flushes the data blocks only (on this project's machines that
//! is several times faster than syncing a growing file).
//!
//! Superseded records (an entity updated many times) are dropped by compaction: when the logs
//! written since the last snapshot outgrow it, the writer closes the active segment, captures
//! the in-memory state (cheap: entities are shared immutable values) and a background thread
//! writes it as snapshot `N` (temporary name, fsync, rename), then deletes the segments and
//! snapshots it supersedes. At start the newest snapshot is read, then every segment numbered
//! after it, in order. A segment is never appended to after a restart: the broker always opens
//! a new one, so a torn group at the end of the segment that was active at a crash (never
//! acknowledged) is followed by nothing but zeros, and reading stops there.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One durable operation, by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskOp {
    PutEntity { key: String, bytes: Vec<u8> },
    DelEntity { key: String },
    PutTenant { name: String },
    PutMeta { key: String, bytes: Vec<u8> },
    DelMeta { key: String },
}

/// The last record of a complete snapshot.
const TAG_END: u8 = 6;

impl DiskOp {
    /// Approximate size, for sizing buffers.
    pub fn size(&self) -> usize {
        match self {
            DiskOp::PutEntity { key, bytes } | DiskOp::PutMeta { key, bytes } => key.len() + bytes.len(),
            DiskOp::DelEntity { key } | DiskOp::DelMeta { key } => key.len(),
            DiskOp::PutTenant { name } => name.len(),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let (tag, a, b): (u8, &[u8], &[u8]) = match self {
            DiskOp::PutEntity { key, bytes } => (1, key.as_bytes(), bytes),
            DiskOp::DelEntity { key } => (2, key.as_bytes(), &[]),
            DiskOp::PutTenant { name } => (3, name.as_bytes(), &[]),
            DiskOp::PutMeta { key, bytes } => (4, key.as_bytes(), bytes),
            DiskOp::DelMeta { key } => (5, key.as_bytes(), &[]),
        };
        encode_record(tag, a, b, out);
    }

    /// The record bytes, for tests that lay out files by hand.
    #[cfg(test)]
    pub fn encode_for_test(&self, out: &mut Vec<u8>) {
        self.encode(out);
    }

    fn decode(payload: &[u8]) -> Option<DiskOp> {
        let tag = *payload.first()?;
        let mut pos = 1;
        let mut field = || -> Option<Vec<u8>> {
            let len = u32::from_le_bytes(payload.get(pos..pos + 4)?.try_into().ok()?) as usize;
            let v = payload.get(pos + 4..pos + 4 + len)?.to_vec();
            pos += 4 + len;
            Some(v)
        };
        let a = String::from_utf8(field()?).ok()?;
        let b = field()?;
        Some(match tag {
            1 => DiskOp::PutEntity { key: a, bytes: b },
            2 => DiskOp::DelEntity { key: a },
            3 => DiskOp::PutTenant { name: a },
            4 => DiskOp::PutMeta { key: a, bytes: b },
            5 => DiskOp::DelMeta { key: a },
            _ => return None,
        })
    }
}

/// How many log bytes an operation makes obsolete when it replaces or deletes what a key held:
/// the old record's size is not known, so a put is taken to replace a record of its own size,
/// and a delete one of a typical entity or document.
pub fn supersedes(op: &DiskOp) -> u64 {
    match op {
        DiskOp::PutEntity { .. } | DiskOp::PutMeta { .. } | DiskOp::PutTenant { .. } => op.size() as u64 + 17,
        DiskOp::DelEntity { .. } => 512,
        DiskOp::DelMeta { .. } => 256,
    }
}

/// `[payload length][crc32 of payload][tag, length-prefixed a, length-prefixed b]`.
fn encode_record(tag: u8, a: &[u8], b: &[u8], out: &mut Vec<u8>) {
    let len = 9 + a.len() + b.len();
    out.reserve(8 + len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let start = out.len();
    out.push(tag);
    out.extend_from_slice(&(a.len() as u32).to_le_bytes());
    out.extend_from_slice(a);
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
    let crc = crc32fast::hash(&out[start..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

const LOG_MAGIC: &[u8; 8] = b"ORBLOG01";
const SNAP_MAGIC: &[u8; 8] = b"ORBSNP01";

/// Sizes that decide when segments rotate and the logs are compacted.
#[derive(Debug, Clone, Copy)]
pub struct LogConfig {
    /// Size of the first segment a broker opens; each rotation doubles it up to `max_segment`,
    /// so a short-lived broker with few writes zero-fills little.
    pub first_segment: u64,
    pub max_segment: u64,
    /// Compaction starts when the segments written since the last snapshot hold more than
    /// this and more than the snapshot itself (so the directory stays within about twice
    /// the live data plus this).
    pub compact_min: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { first_segment: 1 << 20, max_segment: 32 << 20, compact_min: 64 << 20 }
    }
}

/// Writes a snapshot's operations, one by one.
pub type SnapshotWriter<'a> = &'a mut dyn FnMut(DiskOp) -> std::io::Result<()>;
/// Produces a snapshot's operations into the writer (runs on the compaction thread).
pub type SnapshotSource = Box<dyn FnOnce(SnapshotWriter<'_>) -> std::io::Result<()> + Send>;

/// Progress of the background compaction, shared with its thread.
#[derive(Default)]
struct Compaction {
    running: AtomicBool,
    /// Size of the newest complete snapshot.
    snapshot_bytes: AtomicU64,
    /// Bytes of the segments the newest complete snapshot does not cover.
    since_snapshot: AtomicU64,
    /// The part of all that (snapshot and segments) later records made obsolete, estimated.
    garbage: AtomicU64,
}

/// The log directory, owned by the store's writer thread.
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    active: File,
    active_no: u64,
    /// Where the next group goes in the active segment.
    pos: u64,
    /// The active segment's zero-filled size.
    cap: u64,
    next_cap: u64,
    /// Set when a write or sync failed: what the disk holds is then unknown, so every later
    /// write is refused until the broker restarts and reads the log back.
    poisoned: bool,
    compaction: Arc<Compaction>,
    compactor: Option<std::thread::JoinHandle<()>>,
    spare: Option<Spare>,
    /// Holds an exclusive lock on `orbis.lock` while the log is open: two brokers writing one
    /// directory would interleave their segments.
    _lock: File,
}

fn segment_path(dir: &Path, no: u64) -> PathBuf {
    dir.join(format!("orbis-{no:016}.log"))
}

fn snapshot_path(dir: &Path, no: u64) -> PathBuf {
    dir.join(format!("orbis-{no:016}.snap"))
}

/// The numbered files of the directory: (segments, complete snapshots). With `clean`, files
/// left by an interrupted snapshot or segment creation are deleted (only at open: later, the
/// writer may be creating one).
fn list(dir: &Path, clean: bool) -> std::io::Result<(Vec<u64>, Vec<u64>)> {
    let (mut logs, mut snaps) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix("orbis-") else { continue };
        if let Some(no) = rest.strip_suffix(".log").and_then(|n| n.parse().ok()) {
            logs.push(no);
        } else if let Some(no) = rest.strip_suffix(".snap").and_then(|n| n.parse().ok()) {
            snaps.push(no);
        } else if clean && rest.ends_with(".tmp") {
            // An interrupted snapshot or segment: never used.
            std::fs::remove_file(dir.join(name))?;
        }
    }
    logs.sort_unstable();
    snaps.sort_unstable();
    Ok((logs, snaps))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn corrupt(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// How reading a file of records ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// Zeros or the end of the file: everything written was read.
    Clean,
    /// A record failed its length or checksum: a group torn by a crash.
    Torn,
    /// A snapshot's end record.
    End,
}

/// Reads the records of one file after its `magic` (none for the log of earlier versions),
/// passing each to `apply`. Returns the bytes read and how the file ended.
fn read_file(
    path: &Path,
    magic: Option<&[u8; 8]>,
    apply: &mut dyn FnMut(DiskOp) -> std::io::Result<bool>,
    garbage: &mut u64,
) -> std::io::Result<(u64, Ending)> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut r = BufReader::with_capacity(256 << 10, file);
    let mut pos = 0u64;
    if let Some(magic) = magic {
        let mut head = [0u8; 8];
        if size < 8 || r.read_exact(&mut head).is_err() || &head != magic {
            return Err(corrupt(format!("{} is not an orbis log file", path.display())));
        }
        pos = 8;
    }
    let mut payload = Vec::new();
    loop {
        let mut head = [0u8; 8];
        if pos + 8 > size || r.read_exact(&mut head).is_err() {
            return Ok((pos, Ending::Clean));
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as u64;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len == 0 && crc == 0 {
            return Ok((pos, Ending::Clean));
        }
        if pos + 8 + len > size {
            return Ok((pos, Ending::Torn));
        }
        payload.resize(len as usize, 0);
        r.read_exact(&mut payload)?;
        if crc32fast::hash(&payload) != crc {
            return Ok((pos, Ending::Torn));
        }
        pos += 8 + len;
        if payload.first() == Some(&TAG_END) {
            return Ok((pos, Ending::End));
        }
        match DiskOp::decode(&payload) {
            Some(op) => {
                let estimate = supersedes(&op);
                if apply(op)? {
                    *garbage += estimate;
                }
            }
            None => return Ok((pos - 8 - len, Ending::Torn)),
        }
    }
}

/// Makes segment `no` zero-filled to `cap` bytes, with its header, under a temporary name, so a
/// crash never leaves a half-made segment under a real name.
fn prepare_segment(dir: &Path, no: u64, cap: u64) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(spare_path(dir, no))?;
    f.write_all(LOG_MAGIC)?;
    let zeros = vec![0u8; 64 << 10];
    let mut left = cap.saturating_sub(8);
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    f.sync_all()
}

fn spare_path(dir: &Path, no: u64) -> PathBuf {
    dir.join(format!("orbis-{no:016}.log.tmp"))
}

/// Gives a prepared segment its real name and opens it.
fn install_segment(dir: &Path, no: u64) -> std::io::Result<File> {
    let path = segment_path(dir, no);
    std::fs::rename(spare_path(dir, no), &path)?;
    sync_dir(dir)?;
    OpenOptions::new().read(true).write(true).open(&path)
}

/// Lowers the calling thread's priority (nice 10). Zero-filling the next segment and writing
/// snapshots are background work: under load they should mostly take the CPU time the writers
/// leave idle (waiting on syncs), not time from requests. At nice 10 they still get about a
/// tenth of a saturated core, so a spare segment is ready long before the active one fills.
fn in_background() {
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10) {
        tracing::debug!(error = %e, "could not lower a background thread's priority");
    }
}

/// The next segment, zero-filled by a background thread while the active one fills, so a
/// rotation does not stall the writers queued behind it.
struct Spare {
    no: u64,
    cap: u64,
    ready: std::thread::JoinHandle<std::io::Result<()>>,
}

impl Spare {
    fn start(dir: &Path, no: u64, cap: u64) -> Option<Spare> {
        let dir = dir.to_owned();
        let ready = std::thread::Builder::new()
            .name("orbis-store-segment".into())
            .spawn(move || {
                in_background();
                prepare_segment(&dir, no, cap)
            })
            .ok()?;
        Some(Spare { no, cap, ready })
    }
}

/// Writes snapshot `no` from `source`, makes it durable under its real name, then deletes the
/// files it supersedes. Returns its size.
fn write_snapshot(dir: &Path, no: u64, source: SnapshotSource) -> std::io::Result<u64> {
    let tmp = dir.join(format!("orbis-{no:016}.snap.tmp"));
    let f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
    let mut w = BufWriter::with_capacity(1 << 20, &f);
    w.write_all(SNAP_MAGIC)?;
    let mut size = 8u64;
    let mut buf = Vec::new();
    source(&mut |op| {
        buf.clear();
        op.encode(&mut buf);
        size += buf.len() as u64;
        w.write_all(&buf)
    })?;
    buf.clear();
    encode_record(TAG_END, &[], &[], &mut buf);
    size += buf.len() as u64;
    w.write_all(&buf)?;
    w.flush()?;
    drop(w);
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, snapshot_path(dir, no))?;
    sync_dir(dir)?;
    let (logs, snaps) = list(dir, false)?;
    for old in logs.into_iter().filter(|n| *n <= no) {
        std::fs::remove_file(segment_path(dir, old))?;
    }
    for old in snaps.into_iter().filter(|n| *n < no) {
        std::fs::remove_file(snapshot_path(dir, old))?;
    }
    Ok(size)
}

impl Log {
    /// Opens the log directory: reads the newest snapshot and every later segment in order,
    /// passing their operations to `apply` (which says whether the operation replaced or deleted
    /// what its key held), then opens a new segment for this run's writes.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        apply: &mut dyn FnMut(DiskOp) -> std::io::Result<bool>,
    ) -> std::io::Result<Log> {
        std::fs::create_dir_all(dir)?;
        let lock = OpenOptions::new().write(true).create(true).truncate(false).open(dir.join("orbis.lock"))?;
        if lock.try_lock().is_err() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                format!("the data directory {} is in use by another process", dir.display()),
            ));
        }
        let (logs, snaps) = list(dir, true)?;
        let mut last = 0u64;
        let mut snapshot_bytes = 0u64;
        if let Some(&snap) = snaps.last() {
            let path = snapshot_path(dir, snap);
            let (size, ending) = read_file(&path, Some(SNAP_MAGIC), apply, &mut 0)?;
            if ending != Ending::End {
                return Err(corrupt(format!("snapshot {} is incomplete", path.display())));
            }
            snapshot_bytes = size;
            last = snap;
        }
        let (mut since_snapshot, mut garbage) = (0u64, 0u64);
        let after = last;
        for &no in logs.iter().filter(|n| **n > after) {
            let path = segment_path(dir, no);
            let (read, ending) = read_file(&path, Some(LOG_MAGIC), apply, &mut garbage)?;
            if ending == Ending::Torn {
                tracing::warn!(segment = %path.display(), valid = read, "ignoring a torn group at the end of a log segment");
            }
            since_snapshot += read;
            last = no;
            // The segment is never appended to again: a segment with no records goes, and the
            // zero-filled (or torn) tail of the others is given back, so restarts do not pile
            // up preallocated space.
            if read <= 8 {
                std::fs::remove_file(&path)?;
            } else if std::fs::metadata(&path)?.len() > read {
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(read)?;
                f.sync_all()?;
            }
        }
        for &no in logs.iter().filter(|n| Some(*n) <= snaps.last()) {
            std::fs::remove_file(segment_path(dir, no))?;
        }
        let active_no = last.max(logs.last().copied().unwrap_or(0)) + 1;
        let cap = config.first_segment.max(64);
        prepare_segment(dir, active_no, cap)?;
        let active = install_segment(dir, active_no)?;
        let next_cap = (cap * 2).min(config.max_segment.max(cap));
        let compaction = Arc::new(Compaction::default());
        compaction.snapshot_bytes.store(snapshot_bytes, Ordering::Relaxed);
        compaction.since_snapshot.store(since_snapshot, Ordering::Relaxed);
        compaction.garbage.store(garbage, Ordering::Relaxed);
        Ok(Log {
            dir: dir.to_owned(),
            config,
            active,
            active_no,
            pos: 8,
            cap,
            next_cap,
            poisoned: false,
            compaction,
            compactor: None,
            // The first spare is made at the first rotation: a broker that stays idle never
            // starts the thread (each thread costs about a MiB of resident memory).
            spare: None,
            _lock: lock,
        })
    }

    /// Appends the operations and makes them durable (one `fdatasync`). `superseded` is what
    /// they make obsolete (the sum of [`supersedes`] over those replacing or deleting a key).
    pub fn append(&mut self, ops: &[DiskOp], superseded: u64) -> std::io::Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        if self.poisoned {
            return Err(std::io::Error::other("an earlier write to the log failed; restart the broker"));
        }
        let mut buf = Vec::with_capacity(ops.iter().map(|o| o.size() + 17).sum());
        for op in ops {
            op.encode(&mut buf);
        }
        if let Err(e) = self.active.write_all_at(&buf, self.pos).and_then(|_| self.active.sync_data()) {
            self.poisoned = true;
            return Err(e);
        }
        self.pos += buf.len() as u64;
        self.compaction.since_snapshot.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.compaction.garbage.fetch_add(superseded, Ordering::Relaxed);
        if self.pos >= self.cap
            && let Err(e) = self.rotate()
        {
            // The group is durable; only the next segment could not be made.
            self.poisoned = true;
            tracing::error!(error = %e, "could not open a new log segment");
        }
        Ok(())
    }

    /// Closes the active segment and opens the next one.
    fn rotate(&mut self) -> std::io::Result<()> {
        let no = self.active_no + 1;
        let prepared = match self.spare.take() {
            Some(spare) if spare.no == no && spare.cap == self.next_cap => spare.ready.join().ok().and_then(Result::ok),
            Some(spare) => {
                let _ = spare.ready.join();
                None
            }
            None => None,
        };
        if prepared.is_none() {
            prepare_segment(&self.dir, no, self.next_cap)?;
        }
        self.active = install_segment(&self.dir, no)?;
        self.active_no = no;
        self.pos = 8;
        self.cap = self.next_cap;
        self.next_cap = (self.next_cap * 2).min(self.config.max_segment.max(self.cap));
        self.spare = Spare::start(&self.dir, no + 1, self.next_cap);
        Ok(())
    }

    /// Whether obsolete records make up more than `compact_min` and more than half of the
    /// directory, and no compaction runs. Creates alone never make a compaction due: there is
    /// nothing to drop, and rewriting would only double the writes.
    pub fn compaction_due(&self) -> bool {
        let c = &self.compaction;
        let garbage = c.garbage.load(Ordering::Relaxed);
        let total = c.snapshot_bytes.load(Ordering::Relaxed) + c.since_snapshot.load(Ordering::Relaxed);
        !self.poisoned && !c.running.load(Ordering::Acquire) && garbage > self.config.compact_min && garbage * 2 > total
    }

    /// Starts a compaction: closes the active segment, so the snapshot `source` describes
    /// exactly what the closed segments hold, and writes it on a background thread. Must be
    /// called between groups, with `source` capturing the current state.
    pub fn compact(&mut self, source: SnapshotSource) -> std::io::Result<()> {
        if let Some(h) = self.compactor.take() {
            let _ = h.join();
        }
        let covered = self.active_no;
        self.rotate()?;
        let c = self.compaction.clone();
        c.running.store(true, Ordering::Release);
        let covered_bytes = c.since_snapshot.swap(0, Ordering::Relaxed);
        let covered_garbage = c.garbage.swap(0, Ordering::Relaxed);
        let dir = self.dir.clone();
        let handle = std::thread::Builder::new().name("orbis-store-compactor".into()).spawn(move || {
            in_background();
            match write_snapshot(&dir, covered, source) {
                Ok(size) => c.snapshot_bytes.store(size, Ordering::Relaxed),
                Err(e) => {
                    // The segments stay: nothing is lost, the next compaction covers them too.
                    tracing::error!(error = %e, "log compaction failed");
                    c.since_snapshot.fetch_add(covered_bytes, Ordering::Relaxed);
                    c.garbage.fetch_add(covered_garbage, Ordering::Relaxed);
                }
            }
            c.running.store(false, Ordering::Release);
        });
        match handle {
            Ok(h) => {
                self.compactor = Some(h);
                Ok(())
            }
            Err(e) => {
                self.compaction.running.store(false, Ordering::Release);
                self.compaction.since_snapshot.fetch_add(covered_bytes, Ordering::Relaxed);
                self.compaction.garbage.fetch_add(covered_garbage, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Writes a snapshot now, on this thread (used once, to convert an older data directory).
    pub fn compact_now(&mut self, source: SnapshotSource) -> std::io::Result<()> {
        self.compact(source)?;
        if let Some(h) = self.compactor.take() {
            let _ = h.join();
        }
        Ok(())
    }
}

impl Drop for Log {
    /// Waits for a running compaction and the spare segment, so the directory is complete and
    /// released when the store closes.
    fn drop(&mut self) {
        if let Some(h) = self.compactor.take() {
            let _ = h.join();
        }
        if let Some(spare) = self.spare.take() {
            let _ = spare.ready.join();
        }
    }
}

/// Reads the write-ahead log of earlier versions (records without a file header), passing its
/// operations to `apply`.
pub fn read_legacy(path: &Path, apply: &mut dyn FnMut(DiskOp) -> std::io::Result<bool>) -> std::io::Result<()> {
    if path.exists() {
        read_file(path, None, apply, &mut 0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops() -> Vec<DiskOp> {
        vec![
            DiskOp::PutEntity { key: "\u{0}urn:a".into(), bytes: b"{}".to_vec() },
            DiskOp::DelEntity { key: "t\u{0}urn:b".into() },
            DiskOp::PutTenant { name: "t".into() },
            DiskOp::PutMeta { key: "c\u{0}k".into(), bytes: b"[1]".to_vec() },
            DiskOp::DelMeta { key: "c\u{0}k".into() },
        ]
    }

    fn small() -> LogConfig {
        LogConfig { first_segment: 256, max_segment: 1024, compact_min: 2048 }
    }

    fn reopen(dir: &Path, config: LogConfig) -> (Log, Vec<DiskOp>) {
        let mut seen = Vec::new();
        let log = Log::open(dir, config, &mut |op| {
            seen.push(op);
            Ok(false)
        })
        .unwrap();
        (log, seen)
    }

    #[test]
    fn records_round_trip_across_restarts_and_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, seen) = reopen(dir.path(), small());
        assert!(seen.is_empty());
        for _ in 0..20 {
            log.append(&ops(), 0).unwrap();
        }
        assert!(log.active_no > 1, "small segments rotate");
        drop(log);
        let (mut log, seen) = reopen(dir.path(), small());
        assert_eq!(seen.len(), 100);
        assert_eq!(&seen[..5], &ops()[..]);
        log.append(&ops()[..1], 0).unwrap();
        drop(log);
        let (_, seen) = reopen(dir.path(), small());
        assert_eq!(seen.len(), 101, "a restart writes to a new segment, after the old ones");
    }

    #[test]
    fn a_torn_group_ends_its_segment_only() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { first_segment: 1 << 16, ..small() };
        let (mut log, _) = reopen(dir.path(), config);
        log.append(&ops(), 0).unwrap();
        let (path, pos) = (segment_path(dir.path(), log.active_no), log.pos);
        drop(log);
        // A crash in the middle of the next group: its first record is cut short, and a whole
        // record of it (never acknowledged) follows.
        let mut torn = Vec::new();
        ops()[0].encode(&mut torn);
        let whole = torn.clone();
        torn.truncate(torn.len() - 3);
        torn.extend_from_slice(&whole);
        OpenOptions::new().write(true).open(&path).unwrap().write_all_at(&torn, pos).unwrap();
        let (mut log, seen) = reopen(dir.path(), config);
        assert_eq!(seen, ops(), "reading stops at the torn record");
        log.append(&ops()[2..3], 0).unwrap();
        drop(log);
        let (_, seen) = reopen(dir.path(), config);
        assert_eq!(seen.len(), 6, "later segments are still read");
        assert_eq!(seen[5], ops()[2]);
    }

    #[test]
    fn compaction_replaces_segments_with_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = reopen(dir.path(), small());
        let mut n = 0;
        while !log.compaction_due() {
            let op = DiskOp::PutMeta { key: format!("c\u{0}{}", n % 3), bytes: vec![b'x'; 40] };
            // The first three documents are new; every later put replaces one.
            let superseded = if n < 3 { 0 } else { supersedes(&op) };
            log.append(&[op], superseded).unwrap();
            n += 1;
        }
        assert!(n > 3);
        // The live state is three documents; the snapshot holds them alone.
        let live: Vec<DiskOp> =
            (0..3).map(|i| DiskOp::PutMeta { key: format!("c\u{0}{i}"), bytes: vec![b'y'; 40] }).collect();
        let copy = live.clone();
        log.compact(Box::new(move |w| copy.into_iter().try_for_each(w))).unwrap();
        log.append(&[DiskOp::DelMeta { key: "c\u{0}1".into() }], 256).unwrap();
        drop(log);
        let (logs, snaps) = list(dir.path(), false).unwrap();
        assert_eq!(snaps.len(), 1);
        assert!(logs.iter().all(|l| *l > snaps[0]), "covered segments are deleted: {logs:?} {snaps:?}");
        let (_, seen) = reopen(dir.path(), small());
        let mut want = live;
        want.push(DiskOp::DelMeta { key: "c\u{0}1".into() });
        assert_eq!(seen, want);
    }

    #[test]
    fn new_keys_alone_never_make_a_compaction_due() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = reopen(dir.path(), small());
        for n in 0..200 {
            log.append(&[DiskOp::PutMeta { key: format!("c\u{0}{n}"), bytes: vec![b'x'; 40] }], 0).unwrap();
        }
        assert!(!log.compaction_due());
    }

    #[test]
    fn obsolete_records_read_back_count_towards_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = reopen(dir.path(), small());
        let op = DiskOp::PutMeta { key: "c\u{0}k".into(), bytes: vec![b'x'; 40] };
        while !log.compaction_due() {
            log.append(std::slice::from_ref(&op), supersedes(&op)).unwrap();
        }
        drop(log);
        let log = Log::open(dir.path(), small(), &mut |_| Ok(true)).unwrap();
        assert!(log.compaction_due(), "a restart does not forget what is obsolete");
        drop(log);
        let log = Log::open(dir.path(), small(), &mut |_| Ok(false)).unwrap();
        assert!(!log.compaction_due());
    }

    #[test]
    fn restarts_give_back_preallocated_space() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { first_segment: 1 << 16, ..small() };
        for _ in 0..5 {
            let (log, _) = reopen(dir.path(), config);
            drop(log);
        }
        let (mut log, _) = reopen(dir.path(), config);
        log.append(&ops(), 0).unwrap();
        drop(log);
        let (_, seen) = reopen(dir.path(), config);
        assert_eq!(seen, ops(), "the records survive the trimming");
        let (logs, _) = list(dir.path(), false).unwrap();
        // The active segment of the last open, and the trimmed one holding the records.
        assert_eq!(logs.len(), 2, "{logs:?}");
        let sizes: Vec<u64> =
            logs.iter().map(|n| std::fs::metadata(segment_path(dir.path(), *n)).unwrap().len()).collect();
        assert!(sizes[0] < 1 << 10, "the segment holding records was trimmed: {sizes:?}");
    }

    #[test]
    fn a_directory_is_opened_by_one_log_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = reopen(dir.path(), small());
        let second = Log::open(dir.path(), small(), &mut |_| Ok(false));
        assert!(second.is_err_and(|e| e.to_string().contains("in use by another process")));
        drop(log);
        assert!(Log::open(dir.path(), small(), &mut |_| Ok(false)).is_ok(), "the lock goes with the log");
    }

    #[test]
    fn background_work_runs_at_a_lower_priority_on_its_own_thread() {
        let me = || rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let before = me();
        let lowered = std::thread::spawn(move || {
            in_background();
            me()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, before.max(10), "the background thread runs at nice 10");
        assert_eq!(me(), before, "the threads that serve requests keep their priority");
    }

    #[test]
    fn a_failed_write_refuses_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = reopen(dir.path(), small());
        log.poisoned = true;
        assert!(log.append(&ops(), 0).is_err());
    }

    #[test]
    fn an_interrupted_snapshot_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = reopen(dir.path(), small());
        log.append(&ops(), 0).unwrap();
        drop(log);
        std::fs::write(dir.path().join("orbis-0000000000000009.snap.tmp"), b"ORBSNP01junk").unwrap();
        let (_, seen) = reopen(dir.path(), small());
        assert_eq!(seen, ops());
        assert!(!dir.path().join("orbis-0000000000000009.snap.tmp").exists());
    }
}
