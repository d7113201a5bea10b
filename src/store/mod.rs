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

mod db;
mod status;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use db::Db;
pub use status::{CloseReport, DbStatus, ReplicaStatus, StoreMonitor};

use crate::compaction::{self, CompactionLevels, Compactor, Target};
use crate::db::DbHandle;
use crate::error::{Error, Result};
use crate::ltx::Txid;
use crate::pool::{Pool, Workers};
use crate::replica::ReplicaShared;
use status::db_status;

/// Store-wide settings, with Litestream's defaults.
#[derive(Clone, Debug)]
pub(crate) struct StoreConfig {
    /// What the compaction thread does besides compacting (snapshots, retention).
    pub compaction_settings: compaction::Settings,
    pub shutdown_timeout: Duration,
    pub upload_workers: usize,
    pub compaction: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            compaction_settings: compaction::Settings::default(),
            shutdown_timeout: Duration::from_secs(30),
            upload_workers: 4,
            compaction: true,
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
    db_threads: Vec<JoinHandle<()>>,
    compactor: Option<Compactor>,
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
    dbs: Vec<Entry>,
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
        let dbs = dbs
            .into_iter()
            .map(|d| Entry {
                db: DbHandle::new(&d.path, d.resolved_meta_path(), d.opts.clone()),
                replicas: d
                    .replicas
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| Arc::new(ReplicaShared::new(r, i)))
                    .collect(),
            })
            .collect();
        Ok(Store {
            dbs,
            levels,
            config: StoreConfig::default(),
            running: None,
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

    /// The databases' paths.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dbs.iter().map(|e| e.db.path().to_path_buf()).collect()
    }

    /// Starts every thread. Databases that do not exist yet are picked up when they
    /// appear.
    pub fn open(&mut self) -> Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        if self.config.compaction_settings.snapshot_interval.is_zero() {
            return Err(Error::Invalid(
                "snapshot interval must be greater than zero".into(),
            ));
        }
        let (pool, workers) = Pool::new(self.config.upload_workers, "litestream-upload")
            .map_err(|e| Error::io("start upload threads", e))?;
        let mut db_threads = Vec::new();
        for e in &self.dbs {
            let (db, replicas, pool) = (e.db.clone(), e.replicas.clone(), pool.clone());
            let kick = Box::new(move || {
                for r in &replicas {
                    r.kick(&db, &pool, false);
                }
            });
            db_threads.push(crate::db::spawn(&e.db, kick)?);
        }
        let compactor = if self.config.compaction {
            let targets = self
                .dbs
                .iter()
                .map(|e| Target {
                    db: e.db.clone(),
                    replicas: e.replicas.clone(),
                })
                .collect();
            let settings = self.config.compaction_settings.clone();
            Some(Compactor::start(targets, self.levels.clone(), settings)?)
        } else {
            None
        };
        self.running = Some(Running {
            pool,
            workers: Some(workers),
            db_threads,
            compactor,
        });
        Ok(())
    }

    fn find(&self, path: &Path) -> Result<&Entry> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        self.dbs
            .iter()
            .find(|e| e.db.path() == path)
            .ok_or_else(|| {
                Error::Invalid(format!("{}: not a database of this store", path.display()))
            })
    }

    /// Syncs a database now (instead of at its next tick) and returns its local TXID.
    pub fn sync(&self, path: impl AsRef<Path>) -> Result<Txid> {
        let e = self.find(path.as_ref())?;
        let t = e.db.sync()?;
        if let Some(r) = &self.running {
            for rep in &e.replicas {
                rep.kick(&e.db, &r.pool, true);
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
        let e = self.find(path)?;
        let target = txid.unwrap_or_else(|| e.db.txid());
        let deadline = Instant::now() + timeout;
        for (i, r) in e.replicas.iter().enumerate() {
            if !r.wait_for(&e.db, target, deadline) {
                return Err(Error::Shutdown(format!(
                    "{}: replica {i} ({}) did not reach {target} within {timeout:?}{}",
                    e.db.path().display(),
                    r.client().kind(),
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
        self.dbs.iter().map(db_status).collect()
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
        if let Some(c) = running.compactor.take() {
            c.stop();
        }
        // Final sync of each database.
        let mut targets = Vec::new();
        for e in &self.dbs {
            let t = match e.db.sync() {
                Ok(t) => t,
                Err(err) => {
                    log::warn!("{}: final sync failed: {err}", e.db.path().display());
                    e.db.txid()
                }
            };
            targets.push(t);
        }
        // Upload until caught up or the deadline, retrying every 500 ms.
        let deadline = Instant::now() + timeout;
        loop {
            let mut done = true;
            for (e, &t) in self.dbs.iter().zip(&targets) {
                let t = t.max(e.db.state().lineage_start);
                for r in &e.replicas {
                    if r.remote_txid().is_none_or(|x| x < t) {
                        done = false;
                        r.kick(&e.db, &running.pool, true);
                    }
                }
            }
            if done || Instant::now() >= deadline {
                break;
            }
            let step = Instant::now() + Duration::from_millis(500);
            for (e, &t) in self.dbs.iter().zip(&targets) {
                for r in &e.replicas {
                    r.wait_for(&e.db, t, step.min(deadline));
                }
            }
        }
        // Stop the database threads (they sync once more), then the pool.
        for e in &self.dbs {
            let _ = e.db.close();
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
