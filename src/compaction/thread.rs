//! The compaction thread: one timer wheel schedules, for every database and replica, the
//! compaction of each level at its interval (aligned to the wall clock like Litestream),
//! the L9 snapshot and L0 retention; the thread sleeps until the next deadline.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::known::Known;
use super::{level, retention, snapshot, CompactionLevels, Settings};
use crate::db::DbHandle;
use crate::error::{Error, Result};
use crate::ltx::Txid;
use crate::replica::ReplicaShared;
use crate::timer::{self, Clock, Millis, SystemClock, TimerWheel};

/// A database and its replicas, as the compaction thread sees them.
#[derive(Debug)]
pub(crate) struct Target {
    /// The database.
    pub db: DbHandle,
    /// Its replicas.
    pub replicas: Vec<Arc<ReplicaShared>>,
}

/// Control block of the compaction thread.
#[derive(Debug, Default)]
struct Ctl {
    stop: Mutex<bool>,
    wake: Condvar,
}

/// The running compaction thread; [`Compactor::stop`] (or dropping it) stops and joins it.
#[derive(Debug)]
pub(crate) struct Compactor {
    ctl: Arc<Ctl>,
    thread: Option<JoinHandle<()>>,
}

impl Compactor {
    /// Starts the thread `litestream-compaction` for `targets`.
    pub(crate) fn start(
        targets: Vec<Target>,
        levels: CompactionLevels,
        settings: Settings,
    ) -> Result<Compactor> {
        let ctl = Arc::new(Ctl::default());
        let worker = Worker {
            known: HashMap::new(),
            targets,
            levels,
            settings,
            ctl: ctl.clone(),
            clock: Arc::new(SystemClock::new()),
        };
        let thread = std::thread::Builder::new()
            .name("litestream-compaction".into())
            .spawn(move || worker.run())
            .map_err(|e| Error::io("start compaction thread", e))?;
        Ok(Compactor {
            ctl,
            thread: Some(thread),
        })
    }

    /// Stops the thread after the job it is running, and waits for it.
    pub(crate) fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Ok(mut s) = self.ctl.stop.lock() {
            *s = true;
        }
        self.ctl.wake.notify_all();
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What a scheduled job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Compact(u8),
    Snapshot,
    L0Retention,
}

/// A scheduled job: a kind of work for one replica of one database (by index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Job {
    db: usize,
    replica: usize,
    kind: Kind,
}

/// The thread's state: its targets and what it knows of each replica.
struct Worker {
    known: HashMap<(usize, usize), Known>,
    targets: Vec<Target>,
    levels: CompactionLevels,
    settings: Settings,
    ctl: Arc<Ctl>,
    clock: Arc<dyn Clock>,
}

impl Worker {
    fn run(mut self) {
        let now = self.clock.now();
        let mut wheel: TimerWheel<Job> = TimerWheel::new(now);
        for (db, t) in self.targets.iter().enumerate() {
            for replica in 0..t.replicas.len() {
                let job = |kind| Job { db, replica, kind };
                for l in self.levels.levels().iter().filter(|l| l.level > 0) {
                    wheel.insert(now, job(Kind::Compact(l.level)));
                }
                wheel.insert(now, job(Kind::Snapshot));
                if !self.settings.l0_retention.is_zero() {
                    let first = self.settings.l0_retention_check_interval.as_millis() as Millis;
                    wheel.insert(now + first, job(Kind::L0Retention));
                }
            }
        }
        loop {
            if self.stopped() {
                return;
            }
            for (_, job) in wheel.poll(self.clock.now()) {
                if self.stopped() {
                    return;
                }
                let next = self.run_job(job);
                wheel.insert(self.clock.now() + next.as_millis() as Millis, job);
            }
            let wait = wheel
                .next_deadline()
                .map(|d| Duration::from_millis(d.saturating_sub(self.clock.now())))
                .unwrap_or(Duration::from_secs(3600));
            let Ok(guard) = self.ctl.stop.lock() else {
                return;
            };
            if *guard {
                return;
            }
            let _ = self.ctl.wake.wait_timeout(guard, wait);
        }
    }

