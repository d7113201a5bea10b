//! Copying committed WAL frames into local L0 files: where to start, whether continuity
//! with the last file is proven (else a full snapshot), and writing each file durably
//! (temp file, fsync, rename, directory fsync) after checking the WAL was not restarted
//! under the copy.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::time::SystemTime;

use super::snapshot::Progress;
use super::{local, Position, SyncOutcome, Syncer};
use crate::durable;
use crate::error::{Error, Result};
use crate::ltx::{self, Encoder, Header, HEADER_FLAG_NO_CHECKSUM};
use crate::wal::{self, Start, WalHeader, WAL_HEADER_SIZE};

impl Syncer {
    /// Copies every committed frame not yet copied into L0 files.
    ///
    /// With snapshots allowed (no barrier held) it stops at the WAL end it saw when it
    /// started: a writer as fast as the copy would otherwise keep it busy forever, and
    /// the checkpoint policy must get its turn. Under the barrier nothing is appended, so
    /// it runs to the true end.
    pub(super) fn sync(&mut self, allow_snapshot: bool) -> Result<SyncOutcome> {
        if allow_snapshot && !self.reading {
            // R was lost to an error between releasing and re-taking it: copying without
            // it would let a checkpoint change database pages under a snapshot. Taken
            // here, outside the barrier, it does not vouch for a restart (`restart_ok`
            // stays false), and check_wal_unchanged catches the one restart it allows.
            log::debug!(
                "{}: re-taking the read transaction",
                self.shared.path.display()
            );
            self.begin_read()?;
        }
        let wal_size = fs::metadata(&self.wal_path).map(|m| m.len()).unwrap_or(0);
        if allow_snapshot && wal_size < WAL_HEADER_SIZE && !self.ensure_wal()? {
            return Ok(SyncOutcome::Done);
        }
        // Enough chunks to cover the WAL as it is now (its file size bounds its frames).
        let chunk = self.shared.opts.max_sync_wal_bytes;
        let budget = match (allow_snapshot, chunk) {
            (true, c) if c > 0 => Some(wal_size / c + 2),
            _ => None,
        };
        self.redo_if_raced(|s| s.sync_chunks(allow_snapshot, budget))
    }

    /// Makes a WAL, there being none with a header (the application truncated a fully
    /// backfilled one), as Litestream does before each sync: one write of
    /// `_litestream_seq`. Without it a read transaction taken on the database file alone
    /// (read mark 0, which SQLite lets a TRUNCATE checkpoint pass) proved nothing at
    /// every tick, and each copied the whole database again. Returns false when the
    /// application holds the write lock: nothing can be committed meanwhile, so there is
    /// nothing to copy yet.
    fn ensure_wal(&mut self) -> Result<bool> {
        log::debug!(
            "{}: no WAL header; writing one transaction to make one",
            self.shared.path.display()
        );
        match self.w.exec(super::open::BUMP_SEQ) {
            Ok(()) => {}
            Err(Error::Sqlite { code, .. }) if matches!(code & 0xff, 5 | 6) => return Ok(false),
            Err(e) => return Err(e),
        }
        if !self.restart_ok {
            // R read the database file alone outside the barrier: take it again on the
            // new WAL, which it then keeps (a TRUNCATE cannot pass a reader of frames).
            // The next copy is a snapshot: nothing vouches for what happened meanwhile.
            self.end_read()?;
            self.begin_read()?;
        }
        // With `restart_ok`, R was taken under the barrier after everything was copied and
        // backfilled: SQLite backfills nothing past a reader on mark 0, so the database
        // file is as R saw it and the new WAL continues it.
        Ok(true)
    }

    /// Runs `copy`, and once more if a WAL restart raced it (possible only while R reads
    /// the database file alone; see [`Syncer::check_wal_unchanged`]): the raced result was
    /// discarded, and the one restart R allowed has happened, so the second copy cannot be
    /// raced.
    pub(super) fn redo_if_raced<T>(
        &mut self,
        mut copy: impl FnMut(&mut Syncer) -> Result<T>,
    ) -> Result<T> {
        self.copy_raced = false;
        match copy(self) {
            Err(e) if self.copy_raced => {
                log::debug!("{e}");
                self.copy_raced = false;
                copy(self)
            }
            r => r,
        }
    }

    /// Where the copy stands: the end of what was copied and the WAL generation's salts.
    pub(super) fn mark(&self) -> Option<(u64, (u32, u32))> {
        self.pos.as_ref().map(|p| (p.end, p.salts))
    }

    /// WAL bytes copied since `mark`; `None` if there was no position then or now, or the
    /// WAL restarted in between.
    pub(super) fn copied_since(&self, mark: Option<(u64, (u32, u32))>) -> Option<u64> {
        match (mark, self.mark()) {
            (Some((a, sa)), Some((b, sb))) if sa == sb => Some(b.saturating_sub(a)),
            _ => None,
        }
    }

