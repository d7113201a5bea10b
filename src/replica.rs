//! A replica: one destination for a database's L0 files, with its own position, backoff
//! and upload state. Uploads run on the store's worker pool, one replica at a time in TXID
//! order.
//!
//! Before continuing a replica the uploader proves it belongs to this database's lineage
//! (the replica's newest L0 file has the same checksum as our local copy). When it cannot
//! (a new, wiped, diverged or far-behind replica, or local files already removed), it
//! uploads a full snapshot to level 9 and continues after it; when the replica is ahead of
//! the database (it was restored, or its local state was lost), the database numbers its
//! next file after the replica's newest, as a full snapshot. Lineages are never mixed.
//!
//! Two writers on one replica path: the one that starts later takes over as above (it
//! cannot tell a live writer from a dead primary). The one already running lists level 0
//! after its own last upload before each batch; a file there that it did not write (or,
//! after an error, any file numbered past everything it ever sent) means another writer
//! shares the path, and it stops uploading to that replica for good, with an error that
//! says so, instead of writing over the other's files.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::client::{ReplicaClient, SNAPSHOT_LEVEL};
use crate::db::DbHandle;
use crate::error::{Error, Result};
use crate::ltx::Txid;
use crate::pool::Pool;

/// Longest wait between upload retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A destination for a database's changes. Add it to a [`Db`](crate::Db).
#[derive(Debug, Clone)]
pub struct Replica {
    pub(crate) client: Arc<dyn ReplicaClient>,
    pub(crate) sync_interval: Duration,
}

impl Replica {
    /// A replica stored by `client`, synced every second.
    pub fn new(client: Arc<dyn ReplicaClient>) -> Replica {
        Replica {
            client,
            sync_interval: Duration::from_secs(1),
        }
    }

    /// A replica from a URL (`file:///backups/app`, `s3://bucket/path`, ...).
    pub fn from_url(url: &str) -> Result<Replica> {
        Ok(Replica::new(crate::client::from_url(url)?))
    }

    /// Shortest time between upload batches (default 1 s).
    pub fn sync_interval(mut self, d: Duration) -> Self {
        self.sync_interval = d;
        self
    }

    /// The replica's client.
    pub fn client(&self) -> &Arc<dyn ReplicaClient> {
        &self.client
    }
}

/// Upload state of one replica.
#[derive(Debug, Default, Clone)]
pub(crate) struct ReplicaState {
    /// Highest TXID known to be on the replica (None: unknown, list it).
    pub remote: Option<Txid>,
    pub in_flight: bool,
    pub next_attempt: Option<Instant>,
    pub backoff: Duration,
    pub last_batch: Option<Instant>,
    pub last_upload: Option<SystemTime>,
    pub last_error: Option<String>,
    pub last_error_log: Option<Instant>,
    pub uploaded_files: u64,
    pub uploaded_bytes: u64,
    pub errors: u64,
    /// Highest TXID whose L0 copy L0 retention has deleted from this replica.
    pub l0_deleted_through: Txid,
    /// When the replica was last known to hold everything the database had.
    pub last_caught_up: Option<SystemTime>,
    /// The last L0 retention pass: files deleted, not compacted yet, too recent.
    pub l0_retention: [u64; 3],
    /// Highest TXID this process has started writing to the replica (L0 or L9).
    pub attempted: Txid,
    /// Set when another writer was found on the replica: uploads stop, with this error.
    pub foreign: Option<String>,
}

/// A replica inside a running store: its client, upload state and uploads.
#[derive(Debug)]
pub(crate) struct ReplicaShared {
    client: Arc<dyn ReplicaClient>,
    sync_interval: Duration,
    index: usize,
    state: Mutex<ReplicaState>,
    changed: Condvar,
    /// Bumped when something other than the compactor writes a compaction level (a
    /// snapshot uploaded by a rebase), so the compactor's cache is dropped.
    rebases: std::sync::atomic::AtomicU64,
}

