//! Checkpoints that never stall writers for I/O that grows with the WAL: the write
//! barrier, rounds of PASSIVE backfill with writers running (paced by `pacer` when they
//! outrun it), the final short barrier, the emergency truncation (see the module docs of
//! `db`).

use std::fs;
use std::time::{Duration, Instant};

use super::pacer::{Pacer, FIRST_RELEASE, MIN_RELEASE};
use super::{SyncOutcome, Syncer};
use crate::error::{Error, Result};
use crate::sqlite::{CheckpointMode, Conn};
use crate::wal::WAL_HEADER_SIZE;

/// Most WAL bytes a checkpoint backfills while writers wait at the barrier; more than
/// that is backfilled with writers running first, in rounds that shrink while the
/// checkpoint outpaces the writers.
const MAX_BARRIER_BACKFILL: u64 = 4 << 20;
/// A barrier is taken only after a sync that copied at most this much, so the copy under
/// the barrier is a short tail.
const NEAR_END: u64 = 1 << 20;
/// Rounds of backfilling with writers running before giving up until the next tick (an
/// emergency truncation takes the barrier after the last round whatever is left).
const BACKFILL_ROUNDS: u32 = 20;
/// A WAL file this large is paced from the first round of its checkpoint, and shrunk
/// once it is fully checkpointed.
pub(super) const PACE_WAL_BYTES: u64 = 64 << 20;

impl Syncer {
    /// Runs `f` while holding the write barrier. `Ok(None)` if the barrier could not be
    /// taken within the busy timeout (writers busy): try again later.
    /// While a pacer runs, the pacer's thread holds the barrier (at once, or by extending
    /// the hold under way), so no commit waits for a hold and a barrier in a row.
    fn with_barrier<T>(&mut self, f: impl FnOnce(&mut Syncer) -> Result<T>) -> Result<Option<T>> {
        self.sync_near_end()?;
        let Some(p) = self.pacer.take() else {
            return self.barrier(f);
        };
        let held = Instant::now();
        let r = if p.barrier() { Some(f(self)) } else { None };
        p.end_barrier();
        self.pacer = Some(p);
        self.log_barrier(held);
        r.transpose()
    }

