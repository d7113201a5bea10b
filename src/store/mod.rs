//! The store: many databases, their threads, the upload pool and the compaction thread,
//! and the one place that wires them together.
//!
//! Threads of a running store:
//!
//! * one per database: polls its WAL, writes L0 files, checkpoints (see [`crate::db`]);
//!   after each tick it calls the listener the store gave it, which kicks that database's
//!   replicas;
//! * a small pool that uploads L0 files to replicas (see [`crate::replica`]);
//! * one compaction thread, driven by a timer wheel, that compacts levels, takes L9
//!   snapshots and enforces retention for every database and replica (see
//!   [`crate::compaction`]).

mod background;
mod control;
mod db;
mod heartbeat;
mod status;
mod validation;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use background::Background;
pub use control::{StoreHandle, SyncResult};
pub use db::Db;
pub use heartbeat::{
    Heartbeat, DEFAULT_HEARTBEAT_INTERVAL, HEARTBEAT_CHECK_INTERVAL, MIN_HEARTBEAT_INTERVAL,
};
pub use status::{CheckpointStats, CloseReport, DbStatus, ReplicaStatus, StoreMonitor, StoreStats};
pub use validation::{ValidationError, ValidationKind};

use crate::compaction::{self, CompactionLevels, Compactor, Target};
use crate::db::DbHandle;
use crate::error::{Error, Result};
use crate::ltx::Txid;
use crate::pool::{Pool, Workers};
use crate::replica::ReplicaShared;

/// Store-wide settings, with Litestream's defaults.
#[derive(Clone, Debug)]
pub(crate) struct StoreConfig {
    /// What the compaction thread does besides compacting (snapshots, retention).
    pub compaction_settings: compaction::Settings,
    pub shutdown_timeout: Duration,
    pub upload_workers: usize,
    pub compaction: bool,
    pub heartbeat: Option<Heartbeat>,
    pub validation_interval: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            compaction_settings: compaction::Settings::default(),
            shutdown_timeout: Duration::from_secs(30),
            upload_workers: 4,
            compaction: true,
            heartbeat: None,
            validation_interval: Duration::ZERO,
        }
    }
}

/// One database of the store and its replicas.
#[derive(Clone, Debug)]
struct Entry {
    db: DbHandle,
    replicas: Vec<Arc<ReplicaShared>>,
}

#[derive(Debug)]
struct Running {
    pool: Pool,
    workers: Option<Workers>,
    /// The threads of the databases that replicate now (stopped ones have none).
    db_threads: HashMap<PathBuf, JoinHandle<()>>,
    compactor: Option<Compactor>,
    background: Vec<Background>,
    levels: CompactionLevels,
    config: StoreConfig,
}

/// What a store shares with its handles: the databases and, while open, the threads.
/// Lock order: `running`, then `dbs`; neither is held while waiting for uploads.
#[derive(Debug, Default)]
struct Live {
    dbs: Mutex<Vec<Entry>>,
    running: Mutex<Option<Running>>,
    stats: Mutex<StoreStats>,
}

impl Live {
    fn entries(&self) -> Vec<Entry> {
        self.dbs.lock().map(|d| d.clone()).unwrap_or_default()
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, StoreStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn find(&self, path: &Path) -> Result<Entry> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        self.entries()
            .into_iter()
            .find(|e| e.db.path() == path)
            .ok_or(Error::UnknownDatabase(path))
    }

    fn is_running(&self, path: &Path) -> bool {
        self.running()
            .as_ref()
            .is_some_and(|r| r.db_threads.contains_key(path))
    }

    fn pool(&self) -> Option<Pool> {
        self.running().as_ref().map(|r| r.pool.clone())
    }
}

/// Starts the thread of one database, whose listener kicks its replicas' uploads.
fn spawn_db(e: &Entry, pool: &Pool) -> Result<JoinHandle<()>> {
    let (db, replicas, pool) = (e.db.clone(), e.replicas.clone(), pool.clone());
    let kick = Box::new(move || {
        replicas
            .iter()
            .filter_map(|r| r.kick(&db, &pool, false))
            .min()
    });
    crate::db::spawn(&e.db, kick)
}

/// (Re)starts the compaction thread over the databases that replicate now.
fn restart_compactor(r: &mut Running, dbs: &[Entry]) -> Result<()> {
    if let Some(c) = r.compactor.take() {
        c.stop();
    }
    if !r.config.compaction {
        return Ok(());
    }
    let targets = dbs
        .iter()
        .filter(|e| r.db_threads.contains_key(e.db.path()))
        .map(|e| Target {
            db: e.db.clone(),
            replicas: e.replicas.clone(),
        })
        .collect();
    let settings = r.config.compaction_settings.clone();
    r.compactor = Some(Compactor::start(targets, r.levels.clone(), settings)?);
    Ok(())
}

