//! [`StoreHandle`]: a running store controlled from any thread — databases added,
//! stopped, started and removed at runtime, forced syncs and waits, status. The control
//! socket, the directory watcher and the store's own background threads use it.

use std::path::Path;
use std::time::{Duration, Instant};

use super::status::{db_status, DbStatus, StoreStats};
use super::{drain, entry_for, restart_compactor, spawn_db, CloseReport, Db, Entry, Live};
use crate::compaction::CompactionLevels;
use crate::error::{Error, Result};
use crate::ltx::Txid;
use std::sync::Arc;

/// What a forced sync did ([`StoreHandle::sync_db`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncResult {
    /// The local TXID after the sync.
    pub txid: Txid,
    /// The lowest TXID held by every replica (after waiting, when asked to).
    pub replicated_txid: Txid,
    /// True if the sync wrote a new local file.
    pub changed: bool,
}

/// Controls a store from any thread; cheap to clone. Made by [`Store::handle`](super::Store::handle).
#[derive(Clone, Debug)]
pub struct StoreHandle {
    pub(super) live: Arc<Live>,
    pub(super) levels: CompactionLevels,
}

impl StoreHandle {
    /// The databases' absolute paths, in the order they were added.
    pub fn paths(&self) -> Vec<std::path::PathBuf> {
        self.live
            .entries()
            .iter()
            .map(|e| e.db.path().to_path_buf())
            .collect()
    }

    /// True if the store has a database at `path` (running or stopped).
    pub fn contains(&self, path: &Path) -> bool {
        self.live.find(path).is_ok()
    }

    /// True if the database at `path` replicates now (registered and not stopped, in an
    /// open store).
    pub fn is_running(&self, path: &Path) -> bool {
        self.live
            .find(path)
            .is_ok_and(|e| self.live.is_running(e.db.path()))
    }

    /// The compaction levels of the store.
    pub fn levels(&self) -> &CompactionLevels {
        &self.levels
    }

    /// The replication state of every database.
    pub fn status(&self) -> Vec<DbStatus> {
        self.live
            .entries()
            .iter()
            .map(|e| {
                let mut s = db_status(e);
                s.running = self.live.is_running(e.db.path());
                s
            })
            .collect()
    }

    /// Counters of the store's own background work (heartbeats, validation).
    pub fn stats(&self) -> StoreStats {
        self.live.stats().clone()
    }

    pub(super) fn stats_mut(&self, f: impl FnOnce(&mut StoreStats)) {
        f(&mut self.live.stats());
    }

    /// Adds a database; in an open store it starts replicating at once. Its path and
    /// meta path must not be used by another database of the store.
    pub fn add(&self, db: Db) -> Result<()> {
        let mut running = self.live.running();
        let mut dbs = self
            .live
            .dbs
            .lock()
            .map_err(|_| Error::State("store state poisoned".into()))?;
        let e = entry_for(db, &dbs)?;
        if let Some(r) = running.as_mut() {
            let h = spawn_db(&e, &r.pool)?;
            r.db_threads.insert(e.db.path().to_path_buf(), h);
            dbs.push(e);
            let all = dbs.clone();
            drop(dbs);
            restart_compactor(r, &all)?;
        } else {
            dbs.push(e);
        }
        Ok(())
    }

    /// Stops replicating the database at `path` (it stays registered): a final sync, a
    /// wait of at most `timeout` until every replica holds it, then its thread stops.
    /// Returns what was replicated, or `None` if it was not running.
    pub fn stop(&self, path: &Path, timeout: Duration) -> Result<Option<CloseReport>> {
        let e = self.live.find(path)?;
        if !self.live.is_running(e.db.path()) {
            return Ok(None);
        }
        let target = e.db.sync().unwrap_or_else(|err| {
            log::warn!("{}: final sync failed: {err}", e.db.path().display());
            e.db.txid()
        });
        if let Some(pool) = self.live.pool() {
            drain(&e, &pool, target, Instant::now() + timeout);
        }
        let handle = {
            let mut running = self.live.running();
            let Some(r) = running.as_mut() else {
                return Ok(None);
            };
            let h = r.db_threads.remove(e.db.path());
            let all = self.live.entries();
            restart_compactor(r, &all)?;
            h
        };
        let _ = e.db.close();
        if let Some(h) = handle {
            let _ = h.join();
        }
        log::info!("{}: replication stopped", e.db.path().display());
        Ok(Some(report_of(&e)))
    }