    fn barrier<T>(&mut self, f: impl FnOnce(&mut Syncer) -> Result<T>) -> Result<Option<T>> {
        match self.w.exec("BEGIN IMMEDIATE") {
            Ok(()) => {}
            Err(Error::Sqlite { code, .. }) if code & 0xff == 5 || code & 0xff == 6 => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
        let held = Instant::now();
        let r = f(self);
        let rb = self.w.exec("ROLLBACK");
        self.log_barrier(held);
        let v = r?;
        rb?;
        Ok(Some(v))
    }

    fn log_barrier(&self, held: Instant) {
        log::debug!(
            "{}: write barrier held {} ms",
            self.shared.path.display(),
            held.elapsed().as_millis()
        );
    }

    /// Syncs until a pass copies at most [`NEAR_END`] bytes (a few passes at most), so the
    /// sync under a barrier that follows copies a short tail, not what a fast writer
    /// produced during the previous copy.
    fn sync_near_end(&mut self) -> Result<()> {
        for _ in 0..4 {
            let before = self.mark();
            if let SyncOutcome::NeedSnapshot = self.sync(true)? {
                return Ok(());
            }
            // A restart (or a first position) counts everything copied in it.
            let copied = self
                .copied_since(before)
                .unwrap_or_else(|| self.mark().map_or(0, |(end, _)| end));
            if copied <= NEAR_END {
                break;
            }
        }
        Ok(())
    }

    /// Starts pacing writers (see `pacer`) with writers running `release` between holds,
    /// if not already.
    pub(super) fn pace(&mut self, release: Duration) -> Result<()> {
        if self.pacer.is_some() {
            return Ok(());
        }
        let conn = match self.pacer_conn.take() {
            Some(c) => c,
            None => {
                let c = Conn::open(&self.shared.path)?;
                c.exec("PRAGMA wal_autocheckpoint = 0")?;
                c.set_persist_wal()?;
                c.eager_busy_handler(self.shared.opts.busy_timeout.max(Duration::from_secs(1)) * 5);
                c
            }
        };
        self.pacer = Some(Pacer::start(conn, release));
        Ok(())
    }

    /// Whether a pacer runs.
    pub(super) fn pacing(&self) -> bool {
        self.pacer.is_some()
    }

    /// Stops pacing writers.
    pub(super) fn unpace(&mut self) {
        if let Some(p) = self.pacer.take() {
            self.pacer_conn = p.stop();
        }
    }

    fn wal_file_size(&self) -> u64 {
        fs::metadata(&self.wal_path).map(|m| m.len()).unwrap_or(0)
    }

    /// Re-acquires `R` at the WAL end under the barrier, after a sync to the end.
    /// Returns false if a snapshot was needed first (the caller syncs and retries).
    fn refresh_read(&mut self) -> Result<bool> {
        let outcome = self.with_barrier(|s| {
            if let SyncOutcome::NeedSnapshot = s.sync(false)? {
                return Ok(false);
            }
            s.end_read()?;
            s.begin_read()?;
            s.restart_ok = true;
            Ok(true)
        })?;
        Ok(outcome.unwrap_or(false))
    }

    fn wal_bytes(&self, pages: u64) -> u64 {
        WAL_HEADER_SIZE + pages * (24 + self.page_size as u64)
    }

    pub(super) fn checkpoint_policy(&mut self) -> Result<()> {
        let Some(end) = self.pos.as_ref().map(|p| p.end) else {
            return Ok(());
        };
        if !self.synced_since_checkpoint {
            return Ok(());
        }
        let opts = &self.shared.opts;
        if self.over_truncate_threshold() {
            return self.checkpoint(true);
        }
        if end >= self.wal_bytes(opts.min_checkpoint_pages as u64) {
            return self.checkpoint(false);
        }
        if self.time_checkpoint_due() {
            return self.checkpoint(false);
        }
        Ok(())
    }

    /// The WAL file reached the emergency truncation threshold.
    fn over_truncate_threshold(&self) -> bool {
        let size = self.wal_file_size();
        match self.shared.opts.truncate_pages {
            Some(n) => size >= self.wal_bytes(n as u64),
            None => false,
        }
    }

    /// A time-based PASSIVE checkpoint is due: something was synced since the last one,
    /// the interval passed and the WAL holds more than one frame.
    pub(super) fn time_checkpoint_due(&self) -> bool {
        let Some(end) = self.pos.as_ref().map(|p| p.end) else {
            return false;
        };
        let opts = &self.shared.opts;
        !opts.checkpoint_interval.is_zero()
            && self.synced_since_checkpoint
            && self.last_checkpoint.elapsed() >= opts.checkpoint_interval
            && end > self.wal_bytes(1)
    }

    /// Checkpoints without stalling writers for longer than it takes to copy the frames
    /// written since the previous step (see the module docs).
    pub(super) fn checkpoint(&mut self, truncate: bool) -> Result<()> {
        let started = Instant::now();
        let r = self.checkpoint_mode(truncate);
        self.unpace();
        let mode = if truncate { "TRUNCATE" } else { "PASSIVE" };
        let secs = started.elapsed().as_secs_f64();
        let ok = r.is_ok();
        self.shared.publish(|st| st.note_checkpoint(mode, secs, ok));
        r
    }

    fn checkpoint_mode(&mut self, truncate: bool) -> Result<()> {
        if truncate {
            log::info!(
                "{}: WAL is {} bytes, over the truncate threshold: checkpointing and truncating it",
                self.shared.path.display(),
                self.wal_file_size()
            );
        }
        self.checkpoint_inner(truncate)
    }

    fn checkpoint_inner(&mut self, truncate: bool) -> Result<()> {
        self.sync(true)?;
        if truncate || self.wal_file_size() > PACE_WAL_BYTES {
            // Much to backfill already: writers get the least time from the start.
            self.pace(MIN_RELEASE)?;
        }
        // 1 and 2, repeated while writers outpace the backfill: move R to the WAL end under
        // a short barrier, then backfill up to it with writers running. The final barrier
        // below only ever covers a small remainder.
        let mut round = 0;
        let mut prev_behind = u64::MAX;
        loop {
            if !self.refresh_read()? {
                self.sync(true)?;
                if !self.refresh_read()? {
                    return Ok(());
                }
            }
            let mark = self.mark();
            if !(truncate && self.futile_passive) {
                let (busy, log, ckpt) = passive(&self.w, ROUND_PATIENCE)?;
                log::debug!(
                    "{}: checkpoint round {round} backfill: busy {busy}, WAL frames {log}, backfilled {ckpt}",
                    self.shared.path.display()
                );
            }
            self.sync(true)?;
            let behind = self.copied_since(mark).unwrap_or(0);
            log::debug!(
                "{}: checkpoint round {round}: {behind} WAL bytes written meanwhile",
                self.shared.path.display()
            );
            if behind <= MAX_BARRIER_BACKFILL {
                break;
            }
            if !truncate && self.over_truncate_threshold() {
                // Writers outpaced this checkpoint for long enough to cross the emergency
                // threshold: bound the WAL now rather than after more rounds.
                return self.checkpoint(true);
            }
            round += 1;
            // Writers outpace the backfill: pace them, harder each round that did not at
            // least halve the gap.
            match &self.pacer {
                None => self.pace(FIRST_RELEASE)?,
                Some(p) if behind.saturating_mul(2) > prev_behind => p.tighten(),
                Some(_) => {}
            }
            // Bounding the WAL cannot wait for rounds that lose ground even with writers
            // paced as hard as the pacer goes.
            let at_min = self
                .pacer
                .as_ref()
                .is_some_and(|p| p.release() <= MIN_RELEASE);
            let diverging = truncate && at_min && behind > prev_behind;
            prev_behind = behind;
            if round >= BACKFILL_ROUNDS || diverging {
                if truncate {
                    log::warn!(
                        "{}: writers outpace the checkpoint; holding them for the last {behind} WAL bytes to bound the WAL",
                        self.shared.path.display()
                    );
                    break;
                }
                log::debug!(
                    "{}: writers outpace the checkpoint ({behind} WAL bytes behind); trying again later",
                    self.shared.path.display()
                );
                return Ok(());
            }
        }
        // The final barrier's checkpoint ends with an fsync of the database file, which on a
        // journaling file system may also wait for other dirty data of the file system
        // (the WAL's, the backfill's). Written out here, with writers running, it is not
        // waited for under the barrier.
        flush(&self.wal_path);
        // The database file through SQLite's own handle: opening and closing one of ours
        // would drop the process's locks on it.
        let _ = self.r.main_file().and_then(|f| f.sync(true));
        // 3. Copy and backfill what was written meanwhile, re-take R, release writers (and
        // stop pacing them).
        let full = self.with_barrier(|s| {
            if let SyncOutcome::NeedSnapshot = s.sync(false)? {
                return Ok(None);
            }
            s.end_read()?;
            let ck = passive(&s.r, BARRIER_PATIENCE);
            let br = s.begin_read();
            let (busy, log, ckpt) = ck?;
            br?;
            log::debug!(
                "{}: checkpoint under the barrier: busy {busy}, WAL frames {log}, backfilled {ckpt}",
                s.shared.path.display()
            );
            s.restart_ok = true;
            Ok(Some((busy, !busy && log >= 0 && log == ckpt)))
        });
        self.unpace();
        let full = full?;
        log::debug!(
            "{}: checkpoint final barrier: {full:?} (truncate {truncate})",
            self.shared.path.display()
        );
        let Some(Some((busy, full))) = full else {
            return Ok(());
        };
        // Futile means a reader stopped the backfill short; another connection's
        // checkpoint still running (busy) was backfilling for us, and says nothing of
        // the next rounds.
        self.futile_passive = !full && !busy;
        self.last_checkpoint = Instant::now();
        self.shared.publish(|st| st.checkpoint_count += 1);
        self.synced_since_checkpoint = false;
        if !(full && (truncate || self.wal_file_size() > PACE_WAL_BYTES)) {
            return Ok(());
        }
        // 4. Everything is copied and backfilled and R reads the database file only, so
        // the next write restarts the WAL; for a truncation or a large WAL file make it
        // ours (a bump of _litestream_seq, as Litestream does), right away, and shrink
        // the file below (if an application write gets in first it restarts the WAL
        // instead: nothing lost, R allows one restart).
        let bumped = Instant::now();
        self.w.exec("BEGIN IMMEDIATE")?;
        let bump = self.w.exec(
            "INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET seq = seq + 1",
        );
        match bump {
            Ok(()) => self.w.exec("COMMIT")?,
            Err(e) => {
                let _ = self.w.exec("ROLLBACK");
                return Err(e);
            }
        }
        log::debug!(
            "{}: WAL restarted by us in {} ms",
            self.shared.path.display(),
            bumped.elapsed().as_millis()
        );
        self.shrink_wal()
    }

    /// Cuts the WAL file down to its live frames (what follows them is left from before
    /// the last restart), [`SHRINK_STEP`] bytes at a time, each step under a short
    /// barrier after a sync to the true end, with writers running between steps: freeing
    /// hundreds of megabytes in one go held writers for 100-250 ms.
    fn shrink_wal(&mut self) -> Result<()> {
        let started = Instant::now();
        let before = self.wal_file_size();
        loop {
            let step = self.with_barrier(|s| {
                if let SyncOutcome::NeedSnapshot = s.sync(false)? {
                    return Ok(true);
                }
                let Ok(wal) = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&s.wal_path)
                else {
                    return Ok(true);
                };
                let live = match (crate::wal::read_header(&wal)?, &s.pos) {
                    // Nothing is appended under the barrier: the copy reached the true end.
                    (Some(h), Some(p)) if h.salts() == p.salts => p.end,
                    _ => return Ok(true),
                };
                let size = wal.metadata().map(|m| m.len()).unwrap_or(0);
                if size <= live {
                    return Ok(true);
                }
                let to = live.max(size.saturating_sub(SHRINK_STEP));
                wal.set_len(to)
                    .map_err(|e| Error::io(format!("shrink {}", s.wal_path.display()), e))?;
                Ok(to == live)
            })?;
            match step {
                Some(false) => std::thread::sleep(SHRINK_PAUSE),
                _ => break,
            }
        }
        log::debug!(
            "{}: WAL shrunk from {before} to {} bytes in {} ms",
            self.shared.path.display(),
            self.wal_file_size(),
            started.elapsed().as_millis()
        );
        Ok(())
    }
}