    /// [`Syncer::sync`] limited to `budget` L0 files (of at most `max_sync_wal_bytes`).
    fn sync_chunks(
        &mut self,
        allow_snapshot: bool,
        mut budget: Option<u64>,
    ) -> Result<SyncOutcome> {
        let start = self.mark();
        loop {
            match self.sync_once(allow_snapshot)? {
                (SyncOutcome::Done, true) => {
                    // A writer outrunning the copy: pace it from here, so the checkpoint
                    // that follows starts before the WAL has grown far.
                    let copied = self.copied_since(start).unwrap_or(0);
                    if allow_snapshot
                        && copied > super::checkpoint::PACE_WAL_BYTES / 2
                        && !self.pacing()
                    {
                        self.pace(super::pacer::MIN_RELEASE)?;
                    }
                    if let Some(b) = budget.as_mut() {
                        *b -= 1;
                        if *b == 0 {
                            return Ok(SyncOutcome::Done);
                        }
                    }
                }
                (o, _) => return Ok(o),
            }
        }
    }

    /// Writes at most one L0 file. Returns the outcome and whether more may follow.
    fn sync_once(&mut self, allow_snapshot: bool) -> Result<(SyncOutcome, bool)> {
        let wal = match File::open(&self.wal_path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(format!("open {}", self.wal_path.display()), e)),
        };
        let hdr = match &wal {
            Some(f) => wal::read_header(f)?,
            None => None,
        };
        let wal_size = match &wal {
            Some(f) => f
                .metadata()
                .map_err(|e| Error::io(format!("stat {}", self.wal_path.display()), e))?
                .len(),
            None => 0,
        };
        if let Some(h) = &hdr {
            if h.page_size != self.page_size {
                return Err(Error::State(format!(
                    "{}: WAL page size {} differs from database page size {}",
                    self.shared.path.display(),
                    h.page_size,
                    self.page_size
                )));
            }
        }

        // Decide where to start and whether continuity is proven.
        let mut start: Option<Start> = None;
        let mut why_snapshot = None;
        let mut new_generation = false;
        let pos = self.pos.clone();
        match (&pos, &hdr) {
            (None, _) => why_snapshot = Some("first sync"),
            _ if self.renumber_after.is_some() => why_snapshot = Some("new lineage"),
            // Emptied by the application (a TRUNCATE checkpoint). Only under the barrier
            // (`ensure_wal` makes a WAL otherwise): with `restart_ok` the database file is
            // as R saw it (see `ensure_wal`).
            (Some(_), None) => {
                if self.restart_ok {
                    return Ok((SyncOutcome::Done, false));
                }
                why_snapshot = Some("WAL was emptied while continuity could not be proven");
            }
            (Some(p), Some(h)) if h.salts() == p.salts && p.end >= WAL_HEADER_SIZE => {
                if p.end > wal_size {
                    why_snapshot = Some("WAL truncated by another process");
                } else if let Some(sum) = p.checksum {
                    start = Some(Start {
                        offset: p.end,
                        checksum: sum,
                    });
                } else {
                    match wal::seed_at(
                        wal.as_ref()
                            .ok_or_else(|| Error::State("wal vanished".into()))?,
                        h,
                        p.end,
                    )? {
                        Some(s) if self.last_frame_matches(wal.as_ref(), h, p)? => start = Some(s),
                        _ => why_snapshot = Some("WAL overwritten while it was not watched"),
                    }
                }
            }
            (Some(_), Some(h)) => {
                if self.restart_ok {
                    start = Some(Start::beginning(h));
                    new_generation = true;
                } else {
                    why_snapshot = Some("WAL restarted while continuity could not be proven");
                }
            }
        }
        if why_snapshot.is_some() && !allow_snapshot {
            return Ok((SyncOutcome::NeedSnapshot, false));
        }

