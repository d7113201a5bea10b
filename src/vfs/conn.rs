//! One open database file of the VFS (one SQLite connection): which state it reads (the
//! newest, pinned for the length of a read transaction, or a point in time), reads of any
//! byte range, page 1 as SQLite must see it, and the `litestream_*` PRAGMAs. Safe code;
//! `ffi` calls it.

use std::sync::Arc;
use std::time::SystemTime;

use super::pagemap::Snapshot;
use super::reader::ReplicaReader;
use crate::error::{Error, Result};

/// An open replica database.
#[derive(Debug)]
pub(crate) struct Conn {
    reader: Arc<ReplicaReader>,
    /// The state of the read transaction in progress (held from SHARED to NONE).
    pinned: Option<Arc<Snapshot>>,
    /// Time travel: the state shown instead of the newest.
    travel: Option<(SystemTime, Arc<Snapshot>)>,
    /// A write was refused and said so (once per connection).
    refused_write: bool,
}

/// What a PRAGMA asked of a connection answered.
pub(crate) enum PragmaAnswer {
    /// Not one of ours.
    NotOurs,
    /// Done; the text is the PRAGMA's one-row result.
    Done(Option<String>),
    /// Refused, with the message SQLite shows.
    Failed(String),
}

impl Conn {
    pub fn new(reader: Arc<ReplicaReader>) -> Conn {
        Conn {
            reader,
            pinned: None,
            travel: None,
            refused_write: false,
        }
    }

    /// A write was attempted: SQLite reports `SQLITE_READONLY` ("attempt to write a
    /// readonly database"); the log says why, once per connection.
    pub fn refuse_write(&mut self) {
        if !std::mem::replace(&mut self.refused_write, true) {
            log::warn!(
                "litestream vfs: {:?} is a read replica: writes are refused (SQLITE_READONLY); write to the primary database that replicates to it",
                self.reader.client()
            );
        }
    }

    /// The state reads see now.
    fn current(&self) -> Arc<Snapshot> {
        if let Some(s) = &self.pinned {
            return s.clone();
        }
        match &self.travel {
            Some((_, s)) => s.clone(),
            None => self.reader.latest(),
        }
    }

    /// A read transaction starts (SHARED lock): the newest state (or the time-travel
    /// one) is pinned until it ends, so a transaction never sees two states.
    pub fn begin_read(&mut self) {
        if self.pinned.is_none() {
            if self.travel.is_none() {
                self.reader.touch();
            }
            self.pinned = Some(self.current());
        }
    }

    /// The read transaction ended (lock back to NONE).
    pub fn end_read(&mut self) {
        self.pinned = None;
    }

    /// The database size in bytes.
    pub fn size(&self) -> u64 {
        self.current().size()
    }

    /// Fills `buf` from byte `offset`; returns false when it reached past the end (the
    /// rest is zeros: SQLite's short read).
    pub fn read(&mut self, buf: &mut [u8], offset: u64) -> Result<bool> {
        match self.read_from(&self.current(), buf, offset) {
            Err(Error::NotFound { .. }) => {
                // A file of this state was compacted away: the same state from a new plan.
                let snap = self.current();
                let again = self.reader.rebuild_at(snap.txid)?;
                if self.pinned.is_some() {
                    self.pinned = Some(again.clone());
                }
                self.read_from(&again, buf, offset)
            }
            r => r,
        }
    }

    fn read_from(&self, snap: &Snapshot, buf: &mut [u8], offset: u64) -> Result<bool> {
        let ps = snap.page_size as u64;
        let size = snap.size();
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            if at >= size {
                buf[done..].fill(0);
                return Ok(false);
            }
            let pgno = (at / ps + 1) as u32;
            let in_page = (at % ps) as usize;
            let n = (ps as usize - in_page).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            match self.reader.page(snap, pgno)? {
                Some(p) if pgno == 1 => {
                    let mut p1 = p.to_vec();
                    patch_page1(&mut p1, snap);
                    out.copy_from_slice(&p1[in_page..in_page + n]);
                }
                Some(p) => out.copy_from_slice(&p[in_page..in_page + n]),
                None => out.fill(0),
            }
            done += n;
        }
        Ok(true)
    }

    /// `PRAGMA litestream_txid`, `litestream_lag`, `litestream_time [= time | 'latest']`.
    pub fn pragma(&mut self, name: &str, value: Option<&str>) -> PragmaAnswer {
        let read_only = |n: &str| PragmaAnswer::Failed(format!("{n} is read-only"));
        match name.to_ascii_lowercase().as_str() {
            "litestream_txid" => match value {
                Some(_) => read_only(name),
                None => PragmaAnswer::Done(Some(self.current().txid.to_string())),
            },
            "litestream_lag" => match value {
                Some(_) => read_only(name),
                None => PragmaAnswer::Done(Some(self.lag().to_string())),
            },
            "litestream_time" => match value {
                None => PragmaAnswer::Done(Some(self.time())),
                Some(v) => match self.set_time(v) {
                    Ok(()) => PragmaAnswer::Done(None),
                    Err(e) => PragmaAnswer::Failed(format!("litestream_time: {e}")),
                },
            },
            _ => PragmaAnswer::NotOurs,
        }
    }

    /// Seconds since the replica was last polled successfully (-1: never).
    pub fn lag(&self) -> i64 {
        self.reader.lag().map_or(-1, |d| d.as_secs() as i64)
    }

    /// The time-travel target, or the time of the newest file of the state shown.
    pub fn time(&self) -> String {
        match &self.travel {
            Some((t, _)) => crate::time::format_rfc3339(*t),
            None => crate::time::format_rfc3339(self.current().time),
        }
    }

    /// Shows the database as of `v` (RFC 3339), or the newest state again (`latest`, or
    /// an empty value). Takes effect at the next read transaction.
    pub fn set_time(&mut self, v: &str) -> Result<()> {
        let v = v.trim();
        if v.is_empty() || v.eq_ignore_ascii_case("latest") {
            self.travel = None;
            return Ok(());
        }
        let t = crate::time::parse_rfc3339(v)?;
        let snap = self.reader.snapshot_at(t)?;
        self.travel = Some((t, snap));
        Ok(())
    }
}

/// Page 1 as the VFS serves it: a rollback-journal database (file format bytes 18/19 = 1,
/// so SQLite never looks for `-wal`/`-shm`), a change counter (and version-valid-for)
/// derived from the TXID — unchanged while the state is, so SQLite keeps its page cache
/// — and the size in pages of this state.
fn patch_page1(p: &mut [u8], snap: &Snapshot) {
    if p.len() < 100 {
        return;
    }
    p[18] = 1;
    p[19] = 1;
    let counter = (snap.txid.0 as u32).to_be_bytes();
    p[24..28].copy_from_slice(&counter);
    p[28..32].copy_from_slice(&snap.map.len().to_be_bytes());
    p[92..96].copy_from_slice(&counter);
}
