//! Checkpoints that never stall writers for I/O that grows with the WAL: the write
//! barrier, rounds of PASSIVE backfill with writers running, the final short barrier, the
//! emergency truncation and its throttle (see the module docs of `db`).

use std::fs;
use std::time::{Duration, Instant};

use super::{SyncOutcome, Syncer};
use crate::error::{Error, Result};
use crate::sqlite::{CheckpointMode, Conn};
use crate::wal::WAL_HEADER_SIZE;

/// Most WAL bytes a checkpoint backfills while writers wait at the barrier; more than
/// that is backfilled with writers running first, in rounds that shrink while the
/// checkpoint outpaces the writers.
const MAX_BARRIER_BACKFILL: u64 = 8 << 20;
/// Rounds of backfilling with writers running before giving up until the next tick (an
/// emergency truncation takes the barrier after the last round whatever is left).
const BACKFILL_ROUNDS: u32 = 10;
/// How long the emergency throttle holds writers at a time (then lets them run for half
/// as long).
const THROTTLE_HOLD: Duration = Duration::from_millis(200);

impl Syncer {
    /// Runs `f` while holding the write barrier. `Ok(None)` if the barrier could not be
    /// taken within the busy timeout (writers busy): try again later.
    fn with_barrier<T>(&mut self, f: impl FnOnce(&mut Syncer) -> Result<T>) -> Result<Option<T>> {
        match self.w.exec("BEGIN IMMEDIATE") {
            Ok(()) => {}
            Err(Error::Sqlite { code, .. }) if code & 0xff == 5 || code & 0xff == 6 => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
        let r = f(self);
        let rb = self.w.exec("ROLLBACK");
        let v = r?;
        rb?;
        Ok(Some(v))
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
        let size = fs::metadata(&self.wal_path).map(|m| m.len()).unwrap_or(0);
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

    /// Runs `f` while a thread holds the write lock two thirds of the time, in slices of
    /// [`THROTTLE_HOLD`]. For emergency truncations only: a writer that produces WAL
    /// faster than it can be copied and backfilled is slowed to a pace the checkpoint can
    /// finish at, instead of growing the WAL without bound, and no commit waits much
    /// longer than one slice.
    fn throttled<T>(&mut self, f: impl FnOnce(&mut Syncer) -> Result<T>) -> Result<T> {
        let conn = match self.throttle.take() {
            Some(c) => c,
            None => {
                let c = Conn::open(&self.shared.path)?;
                c.exec("PRAGMA wal_autocheckpoint = 0")?;
                c.set_persist_wal()?;
                c.eager_busy_handler(THROTTLE_HOLD * 10);
                c
            }
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (r, conn) = std::thread::scope(|scope| {
            let stop = &stop;
            let h = scope.spawn(move || {
                use std::sync::atomic::Ordering::Relaxed;
                while !stop.load(Relaxed) {
                    if conn.exec("BEGIN IMMEDIATE").is_ok() {
                        let t = Instant::now();
                        while !stop.load(Relaxed) && t.elapsed() < THROTTLE_HOLD {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        let _ = conn.exec("ROLLBACK");
                    }
                    std::thread::sleep(THROTTLE_HOLD / 2);
                }
                conn
            });
            let r = f(self);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            (r, h.join().ok())
        });
        self.throttle = conn;
        r
    }

    /// Checkpoints without stalling writers for longer than it takes to copy the frames
    /// written since the previous step (see the module docs).
    pub(super) fn checkpoint(&mut self, truncate: bool) -> Result<()> {
        let started = Instant::now();
        let r = self.checkpoint_mode(truncate);
        let mode = if truncate { "TRUNCATE" } else { "PASSIVE" };
        let secs = started.elapsed().as_secs_f64();
        let ok = r.is_ok();
        self.shared.publish(|st| st.note_checkpoint(mode, secs, ok));
        r
    }

    fn checkpoint_mode(&mut self, truncate: bool) -> Result<()> {
        if truncate {
            let size = fs::metadata(&self.wal_path).map(|m| m.len()).unwrap_or(0);
            log::info!(
                "{}: WAL is {size} bytes, over the truncate threshold: checkpointing and truncating it",
                self.shared.path.display()
            );
            return self.throttled(|s| s.checkpoint_inner(true));
        }
        self.checkpoint_inner(false)
    }

    fn checkpoint_inner(&mut self, truncate: bool) -> Result<()> {
        self.sync(true)?;
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
            let mark = self.pos.as_ref().map(|p| (p.end, p.salts));
            if !(truncate && self.futile_passive) {
                self.w.checkpoint(CheckpointMode::Passive)?;
            }
            self.sync(true)?;
            let now = self.pos.as_ref().map(|p| (p.end, p.salts));
            let behind = match (mark, now) {
                (Some((m, ms)), Some((n, ns))) if ms == ns => n.saturating_sub(m),
                _ => 0,
            };
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
            // Bounding the WAL cannot wait for rounds that do not converge: a writer as
            // fast as the copy plus the backfill would keep the WAL growing by gigabytes.
            let diverging = truncate && behind.saturating_mul(2) > prev_behind;
            prev_behind = behind;
            if round >= BACKFILL_ROUNDS || (diverging && round > 1) {
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
        // 3. Copy and backfill what was written meanwhile, re-take R, release writers.
        let full = self.with_barrier(|s| {
            if let SyncOutcome::NeedSnapshot = s.sync(false)? {
                return Ok(None);
            }
            s.end_read()?;
            let ck = s.r.checkpoint(CheckpointMode::Passive);
            let br = s.begin_read();
            let (busy, log, ckpt) = ck?;
            br?;
            s.restart_ok = true;
            Ok(Some(!busy && log >= 0 && log == ckpt))
        })?;
        log::debug!(
            "{}: checkpoint final barrier: {full:?} (truncate {truncate})",
            self.shared.path.display()
        );
        let Some(Some(full)) = full else {
            return Ok(());
        };
        self.futile_passive = !full;
        self.last_checkpoint = Instant::now();
        self.shared.publish(|st| st.checkpoint_count += 1);
        self.synced_since_checkpoint = false;
        if truncate && full {
            // 4. Everything is copied and backfilled and R reads the database file only, so
            // the next write restarts the WAL; make it ours (a bump of _litestream_seq, as
            // Litestream does), right away, so journal_size_limit shrinks the file at its
            // commit. If an application write gets in first it restarts the WAL instead
            // (nothing lost: R allows one restart) and the file is shrunk next time.
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
            let size = fs::metadata(&self.wal_path).map(|m| m.len()).unwrap_or(0);
            log::debug!(
                "{}: WAL restarted by us, now {size} bytes",
                self.shared.path.display()
            );
        }
        Ok(())
    }
}
