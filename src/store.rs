//! The store: many databases, their threads, the upload pool and the compaction thread.
//!
//! Threads of a running store:
//!
//! * one per database: polls its WAL, writes L0 files, checkpoints (see [`crate::db`]);
//! * a small pool that uploads L0 files to replicas (see [`crate::replica`]);
//! * one compaction thread, driven by a timer wheel, that compacts levels, takes L9
//!   snapshots and enforces retention for every database and replica.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::compaction::{self, CompactionLevels};
use crate::db::{self, Cmd, Db, DbShared};
use crate::error::{Error, Result};
use crate::ltx::Txid;
use crate::pool::{Pool, Workers};
use crate::timer::{self, Clock, Millis, SystemClock, TimerWheel};

/// Store-wide settings, with Litestream's defaults.
#[derive(Clone, Debug)]
pub(crate) struct StoreConfig {
    pub snapshot_interval: Duration,
    pub snapshot_retention: Duration,
    pub l0_retention: Duration,
    pub l0_retention_check_interval: Duration,
    pub shutdown_timeout: Duration,
    pub upload_workers: usize,
    pub compaction: bool,
    pub retention: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            snapshot_interval: Duration::from_secs(24 * 3600),
            snapshot_retention: Duration::from_secs(24 * 3600),
            l0_retention: Duration::from_secs(300),
            l0_retention_check_interval: Duration::from_secs(15),
            shutdown_timeout: Duration::from_secs(30),
            upload_workers: 4,
            compaction: true,
            retention: true,
        }
    }
}

/// Replication state of one database, as [`Store::status`] reports it.
#[derive(Clone, Debug)]
pub struct DbStatus {
    /// Database path.
    pub path: PathBuf,
    /// TXID of the newest local L0 file.
    pub local_txid: Txid,
    /// Size of the WAL at the last sync.
    pub wal_size: u64,
    /// When the last L0 file was written.
    pub last_sync: Option<SystemTime>,
    /// The last error of the database thread, if it is failing.
    pub error: Option<String>,
    /// Size of the database file at the last sync.
    pub db_size: u64,
    /// Syncs run (ticks that found the WAL changed, and forced syncs).
    pub sync_count: u64,
    /// Syncs that failed.
    pub sync_errors: u64,
    /// Seconds spent syncing.
    pub sync_seconds: f64,
    /// Checkpoints completed.
    pub checkpoint_count: u64,
    /// One entry per replica.
    pub replicas: Vec<ReplicaStatus>,
}

/// Replication state of one replica.
#[derive(Clone, Debug)]
pub struct ReplicaStatus {
    /// Backend kind.
    pub kind: &'static str,
    /// Highest TXID known to be on the replica.
    pub remote_txid: Option<Txid>,
    /// When the last file was uploaded.
    pub last_upload: Option<SystemTime>,
    /// Files and bytes uploaded since the store opened.
    pub uploaded_files: u64,
    /// Bytes uploaded since the store opened.
    pub uploaded_bytes: u64,
    /// Failed upload batches since the store opened.
    pub errors: u64,
    /// The last upload error, while it is failing.
    pub error: Option<String>,
}

/// Reads a running store's status from any thread.
#[derive(Clone, Debug)]
pub struct StoreMonitor {
    dbs: Vec<Arc<DbShared>>,
}

impl StoreMonitor {
    /// The replication state of every database.
    pub fn status(&self) -> Vec<DbStatus> {
        self.dbs.iter().map(|d| db_status(d)).collect()
    }
}

/// What [`Store::close`] managed to replicate.
#[derive(Clone, Debug)]
pub struct CloseReport {
    /// One entry per database.
    pub dbs: Vec<DbStatus>,
}

impl CloseReport {
    /// True if every replica holds its database's final TXID.
    pub fn is_complete(&self) -> bool {
        self.dbs.iter().all(|d| {
            d.replicas
                .iter()
                .all(|r| r.remote_txid.is_some_and(|t| t >= d.local_txid))
        })
    }