impl ReplicaShared {
    pub(crate) fn new(r: Replica, index: usize) -> ReplicaShared {
        ReplicaShared {
            client: crate::client::metered(r.client),
            sync_interval: r.sync_interval,
            index,
            state: Mutex::new(ReplicaState::default()),
            changed: Condvar::new(),
            rebases: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The replica's client.
    pub(crate) fn client(&self) -> &dyn ReplicaClient {
        self.client.as_ref()
    }

    /// True once another writer was found on this replica: nothing more is written to it.
    pub(crate) fn refused(&self) -> bool {
        self.state.lock().map_or(true, |s| s.foreign.is_some())
    }

    /// How many snapshots uploads other than the compactor's have written to level 9.
    pub(crate) fn rebases(&self) -> u64 {
        self.rebases.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records that L0 retention deleted this replica's L0 files through `through`.
    pub(crate) fn note_l0_deleted(&self, through: Txid) {
        self.update(|s| s.l0_deleted_through = s.l0_deleted_through.max(through));
    }

    /// Records the counts of the last L0 retention pass.
    pub(crate) fn note_l0_retention(&self, counts: [u64; 3]) {
        self.update(|s| s.l0_retention = counts);
    }

    /// A copy of the upload state.
    pub(crate) fn state(&self) -> ReplicaState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The highest TXID known to be on the replica (`None`: not known yet).
    pub(crate) fn remote_txid(&self) -> Option<Txid> {
        self.state.lock().ok().and_then(|s| s.remote)
    }

    fn update(&self, f: impl FnOnce(&mut ReplicaState)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
        self.changed.notify_all();
    }

    /// Starts an upload batch on the pool if there is work, none is running, the backoff
    /// has passed and the sync interval allows. Costs no I/O.
    /// `urgent` ignores backoff and sync interval (forced syncs, shutdown).
    /// Returns when to kick again if there is work this kick could not start (a batch is
    /// running, a back-off or the sync interval): a database whose ticks come only with
    /// its writes (`monitor-interval: 0`) calls back then, or its last writes would wait
    /// for the next one.
    pub(crate) fn kick(
        self: &Arc<Self>,
        db: &DbHandle,
        pool: &Pool,
        urgent: bool,
    ) -> Option<Duration> {
        /// How often a running batch is looked at again.
        const WHILE_IN_FLIGHT: Duration = Duration::from_millis(100);
        let local = db.txid();
        if local == Txid::ZERO {
            return None;
        }
        {
            let Ok(mut s) = self.state.lock() else {
                return None;
            };
            if s.remote.is_some_and(|r| r >= local) && s.last_error.is_none() {
                s.last_caught_up = Some(SystemTime::now());
            }
            if s.remote.is_some_and(|r| r >= local) {
                return None;
            }
            if s.in_flight {
                return Some(WHILE_IN_FLIGHT);
            }
            let now = Instant::now();
            if !urgent {
                if let Some(t) = s.next_attempt.filter(|t| now < *t) {
                    return Some(t - now);
                }
                if let Some(t) = s
                    .last_batch
                    .map(|t| t + self.sync_interval)
                    .filter(|t| now < *t)
                {
                    return Some(t - now);
                }
            }
            s.in_flight = true;
            s.last_batch = Some(now);
        }
        let me = self.clone();
        let db = db.clone();
        let submitted = pool.execute(move || {
            let r = me.upload(&db);
            me.update(|s| {
                s.in_flight = false;
                match &r {
                    Ok(()) => {
                        s.last_caught_up = Some(SystemTime::now());
                        s.backoff = Duration::ZERO;
                        s.next_attempt = None;
                        s.last_error = None;
                    }
                    Err(e) => {
                        s.errors += 1;
                        s.remote = None; // re-list before the next attempt
                        s.backoff = if s.backoff.is_zero() {
                            me.sync_interval.max(Duration::from_secs(1))
                        } else {
                            (s.backoff * 2).min(MAX_BACKOFF)
                        };
                        s.next_attempt = Some(Instant::now() + s.backoff);
                        s.last_error = Some(e.to_string());
                        crate::logging::error_rate_limited(&mut s.last_error_log, || {
                            format!(
                                "{}: replica {} ({}): {e}; retrying in {:?}",
                                db.path().display(),
                                me.index,
                                me.client.kind(),
                                s.backoff
                            )
                        });
                    }
                }
            });
        });
        if !submitted {
            self.update(|s| s.in_flight = false);
        }
        None
    }

    /// Uploads local L0 files until the replica has the database's current TXID.
    fn upload(&self, db: &DbHandle) -> Result<()> {
        if let Some(msg) = self.state().foreign {
            return Err(Error::State(msg));
        }
        let mut remote = match self.remote_txid() {
            Some(r) => {
                self.check_no_other_writer(db, r)?;
                r
            }
            None => {
                let r = self.establish(db)?;
                self.update(|s| s.remote = Some(r));
                r
            }
        };
        loop {
            let local = db.txid();
            if remote >= local {
                return Ok(());
            }
            let t = remote.next();
            let path = db.l0_path(t);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    log::warn!(
                        "{}: replica {} needs transaction {t}, which is no longer kept locally; uploading a snapshot",
                        db.path().display(),
                        self.index
                    );
                    remote = self.rebase_with_snapshot(db)?;
                    self.update(|s| s.remote = Some(remote));
                    continue;
                }
                Err(e) => return Err(Error::io(format!("open {}", path.display()), e)),
            };
            self.update(|s| s.attempted = s.attempted.max(t));
            let info = self
                .client
                .write_ltx_file(0, t, t, &file)
                .map_err(|e| annotate(e, &format!("upload L0 {t}")))?;
            remote = t;
            self.update(|s| {
                s.remote = Some(t);
                s.uploaded_files += 1;
                s.uploaded_bytes += info.size;
                s.last_upload = Some(SystemTime::now());
            });
            log::debug!(
                "{}: uploaded L0 {t} to replica {}",
                db.path().display(),
                self.index
            );
        }
    }

    /// Finds where the replica stands and proves it continues this database's lineage.
    /// Returns the TXID to upload after.
    fn establish(&self, db: &DbHandle) -> Result<Txid> {
        // Every level counts: levels 1..8 can reach past 0 and 9 on a replica whose level
        // 0 another tool trimmed (a lifecycle rule, another replicator's retention), and a
        // new lineage numbered below them would be shadowed by their files in every restore.
        let all = crate::client::list_all(&*self.client, false, &|| ())?;
        let remote_max = all.iter().map(|f| f.max_txid).max().unwrap_or_default();
        let l0_max = all
            .iter()
            .filter(|f| f.level == 0)
            .map(|f| f.max_txid)
            .max()
            .unwrap_or_default();
        if remote_max == Txid::ZERO {
            log::info!("{}: replica {} is empty", db.path().display(), self.index);
            return Ok(Txid::ZERO);
        }
        if remote_max <= db.txid() && l0_max == remote_max && self.same_file(db, remote_max)? {
            return Ok(remote_max);
        }
        // Level 0 past everything this process ever sent to it (our L9 snapshots are
        // numbered from the local database, so only level 0 tells).
        let attempted = self.state().attempted;
        if attempted > Txid::ZERO && l0_max > attempted {
            let found = format!("a level 0 file ending at transaction {l0_max}");
            return Err(self.other_writer(db, found, attempted));
        }
        log::warn!(
            "{}: replica {} ends at {remote_max}, which is not provably this database's (local position {}); continuing after it with a full snapshot",
            db.path().display(),
            self.index,
            db.txid()
        );
        self.rebase(db, remote_max)
    }

    /// Before a batch that continues after `remote`: level 0 must hold nothing after it
    /// that this database did not write (one listing).
    fn check_no_other_writer(&self, db: &DbHandle, remote: Txid) -> Result<()> {
        for f in self.client.ltx_files(0, remote.next(), false)? {
            // Our own upload whose answer was lost is ours (same checksum).
            let ours = f.min_txid == f.max_txid
                && f.max_txid <= self.state().attempted
                && self.same_file(db, f.max_txid)?;
            if !ours {
                return Err(self.other_writer(db, format!("level 0 file {}", f.name()), remote));
            }
        }
        Ok(())
    }

    /// Stops uploads to this replica for good: another writer shares it.
    fn other_writer(&self, db: &DbHandle, found: String, ours: Txid) -> Error {
        let msg = format!(
            "replica {} ({}) of {} holds {found} after this database's last upload {ours}, \
             and this database did not write it: another database or process is replicating \
             to the same replica path. Uploads to this replica stop (it restores to the other \
             writer's database); give each database its own replica path and restart",
            self.index,
            self.client.kind(),
            db.path().display()
        );
        log::error!("{msg}");
        self.update(|s| s.foreign = Some(msg.clone()));
        Error::State(msg)
    }

    /// Continues a replica whose lineage is not ours (or not provable): the next L0 file is
    /// a full snapshot numbered after everything on the replica and everything local, so
    /// applying it over anything gives this database and a compaction merging across the
    /// boundary stays correct; if that leaves a gap after the replica's files, an L9
    /// snapshot keeps the replica restorable. Returns the TXID to upload after.
    fn rebase(&self, db: &DbHandle, remote_max: Txid) -> Result<Txid> {
        let s = db.new_lineage_after(remote_max.max(db.txid()))?;
        if s != remote_max.next() {
            self.rebase_with_snapshot(db)?;
        }
        Ok(Txid(s.0 - 1))
    }

    /// True if the replica's L0 file `t` is byte-identical in its checksum to ours.
    fn same_file(&self, db: &DbHandle, t: Txid) -> Result<bool> {
        let path = db.l0_path(t);
        let Ok(local) = File::open(&path) else {
            return Ok(false);
        };
        let len = local
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
            .len();
        if len < 8 {
            return Ok(false);
        }
        let mut ours = [0u8; 8];
        local
            .read_exact_at(&mut ours, len - 8)
            .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        let mut theirs = [0u8; 8];
        let mut r = match self.client.open_ltx_file(0, t, t, len - 8, Some(8)) {
            Ok(r) => r,
            Err(Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        if r.read_exact(&mut theirs).is_err() {
            return Ok(false);
        }
        Ok(ours == theirs)
    }

    /// Uploads a full snapshot of the current state to level 9; returns its TXID.
    fn rebase_with_snapshot(&self, db: &DbHandle) -> Result<Txid> {
        let snap = db.snapshot()?;
        let header = snap.header();
        self.update(|s| s.attempted = s.attempted.max(header.max_txid));
        let info = self
            .client
            .write_ltx_file(SNAPSHOT_LEVEL, Txid(1), header.max_txid, &snap.open()?)
            .map_err(|e| annotate(e, "upload snapshot"))?;
        self.rebases
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        log::info!(
            "{}: uploaded snapshot 1-{} ({} bytes) to replica {}",
            db.path().display(),
            header.max_txid,
            info.size,
            self.index
        );
        Ok(header.max_txid)
    }

    /// Waits until the replica holds `txid` (true) or the deadline passes (false). A TXID
    /// from before the database's current numbering means the start of that numbering.
    pub(crate) fn wait_for(&self, db: &DbHandle, txid: Txid, deadline: Instant) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        loop {
            let need = txid.max(db.state().lineage_start);
            if s.remote.is_some_and(|r| r >= need) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            match self.changed.wait_timeout(s, deadline - now) {
                Ok((g, _)) => s = g,
                Err(_) => return false,
            }
        }
    }
}

fn annotate(e: Error, what: &str) -> Error {
    match e {
        Error::Io { context, source } => Error::Io {
            context: format!("{what}: {context}"),
            source,
        },
        e => e,
    }
}