    /// Starts replicating a stopped database again; false if it was already running.
    pub fn start(&self, path: &Path) -> Result<bool> {
        let e = self.live.find(path)?;
        let mut running = self.live.running();
        let Some(r) = running.as_mut() else {
            return Err(Error::State("the store is not open".into()));
        };
        if r.db_threads.contains_key(e.db.path()) {
            return Ok(false);
        }
        let h = spawn_db(&e, &r.pool)?;
        r.db_threads.insert(e.db.path().to_path_buf(), h);
        let all = self.live.entries();
        restart_compactor(r, &all)?;
        log::info!("{}: replication started", e.db.path().display());
        Ok(true)
    }

    /// Stops (as [`stop`](Self::stop)) and forgets the database at `path`. Returns what
    /// was replicated, or `None` if the store had no such database.
    pub fn remove(&self, path: &Path, timeout: Duration) -> Result<Option<CloseReport>> {
        let Ok(e) = self.live.find(path) else {
            return Ok(None);
        };
        let report = self.stop(path, timeout)?.unwrap_or_else(|| report_of(&e));
        if let Ok(mut dbs) = self.live.dbs.lock() {
            dbs.retain(|x| x.db.path() != e.db.path());
        }
        log::info!("{}: removed from the store", e.db.path().display());
        Ok(Some(report))
    }

    /// Syncs a database now (instead of at its next tick) and returns its local TXID.
    pub fn sync(&self, path: &Path) -> Result<Txid> {
        let e = self.live.find(path)?;
        if !self.live.is_running(e.db.path()) {
            return Err(Error::DatabaseStopped(e.db.path().to_path_buf()));
        }
        let t = e.db.sync()?;
        if let Some(pool) = self.live.pool() {
            for rep in &e.replicas {
                rep.kick(&e.db, &pool, true);
            }
        }
        Ok(t)
    }

    /// A forced sync; with `wait`, also blocks (at most `timeout`) until every replica
    /// holds the TXID, without forcing any upload beyond the one the sync asks for.
    pub fn sync_db(&self, path: &Path, wait: bool, timeout: Duration) -> Result<SyncResult> {
        let e = self.live.find(path)?;
        let before = e.db.txid();
        let txid = self.sync(path)?;
        if wait {
            self.wait_replicated(path, Some(txid), timeout)?;
        }
        Ok(SyncResult {
            txid,
            replicated_txid: replicated(&e),
            changed: txid > before,
        })
    }

    /// Blocks until every replica of the database holds `txid` (default: the database's
    /// current TXID), without forcing any extra upload. Returns the TXID waited for.
    pub fn wait_replicated(
        &self,
        path: &Path,
        txid: Option<Txid>,
        timeout: Duration,
    ) -> Result<Txid> {
        let e = self.live.find(path)?;
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

    /// Uploads a full snapshot of every running database to level 9 of each replica now
    /// (`replicate -force-snapshot`).
    pub fn force_snapshot(&self) -> Result<()> {
        for e in self.running_entries() {
            for r in &e.replicas {
                crate::compaction::snapshot_now(&e.db, r)?;
            }
        }
        Ok(())
    }

    /// Deletes snapshots older than `retention` (and what they make useless) on every
    /// replica of every running database now (`replicate -enforce-retention`).
    pub fn enforce_retention(&self, retention: Duration) -> Result<()> {
        for e in self.running_entries() {
            for r in &e.replicas {
                crate::compaction::retention_now(&e.db, r, retention, self.levels.max_level())?;
            }
        }
        Ok(())
    }

    pub(super) fn running_entries(&self) -> Vec<Entry> {
        self.live
            .entries()
            .into_iter()
            .filter(|e| self.live.is_running(e.db.path()))
            .collect()
    }
}

/// The lowest TXID every replica of `e` is known to hold.
fn replicated(e: &Entry) -> Txid {
    e.replicas
        .iter()
        .map(|r| r.remote_txid().unwrap_or(Txid::ZERO))
        .min()
        .unwrap_or(Txid::ZERO)
}

fn report_of(e: &Entry) -> CloseReport {
    CloseReport {
        dbs: vec![db_status(e)],
    }
}