    /// One line per replica that did not get everything.
    pub fn missing(&self) -> Vec<String> {
        let mut out = Vec::new();
        for d in &self.dbs {
            for (i, r) in d.replicas.iter().enumerate() {
                if r.remote_txid.is_none_or(|t| t < d.local_txid) {
                    out.push(format!(
                        "{}: replica {i} ({}) has {} of {}{}",
                        d.path.display(),
                        r.kind,
                        r.remote_txid
                            .map(|t| t.to_string())
                            .unwrap_or_else(|| "nothing known".into()),
                        d.local_txid,
                        r.error
                            .as_ref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ));
                }
            }
        }
        out
    }
}

/// Control block of the compaction thread.
#[derive(Debug, Default)]
struct Ctl {
    stop: Mutex<bool>,
    wake: Condvar,
}

#[derive(Debug)]
struct Running {
    pool: Pool,
    workers: Option<Workers>,
    db_threads: Vec<JoinHandle<()>>,
    compactor: Option<JoinHandle<()>>,
    ctl: Arc<Ctl>,
}

/// Many databases replicated together, with compaction, snapshots and retention.
///
/// ```no_run
/// use litestream::{CompactionLevels, Db, Replica, Store};
/// let db = Db::new("/data/app.db").replica(Replica::from_url("file:///backups/app")?);
/// let mut store = Store::new(vec![db], CompactionLevels::default())?;
/// store.open()?;
/// // ... the application writes to /data/app.db ...
/// let report = store.close()?;
/// assert!(report.is_complete());
/// # Ok::<(), litestream::Error>(())
/// ```
#[derive(Debug)]
pub struct Store {
    dbs: Vec<Arc<DbShared>>,
    pub(crate) levels: CompactionLevels,
    pub(crate) config: StoreConfig,
    running: Option<Running>,
}

impl Store {
    /// A store for `dbs` with compaction `levels`. Every database needs at least one
    /// replica, and paths must be distinct.
    pub fn new(dbs: Vec<Db>, levels: CompactionLevels) -> Result<Store> {
        let mut seen = HashSet::new();
        let mut metas = HashSet::new();
        for d in &dbs {
            if d.replicas.is_empty() {
                return Err(Error::Invalid(format!(
                    "{}: a database needs at least one replica",
                    d.path.display()
                )));
            }
            if !seen.insert(d.path.clone()) {
                return Err(Error::Invalid(format!(
                    "{}: database listed twice",
                    d.path.display()
                )));
            }
            if !metas.insert(d.resolved_meta_path()) {
                return Err(Error::Invalid(format!(
                    "{}: meta path {} is used by another database",
                    d.path.display(),
                    d.resolved_meta_path().display()
                )));
            }
        }
        Ok(Store {
            dbs: dbs.into_iter().map(DbShared::new).collect(),
            levels,
            config: StoreConfig::default(),
            running: None,
        })
    }

    /// How often an L9 snapshot is taken (default 24 h; must be > 0).
    pub fn snapshot_interval(mut self, d: Duration) -> Self {
        self.config.snapshot_interval = d;
        self
    }

    /// How long snapshots are kept (default 24 h).
    pub fn snapshot_retention(mut self, d: Duration) -> Self {
        self.config.snapshot_retention = d;
        self
    }

    /// How long L0 files are kept after compaction into L1 (default 5 min; zero keeps
    /// them forever).
    pub fn l0_retention(mut self, d: Duration) -> Self {
        self.config.l0_retention = d;
        self
    }

    /// How often L0 retention runs (default 15 s).
    pub fn l0_retention_check_interval(mut self, d: Duration) -> Self {
        self.config.l0_retention_check_interval = d;
        self
    }

