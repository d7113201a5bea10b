//! What a store reports: the replication state of each database and replica
//! ([`DbStatus`], [`ReplicaStatus`]), from any thread ([`StoreMonitor`]) and at shutdown
//! ([`CloseReport`]).

use std::path::PathBuf;
use std::time::SystemTime;

use super::{Entry, StoreHandle};
pub use crate::db::CheckpointStats;
use crate::ltx::Txid;

/// Replication state of one database, as [`Store::status`](super::Store::status) reports it.
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
    /// The database replicates now (false once stopped, or before the store opens).
    pub running: bool,
    /// Bytes of WAL copied into local L0 files.
    pub wal_bytes: u64,
    /// The last sync failed for lack of disk space.
    pub disk_full: bool,
    /// Checkpoints by mode (`PASSIVE`, `FULL`, `RESTART`, `TRUNCATE`): count, errors, seconds.
    pub checkpoints: Vec<CheckpointStats>,
    /// L0 files counted by the last L0 retention pass: deleted (eligible), not yet
    /// compacted into L1, too recent.
    pub l0_retention: [u64; 3],
}

impl DbStatus {
    /// When every replica was last known to hold everything the database had (the
    /// oldest of the replicas' times), if ever.
    pub fn last_replicated(&self) -> Option<SystemTime> {
        self.replicas
            .iter()
            .map(|r| r.last_caught_up)
            .min()
            .flatten()
    }
}

/// Counters of a store's own background work.
#[derive(Clone, Debug, Default)]
pub struct StoreStats {
    /// Heartbeat GETs answered with a 2xx.
    pub heartbeats_sent: u64,
    /// Heartbeat GETs that failed (no answer or not 2xx).
    pub heartbeat_errors: u64,
    /// Heartbeats skipped because a database had not synced within the interval.
    pub heartbeats_skipped: u64,
    /// Validation passes run.
    pub validation_runs: u64,
    /// Validation passes that could not list a replica.
    pub validation_failures: u64,
    /// Problems found by the last validation pass.
    pub validation_errors: Vec<super::ValidationError>,
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
    /// When the replica was last known to hold everything the database had.
    pub last_caught_up: Option<SystemTime>,
}

/// Reads a running store's status from any thread.
#[derive(Clone, Debug)]
pub struct StoreMonitor {
    pub(super) handle: StoreHandle,
}

impl StoreMonitor {
    /// The replication state of every database.
    pub fn status(&self) -> Vec<DbStatus> {
        self.handle.status()
    }

    /// Counters of the store's own background work (heartbeats, validation).
    pub fn stats(&self) -> StoreStats {
        self.handle.stats()
    }
}

/// What [`Store::close`](super::Store::close) managed to replicate.
#[derive(Clone, Debug)]
pub struct CloseReport {
    /// One entry per database.
    pub dbs: Vec<DbStatus>,
}

/// Whether replica `r` holds everything its database `d` has: a database that never
/// appeared holds nothing and is wholly replicated; one that exists but could not be
/// opened or synced (its error says why) is not.
fn holds_all(d: &DbStatus, r: &ReplicaStatus) -> bool {
    (d.local_txid == Txid::ZERO && d.error.is_none())
        || r.remote_txid.is_some_and(|t| t >= d.local_txid)
}

impl CloseReport {
    /// True if every replica holds its database's final TXID.
    pub fn is_complete(&self) -> bool {
        self.dbs
            .iter()
            .all(|d| d.replicas.iter().all(|r| holds_all(d, r)))
    }

    /// One line per replica that did not get everything.
    pub fn missing(&self) -> Vec<String> {
        let mut out = Vec::new();
        for d in &self.dbs {
            for (i, r) in d.replicas.iter().enumerate() {
                if !holds_all(d, r) {
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

/// The status of a database and its replicas.
pub(super) fn db_status(e: &Entry) -> DbStatus {
    let (d, s) = (&e.db, e.db.state());
    DbStatus {
        path: d.path().to_path_buf(),
        local_txid: s.txid,
        wal_size: s.wal_size,
        last_sync: s.last_sync,
        error: s.error,
        db_size: s.db_size,
        sync_count: s.sync_count,
        sync_errors: s.sync_errors,
        sync_seconds: s.sync_seconds,
        checkpoint_count: s.checkpoint_count,
        running: false,
        wal_bytes: s.wal_bytes,
        disk_full: s.disk_full,
        checkpoints: s.checkpoints.clone(),
        l0_retention: e
            .replicas
            .first()
            .map(|r| r.state().l0_retention)
            .unwrap_or_default(),
        replicas: e
            .replicas
            .iter()
            .map(|r| {
                let st = r.state();
                ReplicaStatus {
                    kind: r.client().kind(),
                    remote_txid: st.remote,
                    last_upload: st.last_upload,
                    uploaded_files: st.uploaded_files,
                    uploaded_bytes: st.uploaded_bytes,
                    errors: st.errors,
                    error: st.last_error,
                    last_caught_up: st.last_caught_up,
                }
            })
            .collect(),
    }
}