    fn stopped(&self) -> bool {
        self.ctl.stop.lock().map(|s| *s).unwrap_or(true)
    }

    /// Runs a job with what is known of its replica; returns how long until it runs again.
    fn run_job(&mut self, job: Job) -> Duration {
        let key = (job.db, job.replica);
        let mut known = self.known.remove(&key).unwrap_or_else(|| {
            let mut k = Known::default();
            k.forget();
            k
        });
        let rebases = self.targets[job.db].replicas[job.replica].rebases();
        if rebases != known.rebases {
            known.forget();
            known.rebases = rebases;
        }
        let next = self.run_job_with(job, &mut known);
        self.known.insert(key, known);
        next
    }

    fn run_job_with(&self, job: Job, known: &mut Known) -> Duration {
        let wall = self.clock.wall();
        let until = |interval: Duration| {
            timer::next_aligned(wall, interval)
                .duration_since(self.clock.wall())
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_millis(1))
        };
        let retry = |interval: Duration| interval.min(Duration::from_secs(60));
        let t = &self.targets[job.db];
        let (d, r) = (&t.db, &t.replicas[job.replica]);
        if r.refused() {
            // Another writer shares this replica: compacting or snapshotting our database
            // into it would mix lineages.
            return Duration::from_secs(60);
        }
        let initialized = d.state().initialized;
        match job.kind {
            Kind::Compact(level) => {
                let interval = self.levels.levels()[level as usize].interval;
                if !initialized {
                    return Duration::from_secs(1).min(interval);
                }
                let window = timer::prev_aligned(wall, interval);
                match level::compact_level(d, r, known, level, window) {
                    Ok(Some(_)) if level == 1 => self.l0_retention(t, job.replica, known, wall),
                    Ok(_) => {}
                    Err(e) => {
                        known.forget();
                        log::warn!("{}: compaction of level {level}: {e}", d.path().display());
                        return retry(interval);
                    }
                }
                until(interval)
            }
            Kind::Snapshot => {
                let interval = self.settings.snapshot_interval;
                // Until a replica has its first file (a full snapshot, copied up to L9
                // rather than uploaded twice), there is nothing to snapshot against.
                if !initialized || r.remote_txid().unwrap_or_default() == Txid::ZERO {
                    return Duration::from_secs(1);
                }
                let window = timer::prev_aligned(wall, interval);
                if let Err(e) = snapshot::snapshot(d, r, known, window, self.levels.max_level()) {
                    known.forget();
                    log::warn!("{}: snapshot: {e}", d.path().display());
                    return retry(interval);
                }
                if self.settings.retention {
                    if let Err(e) = retention::enforce_snapshot_retention(
                        d,
                        r,
                        known,
                        self.settings.snapshot_retention,
                        self.levels.max_level(),
                        self.clock.wall(),
                    ) {
                        known.forget();
                        log::warn!("{}: snapshot retention: {e}", d.path().display());
                    }
                }
                until(interval)
            }
            Kind::L0Retention => {
                if initialized {
                    self.l0_retention(t, job.replica, known, wall);
                }
                self.settings.l0_retention_check_interval
            }
        }
    }

    /// Deletes a replica's L0 files already compacted into L1 (when retention is on),
    /// then the local L0 files every replica of the database is done with.
    fn l0_retention(&self, t: &Target, replica: usize, known: &mut Known, now: SystemTime) {
        if !self.settings.retention || self.settings.l0_retention.is_zero() {
            return;
        }
        match retention::enforce_l0_retention(
            &t.replicas[replica],
            known,
            self.settings.l0_retention,
            now,
        ) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                known.forget();
                log::warn!("{}: L0 retention: {e}", t.db.path().display());
                return;
            }
        }
        let through = t
            .replicas
            .iter()
            .map(|r| r.state().l0_deleted_through)
            .min()
            .unwrap_or(Txid::ZERO);
        t.db.retire_local_l0(through);
    }
}