    /// How long [`close`](Self::close) waits for uploads (default 30 s).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.config.shutdown_timeout = d;
        self
    }

    /// Number of upload threads (default 4).
    pub fn upload_workers(mut self, n: usize) -> Self {
        self.config.upload_workers = n.max(1);
        self
    }

    /// Turns compaction, snapshots and retention on or off (default on).
    pub fn compaction(mut self, on: bool) -> Self {
        self.config.compaction = on;
        self
    }

    /// Turns remote deletes by retention on or off (default on).
    pub fn retention(mut self, on: bool) -> Self {
        self.config.retention = on;
        self
    }

    /// The databases' paths.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dbs.iter().map(|d| d.path.clone()).collect()
    }

    /// Starts every thread. Databases that do not exist yet are picked up when they
    /// appear.
    pub fn open(&mut self) -> Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        if self.config.snapshot_interval.is_zero() {
            return Err(Error::Invalid(
                "snapshot interval must be greater than zero".into(),
            ));
        }
        let (pool, workers) = Pool::new(self.config.upload_workers, "litestream-upload")
            .map_err(|e| Error::io("start upload threads", e))?;
        let mut db_threads = Vec::new();
        for d in &self.dbs {
            let (tx, rx) = std::sync::mpsc::channel();
            if let Ok(mut g) = d.cmd.lock() {
                *g = Some(tx);
            }
            let shared = d.clone();
            let pool = pool.clone();
            let name = format!(
                "litestream-db-{}",
                d.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            );
            let h = std::thread::Builder::new()
                .name(name)
                .spawn(move || db::run(shared, rx, pool))
                .map_err(|e| Error::io("start database thread", e))?;
            db_threads.push(h);
        }
        let ctl = Arc::new(Ctl::default());
        let compactor = if self.config.compaction {
            let c = Compactor {
                known: Default::default(),
                dbs: self.dbs.clone(),
                levels: self.levels.clone(),
                config: self.config.clone(),
                ctl: ctl.clone(),
                clock: Arc::new(SystemClock::new()),
            };
            Some(
                std::thread::Builder::new()
                    .name("litestream-compaction".into())
                    .spawn(move || c.run())
                    .map_err(|e| Error::io("start compaction thread", e))?,
            )
        } else {
            None
        };
        self.running = Some(Running {
            pool,
            workers: Some(workers),
            db_threads,
            compactor,
            ctl,
        });
        Ok(())
    }

    fn find(&self, path: &Path) -> Result<&Arc<DbShared>> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        self.dbs.iter().find(|d| d.path == path).ok_or_else(|| {
            Error::Invalid(format!("{}: not a database of this store", path.display()))
        })
    }

    /// Syncs a database now (instead of at its next tick) and returns its local TXID.
    pub fn sync(&self, path: impl AsRef<Path>) -> Result<Txid> {
        let d = self.find(path.as_ref())?;
        let t = d.request(Cmd::Sync)?;
        if let Some(r) = &self.running {
            for rep in &d.replicas {
                rep.kick_with(d, &r.pool, true);
            }
        }
        Ok(t)
    }

    /// Blocks until every replica of the database holds `txid` (default: the database's
    /// current TXID), without forcing any extra upload. Returns the TXID waited for.
    pub fn wait_replicated(
        &self,
        path: &Path,
        txid: Option<Txid>,
        timeout: Duration,
    ) -> Result<Txid> {
        let d = self.find(path)?;
        let target = txid.unwrap_or_else(|| d.txid());
        let deadline = Instant::now() + timeout;
        for (i, r) in d.replicas.iter().enumerate() {
            if !r.wait_for(d, target, deadline) {
                return Err(Error::Shutdown(format!(
                    "{}: replica {i} ({}) did not reach {target} within {timeout:?}{}",
                    d.path.display(),
                    r.client.kind(),
                    r.state()
                        .last_error
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )));
            }
        }
        Ok(target)
    }

    /// The replication state of every database.
    pub fn status(&self) -> Vec<DbStatus> {
        self.dbs.iter().map(|d| db_status(d)).collect()
    }

    /// A cheap handle that reads the store's status from another thread (metrics).
    pub fn monitor(&self) -> StoreMonitor {
        StoreMonitor {
            dbs: self.dbs.clone(),
        }
    }

    /// Final sync of every database, then waits (up to the shutdown timeout) until every
    /// replica has everything, and stops all threads. The report says exactly what was not
    /// replicated.
    pub fn close(&mut self) -> Result<CloseReport> {
        self.close_with(self.config.shutdown_timeout)
    }

    fn close_with(&mut self, timeout: Duration) -> Result<CloseReport> {
        let Some(mut running) = self.running.take() else {
            return Ok(CloseReport { dbs: self.status() });
        };
        // Stop compaction first: it may hold the database threads' attention.
        if let Ok(mut s) = running.ctl.stop.lock() {
            *s = true;
        }
        running.ctl.wake.notify_all();
        if let Some(h) = running.compactor.take() {
            let _ = h.join();
        }
        // Final sync of each database.
        let mut targets = Vec::new();
        for d in &self.dbs {
            let t = match d.request(Cmd::Sync) {
                Ok(t) => t,
                Err(e) => {
                    log::warn!("{}: final sync failed: {e}", d.path.display());
                    d.txid()
                }
            };
            targets.push(t);
        }
        // Upload until caught up or the deadline, retrying every 500 ms.
        let deadline = Instant::now() + timeout;
        loop {
            let mut done = true;
            for (d, &t) in self.dbs.iter().zip(&targets) {
                let t = t.max(d.status().lineage_start);
                for r in &d.replicas {
                    if r.remote_txid().is_none_or(|x| x < t) {
                        done = false;
                        r.kick_with(d, &running.pool, true);
                    }
                }
            }
            if done || Instant::now() >= deadline {
                break;
            }
            let step = Instant::now() + Duration::from_millis(500);
            for (d, &t) in self.dbs.iter().zip(&targets) {
                for r in &d.replicas {
                    r.wait_for(d, t, step.min(deadline));
                }
            }
        }
        // Stop the database threads (they sync once more), then the pool.
        for d in &self.dbs {
            let _ = d.request(Cmd::Close);
            if let Ok(mut g) = d.cmd.lock() {
                g.take();
            }
        }
        for h in running.db_threads.drain(..) {
            let _ = h.join();
        }
        if let Some(w) = running.workers.take() {
            w.join();
        }
        let report = CloseReport { dbs: self.status() };
        for line in report.missing() {
            log::warn!("not replicated at shutdown: {line}");
        }
        Ok(report)
    }
}

