//! Full snapshots of a database's current state (`1-<txid>`), for level 9 and for
//! replicas that need a new start, with progress lines for long copies.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use super::{SnapshotFile, Syncer};
use crate::durable::TempFile;
use crate::error::{Error, Result};
use crate::ltx::{self, Encoder, Header, Txid, HEADER_FLAG_NO_CHECKSUM};
use crate::wal::{self, Start, WAL_HEADER_SIZE};

impl Syncer {
    /// Writes a full snapshot of the current state as `1-<pos>` into a temp file.
    pub(super) fn snapshot_file(&mut self) -> Result<SnapshotFile> {
        self.redo_if_raced(Syncer::snapshot_file_once)
    }

    fn snapshot_file_once(&mut self) -> Result<SnapshotFile> {
        self.sync(true)?;
        let pos = self
            .pos
            .clone()
            .ok_or_else(|| Error::State("no position yet".into()))?;
        let wal = File::open(&self.wal_path).ok();
        let hdr = match &wal {
            Some(f) => wal::read_header(f)?,
            None => None,
        };
        // The state at pos: the current WAL generation up to our position, over the
        // database file (earlier generations were fully backfilled before they ended).
        // Our position is a commit boundary, so a scan limited to it stops exactly there.
        let map = match (&wal, &hdr) {
            (Some(f), Some(h)) if h.salts() == pos.salts && pos.end > WAL_HEADER_SIZE => {
                let scan = wal::scan(f, h, Start::beginning(h), pos.end - WAL_HEADER_SIZE)?;
                if scan.end != pos.end {
                    return Err(Error::State(format!(
                        "{}: WAL changed under the snapshot (ends at {}, expected {}); will retry",
                        self.shared.path.display(),
                        scan.end,
                        pos.end
                    )));
                }
                scan.pages
            }
            _ => HashMap::new(),
        };
        let header = Header {
            flags: HEADER_FLAG_NO_CHECKSUM,
            page_size: self.page_size,
            commit: pos.commit,
            min_txid: Txid(1),
            max_txid: pos.txid,
            timestamp: crate::time::to_millis(SystemTime::now()),
            ..Header::default()
        };
        // Removed on any error (and by the caller once uploaded).
        let snap = SnapshotFile {
            file: TempFile::new(self.shared.meta_path.join(format!(
                "snapshot-{}-{}.ltx.tmp",
                pos.txid,
                next_snapshot_id()
            ))),
            header,
        };
        let (path, header) = (snap.file.path(), &snap.header);
        let name = path.display().to_string();
        {
            let f = crate::durable::create_file(path, self.file_mode, true)
                .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
            let mut enc = Encoder::new(
                BufWriter::with_capacity(1 << 20, f),
                header,
                self.shared.opts.encoding,
            )
            .map_err(|e| e.in_file(&name))?;
            let lock = ltx::lock_pgno(self.page_size);
            let mut progress =
                Progress::new(self.shared.path.clone(), header.commit, self.page_size);
            for pgno in 1..=header.commit {
                if pgno == lock {
                    continue;
                }
                self.read_page(pgno, &map, wal.as_ref())?;
                #[cfg(test)]
                if let Some(h) = self.after_page.as_mut() {
                    h(pgno);
                }
                enc.write_page(pgno, &self.buf)
                    .map_err(|e| e.in_file(&name))?;
                progress.tick(pgno);
            }
            let (w, _) = enc.finish().map_err(|e| e.in_file(&name))?;
            let f = w
                .into_inner()
                .map_err(|e| Error::io(format!("write {}", path.display()), e.into_error()))?;
            if !map.is_empty() {
                self.check_wal_unchanged(wal.as_ref(), pos.salts, false)?;
            }
            f.sync_all()
                .map_err(|e| Error::io(format!("fsync {}", path.display()), e))?;
        }
        Ok(snap)
    }
}

/// A number for each snapshot file this process makes. Two snapshots of one TXID (a
/// replica starting a lineage while compaction takes its L9 snapshot, or two replicas
/// starting theirs) once shared a name: the second truncated and rewrote the file the
/// first was uploading, and the first's removal took the second's.
fn next_snapshot_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Progress lines for long snapshots: one every few seconds with pages, bytes, rate and
/// an estimate of the time left.
pub(super) struct Progress {
    path: PathBuf,
    total: u32,
    page_size: u32,
    started: Instant,
    last: Instant,
}

impl Progress {
    pub(super) fn new(path: PathBuf, total: u32, page_size: u32) -> Self {
        let now = Instant::now();
        Progress {
            path,
            total,
            page_size,
            started: now,
            last: now,
        }
    }

    pub(super) fn tick(&mut self, done: u32) {
        if done % 1024 != 0 || self.last.elapsed() < Duration::from_secs(3) {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let mib = |pages: u32| pages as f64 * self.page_size as f64 / (1 << 20) as f64;
        let rate = mib(done) / secs;
        let eta = if rate > 0.0 {
            (mib(self.total) - mib(done)) / rate
        } else {
            0.0
        };
        log::info!(
            "{}: snapshot {:.0}% ({:.0}/{:.0} MiB, {rate:.0} MiB/s, about {eta:.0}s left)",
            self.path.display(),
            done as f64 * 100.0 / self.total.max(1) as f64,
            mib(done),
            mib(self.total)
        );
    }
}