/// Syncs `e` once more and waits until every replica has its TXID or `deadline` passes,
/// kicking uploads every 500 ms. A database that holds nothing yet (it never appeared)
/// has nothing to wait for.
fn drain(e: &Entry, pool: &Pool, target: Txid, deadline: Instant) {
    let target = target.max(e.db.state().lineage_start);
    if target == Txid::ZERO {
        return;
    }
    loop {
        let mut done = true;
        for r in &e.replicas {
            if r.remote_txid().is_none_or(|x| x < target) {
                done = false;
                r.kick(&e.db, pool, true);
            }
        }
        if done || Instant::now() >= deadline {
            return;
        }
        let step = (Instant::now() + Duration::from_millis(500)).min(deadline);
        for r in &e.replicas {
            r.wait_for(&e.db, target, step);
        }
    }
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
///
/// Databases can be added, stopped, started and removed while the store runs, from
/// any thread, through a [`StoreHandle`] ([`Store::handle`]).
#[derive(Debug)]
pub struct Store {
    pub(crate) levels: CompactionLevels,
    pub(crate) config: StoreConfig,
    live: Arc<Live>,
}

impl Store {
    /// A store for `dbs` with compaction `levels`. Every database needs at least one
    /// replica, and paths must be distinct.
    pub fn new(dbs: Vec<Db>, levels: CompactionLevels) -> Result<Store> {
        let mut entries: Vec<Entry> = Vec::new();
        for d in dbs {
            let e = entry_for(d, &entries)?;
            entries.push(e);
        }
        Ok(Store {
            levels,
            config: StoreConfig::default(),
            live: Arc::new(Live {
                dbs: Mutex::new(entries),
                ..Live::default()
            }),
        })
    }

    /// How often an L9 snapshot is taken (default 24 h; must be > 0).
    pub fn snapshot_interval(mut self, d: Duration) -> Self {
        self.config.compaction_settings.snapshot_interval = d;
        self
    }

    /// How long snapshots are kept (default 24 h).
    pub fn snapshot_retention(mut self, d: Duration) -> Self {
        self.config.compaction_settings.snapshot_retention = d;
        self
    }

    /// How long L0 files are kept after compaction into L1 (default 5 min; zero keeps
    /// them forever).
    pub fn l0_retention(mut self, d: Duration) -> Self {
        self.config.compaction_settings.l0_retention = d;
        self
    }

    /// How often L0 retention runs (default 15 s).
    pub fn l0_retention_check_interval(mut self, d: Duration) -> Self {
        self.config.compaction_settings.l0_retention_check_interval = d;
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
        self.config.compaction_settings.retention = on;
        self
    }

    /// Sends a GET to a health-check URL whenever every running database has synced to
    /// its replicas within the heartbeat's interval (see [`Heartbeat`]).
    pub fn heartbeat(mut self, h: Heartbeat) -> Self {
        self.config.heartbeat = Some(h);
        self
    }

    /// Checks every level of every replica for gaps, overlaps and order at this
    /// interval, logging what is wrong (see
    /// [`StoreHandle::validate`](crate::StoreHandle::validate)); zero turns it off.
    pub fn validation_interval(mut self, d: Duration) -> Self {
        self.config.validation_interval = d;
        self
    }

    /// The databases' paths.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.live
            .entries()
            .iter()
            .map(|e| e.db.path().to_path_buf())
            .collect()
    }

    /// Starts every thread. Databases that do not exist yet are picked up when they
    /// appear.
    pub fn open(&mut self) -> Result<()> {
        let mut guard = self.live.running();
        if guard.is_some() {
            return Ok(());
        }
        if self.config.compaction_settings.snapshot_interval.is_zero() {
            return Err(Error::Invalid(
                "snapshot interval must be greater than zero".into(),
            ));
        }
        let (pool, workers) = Pool::new(self.config.upload_workers, "litestream-upload")
            .map_err(|e| Error::io("start upload threads", e))?;
        let mut running = Running {
            pool,
            workers: Some(workers),
            db_threads: HashMap::new(),
            compactor: None,
            background: Vec::new(),
            levels: self.levels.clone(),
            config: self.config.clone(),
        };
        let dbs = self.live.entries();
        for e in &dbs {
            let h = spawn_db(e, &running.pool)?;
            running.db_threads.insert(e.db.path().to_path_buf(), h);
        }
        restart_compactor(&mut running, &dbs)?;
        if let Some(h) = self.config.heartbeat.clone() {
            running.background.push(heartbeat::start(h, self.handle())?);
        }
        if !self.config.validation_interval.is_zero() {
            running.background.push(validation::start(
                self.config.validation_interval,
                self.handle(),
            )?);
        }
        *guard = Some(running);
        Ok(())
    }

    /// A cheap handle that controls this store from any thread.
    pub fn handle(&self) -> StoreHandle {
        StoreHandle {
            live: self.live.clone(),
            levels: self.levels.clone(),
        }
    }

    /// Syncs a database now (instead of at its next tick) and returns its local TXID.
    pub fn sync(&self, path: impl AsRef<Path>) -> Result<Txid> {
        self.handle().sync(path.as_ref())
    }

    /// Blocks until every replica of the database holds `txid` (default: the database's
    /// current TXID), without forcing any extra upload. Returns the TXID waited for.
    pub fn wait_replicated(
        &self,
        path: &Path,
        txid: Option<Txid>,
        timeout: Duration,
    ) -> Result<Txid> {
        self.handle().wait_replicated(path, txid, timeout)
    }

    /// The replication state of every database.
    pub fn status(&self) -> Vec<DbStatus> {
        self.handle().status()
    }

    /// A cheap handle that reads the store's status from another thread (metrics).
    pub fn monitor(&self) -> StoreMonitor {
        StoreMonitor {
            handle: self.handle(),
        }
    }

    /// Final sync of every database, then waits (up to the shutdown timeout) until every
    /// replica has everything, and stops all threads. The report says exactly what was not
    /// replicated.
    pub fn close(&mut self) -> Result<CloseReport> {
        self.close_with(self.config.shutdown_timeout)
    }

    fn close_with(&mut self, timeout: Duration) -> Result<CloseReport> {
        let Some(mut running) = self.live.running().take() else {
            return Ok(CloseReport { dbs: self.status() });
        };
        for b in running.background.drain(..) {
            b.stop();
        }
        // Stop compaction first: it may hold the database threads' attention.
        if let Some(c) = running.compactor.take() {
            c.stop();
        }
        let dbs: Vec<Entry> = self
            .live
            .entries()
            .into_iter()
            .filter(|e| running.db_threads.contains_key(e.db.path()))
            .collect();
        // Final sync of each database.
        let mut targets = Vec::new();
        for e in &dbs {
            let t = match e.db.sync() {
                Ok(t) => t,
                Err(err) => {
                    log::warn!("{}: final sync failed: {err}", e.db.path().display());
                    e.db.txid()
                }
            };
            targets.push(t);
        }
        // Upload until caught up or the deadline.
        let deadline = Instant::now() + timeout;
        for (e, &t) in dbs.iter().zip(&targets) {
            drain(e, &running.pool, t, deadline);
        }
        // Stop the database threads (they sync once more), then the pool.
        for e in &dbs {
            let _ = e.db.close();
        }
        for (_, h) in running.db_threads.drain() {
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

/// The entry for a new database `d`, checked against the `existing` ones.
fn entry_for(d: Db, existing: &[Entry]) -> Result<Entry> {
    if d.replicas.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: a database needs at least one replica",
            d.path.display()
        )));
    }
    let abs = std::path::absolute(&d.path).unwrap_or_else(|_| d.path.clone());
    let meta = d.resolved_meta_path();
    for e in existing {
        if e.db.path() == abs {
            return Err(Error::Invalid(format!(
                "{}: database listed twice",
                d.path.display()
            )));
        }
        if e.db.meta_path() == meta {
            return Err(Error::Invalid(format!(
                "{}: meta path {} is used by another database",
                d.path.display(),
                meta.display()
            )));
        }
    }
    Ok(Entry {
        db: DbHandle::new(&d.path, meta, d.opts.clone()),
        replicas: d
            .replicas
            .into_iter()
            .enumerate()
            .map(|(i, r)| Arc::new(ReplicaShared::new(r, i)))
            .collect(),
    })
}

impl Drop for Store {
    /// Stops every thread without waiting for uploads (use [`Store::close`] for that).
    fn drop(&mut self) {
        if self.live.running().is_some() {
            let _ = self.close_with(Duration::ZERO);
        }
    }
}