impl Drop for Store {
    /// Stops every thread without waiting for uploads (use [`Store::close`] for that).
    fn drop(&mut self) {
        if self.running.is_some() {
            let _ = self.close_with(Duration::ZERO);
        }
    }
}

fn db_status(d: &DbShared) -> DbStatus {
    let s = d.status();
    DbStatus {
        path: d.path.clone(),
        local_txid: s.txid,
        wal_size: s.wal_size,
        last_sync: s.last_sync,
        error: s.error,
        db_size: s.db_size,
        sync_count: s.sync_count,
        sync_errors: s.sync_errors,
        sync_seconds: s.sync_seconds,
        checkpoint_count: s.checkpoint_count,
        replicas: d
            .replicas
            .iter()
            .map(|r| {
                let st = r.state();
                ReplicaStatus {
                    kind: r.client.kind(),
                    remote_txid: st.remote,
                    last_upload: st.last_upload,
                    uploaded_files: st.uploaded_files,
                    uploaded_bytes: st.uploaded_bytes,
                    errors: st.errors,
                    error: st.last_error,
                }
            })
            .collect(),
    }
}

/// A scheduled job of the compaction thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Job {
    Compact {
        db: usize,
        replica: usize,
        level: u8,
    },
    Snapshot {
        db: usize,
        replica: usize,
    },
    L0Retention {
        db: usize,
        replica: usize,
    },
}

struct Compactor {
    known: std::collections::HashMap<(usize, usize), compaction::Known>,
    dbs: Vec<Arc<DbShared>>,
    levels: CompactionLevels,
    config: StoreConfig,
    ctl: Arc<Ctl>,
    clock: Arc<dyn Clock>,
}