        let limit = if why_snapshot.is_some() {
            0
        } else {
            self.shared.opts.max_sync_wal_bytes
        };
        let (scan, scan_start) = match (&wal, &hdr) {
            (Some(f), Some(h)) => {
                let s = start.unwrap_or_else(|| Start::beginning(h));
                (wal::scan(f, h, s, limit)?, s)
            }
            _ => (
                wal::Scan {
                    end: WAL_HEADER_SIZE,
                    ..wal::Scan::default()
                },
                Start {
                    offset: WAL_HEADER_SIZE,
                    checksum: (0, 0),
                },
            ),
        };
        if let Some(f) = &wal {
            crate::sys::start_writeback(f, scan_start.offset, scan.end);
        }
        if why_snapshot.is_none() && scan.end == scan_start.offset {
            // Nothing committed since the last sync. After a restart, move to the new
            // generation only once it has a committed frame.
            return Ok((SyncOutcome::Done, false));
        }
        let commit = if scan.commit > 0 {
            scan.commit
        } else {
            let len = fs::metadata(&self.shared.path)
                .map_err(|e| Error::io(format!("stat {}", self.shared.path.display()), e))?
                .len();
            (len / self.page_size as u64) as u32
        };
        if commit == 0 {
            return Err(Error::State(format!(
                "{}: database is empty",
                self.shared.path.display()
            )));
        }
        let prev_txid = self.txid();
        let txid = match self.renumber_after {
            Some(after) if after > prev_txid => after.next(),
            _ => prev_txid.next(),
        };
        if let Some(reason) = why_snapshot {
            log::info!(
                "{}: writing full snapshot as transaction {txid} ({reason})",
                self.shared.path.display()
            );
        }
        let (salts, wal_end) = match &hdr {
            Some(h) => (h.salts(), scan.end),
            None => ((0, 0), WAL_HEADER_SIZE),
        };
        let header = Header {
            flags: HEADER_FLAG_NO_CHECKSUM,
            page_size: self.page_size,
            commit,
            min_txid: txid,
            max_txid: txid,
            timestamp: crate::time::to_millis(SystemTime::now()),
            wal_offset: scan_start.offset as i64,
            wal_size: (wal_end - scan_start.offset) as i64,
            wal_salt1: salts.0,
            wal_salt2: salts.1,
            ..Header::default()
        };
        let pages: Vec<u32> = if why_snapshot.is_some() {
            Vec::new()
        } else {
            let prev_commit = self.pos.as_ref().map(|p| p.commit).unwrap_or(0);
            let mut v: Vec<u32> = scan.pages.keys().copied().collect();
            v.extend((prev_commit + 1..=commit).filter(|p| !scan.pages.contains_key(p)));
            v.sort_unstable();
            v
        };
        self.write_l0(
            &header,
            why_snapshot.is_some(),
            &pages,
            &scan.pages,
            wal.as_ref(),
        )?;
        log::debug!(
            "{}: L0 {txid}: WAL {}..{} salts {:08x}/{:08x} commit {commit}, {} pages{}{}{}",
            self.shared.path.display(),
            scan_start.offset,
            wal_end,
            salts.0,
            salts.1,
            if why_snapshot.is_some() {
                header.commit as usize
            } else {
                pages.len()
            },
            if why_snapshot.is_some() {
                " (snapshot)"
            } else {
                ""
            },
            if new_generation {
                " (new generation)"
            } else {
                ""
            },
            if self.reading { "" } else { " (R NOT HELD)" },
        );
        let new_lineage = self.renumber_after.take().is_some() || self.pos.is_none();
        self.pos = Some(Position {
            txid,
            end: wal_end,
            salts,
            commit,
            checksum: hdr.map(|_| scan.checksum),
        });
        if new_generation {
            // Only one restart can follow an R taken under the barrier; the next one
            // needs a fresh R.
            self.restart_ok = false;
        }
        self.synced_since_checkpoint = true;
        let now = SystemTime::now();
        self.shared.publish(|st| {
            st.txid = txid;
            if new_lineage {
                st.lineage_start = txid;
            }
            st.last_sync = Some(now);
            st.wal_size = wal_size;
            st.wal_bytes += wal_end.saturating_sub(scan_start.offset);
            st.error = None;
            st.disk_full = false;
        });
        Ok((SyncOutcome::Done, scan.limited))
    }

    /// Checks the frame before `p.end` still holds the page our last L0 file recorded for
    /// it (the WAL was not rewritten with the same salts while we were away).
    fn last_frame_matches(&self, wal: Option<&File>, h: &WalHeader, p: &Position) -> Result<bool> {
        let Some(f) = wal else { return Ok(false) };
        if p.end < WAL_HEADER_SIZE + h.frame_size() {
            return Ok(p.end == WAL_HEADER_SIZE);
        }
        let off = p.end - h.frame_size();
        let mut fh = [0u8; 24];
        if std::os::unix::fs::FileExt::read_exact_at(f, &mut fh, off).is_err() {
            return Ok(false);
        }
        let pgno = u32::from_be_bytes([fh[0], fh[1], fh[2], fh[3]]);
        let mut frame_page = vec![0u8; self.page_size as usize];
        if wal::read_frame_page(f, off, &mut frame_page).is_err() {
            return Ok(false);
        }
        Ok(
            local::find_page_in_ltx(&self.shared.l0_path(p.txid), pgno)?.as_deref()
                == Some(&frame_page[..]),
        )
    }

    /// Writes an L0 file (temp file, fsync, rename, directory fsync).
    fn write_l0(
        &mut self,
        header: &Header,
        snapshot: bool,
        pages: &[u32],
        map: &HashMap<u32, u64>,
        wal: Option<&File>,
    ) -> Result<()> {
        let final_path = self.shared.l0_path(header.max_txid);
        let tmp = durable::sibling(&final_path, ".tmp");
        let result = (|| -> Result<()> {
            let f = durable::create_file(&tmp, self.file_mode, false)
                .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
            // At most 64 KiB, less for a few pages (see `wal::Chunked`).
            let room = (pages.len() as u64 + 1) * (u64::from(self.page_size) + 64);
            let mut enc = Encoder::new(
                BufWriter::with_capacity(room.clamp(8 << 10, 64 << 10) as usize, f),
                header,
                self.shared.opts.encoding,
            )
            .map_err(|e| e.in_file(&tmp.display().to_string()))?;
            let lock = ltx::lock_pgno(self.page_size);
            let tmp_name = tmp.display().to_string();
            let mut emit = |s: &mut Syncer, pgno: u32| -> Result<()> {
                if pgno == lock {
                    return Ok(());
                }
                s.read_page(pgno, map, wal)?;
                #[cfg(test)]
                if let Some(h) = s.after_page.as_mut() {
                    h(pgno);
                }
                enc.write_page(pgno, &s.buf)
                    .map_err(|e| e.in_file(&tmp_name))
            };
            if snapshot {
                let mut progress =
                    Progress::new(self.shared.path.clone(), header.commit, self.page_size);
                for pgno in 1..=header.commit {
                    emit(self, pgno)?;
                    progress.tick(pgno);
                }
            } else {
                for &pgno in pages {
                    emit(self, pgno)?;
                }
            }
            let (w, _) = enc.finish().map_err(|e| match e {
                Error::Io { context, source } => Error::Io {
                    context: format!("{context} {}", tmp.display()),
                    source,
                },
                e => e,
            })?;
            let f = w
                .into_inner()
                .map_err(|e| Error::io(format!("write {}", tmp.display()), e.into_error()))?;
            if !map.is_empty() {
                self.check_wal_unchanged(wal, (header.wal_salt1, header.wal_salt2), !snapshot)?;
            }
            f.sync_all()
                .map_err(|e| Error::io(format!("fsync {}", tmp.display()), e))?;
            drop(f);
            fs::rename(&tmp, &final_path)
                .map_err(|e| Error::io(format!("rename {}", tmp.display()), e))?;
            durable::sync_dir(&self.l0_dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Fails if the WAL left the generation with `salts` (a writer restarted it) since it
    /// was scanned: frames read from it may then belong to the new generation.
    ///
    /// A restart writes the new WAL header before any frame, so an unchanged header after
    /// the copy proves that every frame read belonged to the scanned generation. R makes a
    /// restart impossible in all but one case: R began on a fully backfilled WAL, reads
    /// the database file alone and lets the next commit restart the WAL. A full snapshot
    /// copies every frame of the generation, so that commit can overwrite frames it is
    /// still reading; this check catches it (and any mistake elsewhere).
    ///
    /// `incremental`: the copy was of frames after our position; a restart racing it may
    /// have destroyed frames never copied, so continuity is no longer proven.
    pub(super) fn check_wal_unchanged(
        &mut self,
        wal: Option<&File>,
        salts: (u32, u32),
        incremental: bool,
    ) -> Result<()> {
        let now = match wal {
            Some(f) => wal::read_header(f)?.map(|h| h.salts()),
            None => None,
        };
        if now != Some(salts) {
            if incremental {
                self.restart_ok = false;
            }
            self.copy_raced = true;
            return Err(Error::State(format!(
                "{}: the WAL was restarted while frames were being copied from it; copying again",
                self.shared.path.display()
            )));
        }
        Ok(())
    }

    /// Reads page `pgno` of the current state into `self.buf`: from its latest WAL frame,
    /// else from the database file through SQLite's own file handle.
    pub(super) fn read_page(
        &mut self,
        pgno: u32,
        map: &HashMap<u32, u64>,
        wal: Option<&File>,
    ) -> Result<()> {
        match (map.get(&pgno), wal) {
            (Some(&off), Some(f)) => wal::read_frame_page(f, off, &mut self.buf),
            _ => {
                let off = (pgno as u64 - 1) * self.page_size as u64;
                if !self.r.main_file()?.read_at(&mut self.buf, off)? {
                    // Past the end of the file (a page the database grew into but never
                    // wrote): zeros, as SQLite would read it.
                    log::debug!("{}: page {pgno} reads short", self.shared.path.display());
                }
                Ok(())
            }
        }
    }
}