/// Most bytes of the WAL file freed under one barrier (tens of milliseconds of work for
/// the file system).
const SHRINK_STEP: u64 = 32 << 20;
/// Writers run this long between two steps of a shrink.
const SHRINK_PAUSE: Duration = Duration::from_millis(20);

/// How long a round waits for another connection's checkpoint to finish before its own.
const ROUND_PATIENCE: Duration = Duration::from_secs(2);
/// The same, under the write barrier (writers wait meanwhile).
const BARRIER_PATIENCE: Duration = Duration::from_millis(50);

/// A PASSIVE checkpoint on `conn` that waits up to `patience` for another connection's
/// checkpoint to end. SQLite answers a checkpoint busy at once while another holds the
/// checkpoint lock — typically the application's autocheckpoint backfilling what the last
/// move of R allowed, which can take seconds on a large WAL. Giving up at once made every
/// checkpoint of such a run end short, and the WAL grew without bound.
fn passive(conn: &Conn, patience: Duration) -> Result<(bool, i32, i32)> {
    let started = Instant::now();
    loop {
        let r = conn.checkpoint(CheckpointMode::Passive)?;
        if !r.0 || started.elapsed() >= patience {
            return Ok(r);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Writes a file's dirty pages out (best effort: only to shorten a later fsync). Never the
/// database file: SQLite holds POSIX locks on it, which closing any descriptor drops.
fn flush(path: &std::path::Path) {
    if let Ok(f) = fs::File::open(path) {
        let _ = f.sync_data();
    }
}