impl Compactor {
    fn run(mut self) {
        let mut wheel: TimerWheel<Job> = TimerWheel::new(self.clock.now());
        let now = self.clock.now();
        for (di, d) in self.dbs.iter().enumerate() {
            for ri in 0..d.replicas.len() {
                for l in self.levels.levels().iter().filter(|l| l.level > 0) {
                    wheel.insert(
                        now,
                        Job::Compact {
                            db: di,
                            replica: ri,
                            level: l.level,
                        },
                    );
                }
                wheel.insert(
                    now,
                    Job::Snapshot {
                        db: di,
                        replica: ri,
                    },
                );
                if !self.config.l0_retention.is_zero() {
                    wheel.insert(
                        now + self.config.l0_retention_check_interval.as_millis() as Millis,
                        Job::L0Retention {
                            db: di,
                            replica: ri,
                        },
                    );
                }
            }
        }
        loop {
            if self.stopped() {
                return;
            }
            let now = self.clock.now();
            for (_, job) in wheel.poll(now) {
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

    /// Runs a job; returns how long until it runs again.
    fn run_job(&mut self, job: Job) -> Duration {
        let wall = self.clock.wall();
        let until = |interval: Duration| {
            timer::next_aligned(wall, interval)
                .duration_since(self.clock.wall())
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_millis(1))
        };
        let retry = |interval: Duration| interval.min(Duration::from_secs(60));
        let (db_i, rep_i) = match job {
            Job::Compact { db, replica, .. }
            | Job::Snapshot { db, replica }
            | Job::L0Retention { db, replica } => (db, replica),
        };
        let mut known = self.known.remove(&(db_i, rep_i)).unwrap_or_else(|| {
            let mut k = compaction::Known::default();
            k.forget();
            k
        });
        let rebases = self.dbs[db_i].replicas[rep_i]
            .rebases
            .load(std::sync::atomic::Ordering::SeqCst);
        if rebases != known.rebases {
            known.forget();
            known.rebases = rebases;
        }
        let next = self.run_job_with(job, &mut known, wall, &until, &retry);
        self.known.insert((db_i, rep_i), known);
        next
    }

    fn run_job_with(
        &self,
        job: Job,
        known: &mut compaction::Known,
        wall: SystemTime,
        until: &dyn Fn(Duration) -> Duration,
        retry: &dyn Fn(Duration) -> Duration,
    ) -> Duration {
        match job {
            Job::Compact { db, replica, level } => {
                let d = &self.dbs[db];
                let interval = self.levels.levels()[level as usize].interval;
                if !d.status().initialized {
                    return Duration::from_secs(1).min(interval);
                }
                let r = &d.replicas[replica];
                let window = timer::prev_aligned(wall, interval);
                match compaction::compact_level(d, r, known, level, window, d.opts.encoding) {
                    Ok(Some(_))
                        if level == 1
                            && self.config.retention
                            && !self.config.l0_retention.is_zero() =>
                    {
                        if let Err(e) = compaction::enforce_l0_retention(
                            d,
                            r,
                            known,
                            self.config.l0_retention,
                            wall,
                        ) {
                            known.forget();
                            log::warn!("{}: L0 retention: {e}", d.path.display());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        known.forget();
                        log::warn!("{}: compaction of level {level}: {e}", d.path.display());
                        return retry(interval);
                    }
                }
                until(interval)
            }
            Job::Snapshot { db, replica } => {
                let d = &self.dbs[db];
                let interval = self.config.snapshot_interval;
                if !d.status().initialized {
                    return Duration::from_secs(1);
                }
                let r = &d.replicas[replica];
                let window = timer::prev_aligned(wall, interval);
                if let Err(e) = compaction::snapshot(d, r, known, window) {
                    known.forget();
                    log::warn!("{}: snapshot: {e}", d.path.display());
                    return retry(interval);
                }
                if self.config.retention {
                    if let Err(e) = compaction::enforce_snapshot_retention(
                        d,
                        r,
                        known,
                        self.config.snapshot_retention,
                        self.levels.max_level(),
                        self.clock.wall(),
                    ) {
                        known.forget();
                        log::warn!("{}: snapshot retention: {e}", d.path.display());
                    }
                }
                until(interval)
            }
            Job::L0Retention { db, replica } => {
                let d = &self.dbs[db];
                if self.config.retention && d.status().initialized {
                    if let Err(e) = compaction::enforce_l0_retention(
                        d,
                        &d.replicas[replica],
                        known,
                        self.config.l0_retention,
                        wall,
                    ) {
                        known.forget();
                        log::warn!("{}: L0 retention: {e}", d.path.display());
                    }
                }
                self.config.l0_retention_check_interval
            }
        }
    }
}
