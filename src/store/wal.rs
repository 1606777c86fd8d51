//! The embedded store's write-ahead log: what makes a write durable before it is acknowledged.
//!
//! A group of writes is appended as checksummed records and made durable with one
//! `fdatasync`, which costs a sequential append of the changed entities instead of a B-tree
//! commit that rewrites pages. The redb file is the checkpoint: from time to time the logged
//! operations are applied to it in one transaction and the log is emptied. At start the log is
//! replayed over the checkpoint; replaying twice is harmless because every operation is a put or
//! a delete by key. A torn record at the end (a crash in the middle of an append that was never
//! acknowledged) fails its checksum and ends the replay.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

/// One durable operation, by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskOp {
    PutEntity { key: String, bytes: Vec<u8> },
    DelEntity { key: String },
    PutTenant { name: String },
    PutMeta { key: String, bytes: Vec<u8> },
    DelMeta { key: String },
}

impl DiskOp {
    /// Approximate size, for deciding when to checkpoint.
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
        let mut payload = Vec::with_capacity(9 + a.len() + b.len());
        payload.push(tag);
        payload.extend_from_slice(&(a.len() as u32).to_le_bytes());
        payload.extend_from_slice(a);
        payload.extend_from_slice(&(b.len() as u32).to_le_bytes());
        payload.extend_from_slice(b);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
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

/// The log file.
pub struct Wal {
    file: File,
    len: u64,
}

impl Wal {
    /// Opens (or creates) the log and returns it with the operations it holds.
    pub fn open(path: &Path) -> std::io::Result<(Wal, Vec<DiskOp>)> {
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(path)?;
        if let Some(dir) = path.parent() {
            // The directory entry of a new log must be durable too.
            File::open(dir)?.sync_all()?;
        }
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        let mut ops = Vec::new();
        let mut pos = 0usize;
        while pos + 8 <= buf.len() {
            let len = u32::from_le_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
            let crc = u32::from_le_bytes([buf[pos + 4], buf[pos + 5], buf[pos + 6], buf[pos + 7]]);
            let Some(payload) = buf.get(pos + 8..pos + 8 + len) else { break };
            if crc32fast::hash(payload) != crc {
                break;
            }
            let Some(op) = DiskOp::decode(payload) else { break };
            ops.push(op);
            pos += 8 + len;
        }
        if pos < buf.len() {
            tracing::warn!(valid = pos, total = buf.len(), "ignoring a torn record at the end of the write-ahead log");
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        Ok((Wal { file, len: pos as u64 }, ops))
    }

    /// Appends the operations and makes them durable (one `fdatasync`). On failure the log is cut
    /// back to where it was, so a half-written group never precedes later records.
    pub fn append(&mut self, ops: &[DiskOp]) -> std::io::Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(ops.iter().map(|o| o.size() + 17).sum());
        for op in ops {
            op.encode(&mut buf);
        }
        let result = self.file.write_all(&buf).and_then(|_| self.file.sync_data());
        match result {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    /// Empties the log once its operations are in the checkpoint.
    pub fn reset(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.len = 0;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wal");
        let ops = vec![
            DiskOp::PutEntity { key: "\u{0}urn:a".into(), bytes: b"{}".to_vec() },
            DiskOp::DelEntity { key: "t\u{0}urn:b".into() },
            DiskOp::PutTenant { name: "t".into() },
            DiskOp::PutMeta { key: "c\u{0}k".into(), bytes: b"[1]".to_vec() },
            DiskOp::DelMeta { key: "c\u{0}k".into() },
        ];
        {
            let (mut wal, old) = Wal::open(&path).unwrap();
            assert!(old.is_empty());
            wal.append(&ops).unwrap();
        }
        // A crash in the middle of the next append leaves a partial record.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let (mut wal, replayed) = Wal::open(&path).unwrap();
        assert_eq!(replayed, ops);
        wal.append(&ops[..1]).unwrap();
        drop(wal);
        let (mut wal, replayed) = Wal::open(&path).unwrap();
        assert_eq!(replayed.len(), 6, "records appended after a cut tail are readable");
        wal.reset().unwrap();
        drop(wal);
        assert!(Wal::open(&path).unwrap().1.is_empty());
    }
}
