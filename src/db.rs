//! A database being replicated: its options, and the per-database thread that turns WAL
//! frames into local L0 files and keeps the WAL checkpointed.
//!
//! # How no committed page is ever lost
//!
//! The thread holds a long-lived read transaction (`R`) on its own connection. While it is
//! held, SQLite cannot restart the WAL past frames `R` might need, so frames are never
//! overwritten before they are copied — with one exception: if `R` began when the WAL was
//! fully checkpointed it reads from the database file alone ("read mark 0") and does not
//! block a restart. So `R` is only ever (re)acquired under a short *barrier* (a `BEGIN
//! IMMEDIATE` on a second connection, `W`, that stops writers) right after copying every
//! committed frame. Then a WAL restart can happen only after everything was copied, and at
//! most once (a read-mark-0 reader also blocks every later backfill, hence every later
//! restart) until `R` is refreshed. A salt change is therefore a clean continuation when
//! `R` was acquired that way, and a full snapshot is taken otherwise.
//!
//! Frames are located by a scan and read afterwards, so every copy also re-reads the WAL
//! header before it is published: a restart writes the new header before any frame, so an
//! unchanged header proves no frame read was overwritten by a new generation (the one
//! restart a read-mark-0 `R` allows, or `R` lost to an error and re-taken outside the
//! barrier). A full snapshot copies every frame of the generation, so that one restart
//! can overwrite frames it is still reading: the raced copy is discarded and redone at
//! once (the restart has happened; a read-mark-0 `R` blocks every backfill, hence any
//! further restart). The unit tests at the end of this file drive exactly that race.
//!
//! The barrier never covers I/O that scales with the WAL: a checkpoint first refreshes `R`
//! (barrier: copy the few frames since the last sync), backfills the bulk with a PASSIVE
//! checkpoint while writers run, then takes the barrier again to copy and backfill the
//! frames written meanwhile and re-acquire `R`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::client::sync_dir;
use crate::error::{Error, Result};
use crate::ltx::{self, Encoder, Header, PageEncoding, Txid, HEADER_FLAG_NO_CHECKSUM};
use crate::replica::{Replica, ReplicaShared};
use crate::sqlite::{CheckpointMode, Conn};
use crate::wal::{self, Start, WalHeader, WAL_HEADER_SIZE};

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

/// Options of one database, with Litestream's defaults.
#[derive(Clone, Debug)]
pub(crate) struct DbOptions {
    pub monitor_interval: Duration,
    pub checkpoint_interval: Duration,
    pub min_checkpoint_pages: u32,
    pub truncate_pages: Option<u32>,
    pub busy_timeout: Duration,
    pub max_sync_wal_bytes: u64,
    pub encoding: PageEncoding,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            monitor_interval: Duration::from_secs(1),
            checkpoint_interval: Duration::from_secs(60),
            min_checkpoint_pages: 1000,
            truncate_pages: Some(121_359),
            busy_timeout: Duration::from_secs(1),
            max_sync_wal_bytes: 64 << 20,
            encoding: PageEncoding::Frame,
        }
    }
}

/// A SQLite database to replicate, with its options and replicas. Hand it to
/// [`Store::new`](crate::Store::new).
///
/// ```no_run
/// use litestream::{Db, Replica};
/// let db = Db::new("/data/app.db")
///     .monitor_interval(std::time::Duration::from_millis(500))
///     .replica(Replica::new(litestream::client::from_url("file:///backups/app")?));
/// # Ok::<(), litestream::Error>(())
/// ```
#[derive(Debug)]
pub struct Db {
    pub(crate) path: PathBuf,
    pub(crate) meta_path: Option<PathBuf>,
    pub(crate) opts: DbOptions,
    pub(crate) replicas: Vec<Replica>,
}

impl Db {
    /// A database at `path` with Litestream's defaults: monitor every 1 s, PASSIVE
    /// checkpoint at 1000 WAL pages or every minute, emergency truncation at 121359 pages,
    /// busy timeout 1 s, at most 64 MiB of WAL per L0 file.
    pub fn new(path: impl Into<PathBuf>) -> Db {
        Db {
            path: path.into(),
            meta_path: None,
            opts: DbOptions::default(),
            replicas: Vec::new(),
        }
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How often the WAL is checked for changes (default 1 s).
    pub fn monitor_interval(mut self, d: Duration) -> Self {
        self.opts.monitor_interval = d;
        self
    }

    /// Time-based PASSIVE checkpoint interval (default 1 min; zero disables).
    pub fn checkpoint_interval(mut self, d: Duration) -> Self {
        self.opts.checkpoint_interval = d;
        self
    }

    /// WAL size in pages that triggers a PASSIVE checkpoint (default 1000).
    pub fn min_checkpoint_pages(mut self, n: u32) -> Self {
        self.opts.min_checkpoint_pages = n.max(1);
        self
    }

    /// WAL file size in pages that triggers an emergency truncation (a full checkpoint,
    /// then a WAL restart that shrinks the file; default
    /// 121359, about 500 MB with 4 KiB pages); `None` disables it.
    pub fn truncate_pages(mut self, n: Option<u32>) -> Self {
        self.opts.truncate_pages = n;
        self
    }

    /// Busy timeout of litestream's own connections (default 1 s).
    pub fn busy_timeout(mut self, d: Duration) -> Self {
        self.opts.busy_timeout = d;
        self
    }

    /// Most WAL bytes copied into one L0 file (default 64 MiB; 0 = no limit).
    pub fn max_sync_wal_bytes(mut self, n: u64) -> Self {
        self.opts.max_sync_wal_bytes = n;
        self
    }

    /// Where local state lives (default `<dir>/.<name>-litestream`).
    pub fn meta_path(mut self, p: impl Into<PathBuf>) -> Self {
        self.meta_path = Some(p.into());
        self
    }

    /// Page encoding of the LTX files written (default: legacy LZ4 frames, readable by
    /// every Litestream v0.5.x).
    pub fn page_encoding(mut self, e: PageEncoding) -> Self {
        self.opts.encoding = e;
        self
    }

    /// Adds a replica.
    pub fn replica(mut self, r: Replica) -> Self {
        self.replicas.push(r);
        self
    }

    /// The local state directory for this database.
    pub(crate) fn resolved_meta_path(&self) -> PathBuf {
        self.meta_path
            .clone()
            .unwrap_or_else(|| default_meta_path(&self.path))
    }
}

/// `<dir>/.<name>-litestream`.
pub(crate) fn default_meta_path(db: &Path) -> PathBuf {
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    db.with_file_name(format!(".{name}-litestream"))
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// What other threads can see of a database.
#[derive(Debug, Default, Clone)]
pub(crate) struct DbStatus {
    pub txid: Txid,
    /// First TXID of the current numbering: earlier local TXIDs were abandoned when the
    /// database continued after a replica's newer files.
    pub lineage_start: Txid,
    pub page_size: u32,
    pub last_sync: Option<SystemTime>,
    pub wal_size: u64,
    pub error: Option<String>,
    pub initialized: bool,
    pub db_size: u64,
    pub sync_count: u64,
    pub sync_errors: u64,
    pub sync_seconds: f64,
    pub checkpoint_count: u64,
}

/// Requests to a database's thread.
pub(crate) enum Cmd {
    /// Sync now; reply with the local TXID.
    Sync(Sender<Result<Txid>>),
    /// Write a full snapshot file (`1-<pos>`) of the current state; reply with its path and
    /// header. The caller deletes the file.
    Snapshot(Sender<Result<(PathBuf, Header)>>),
    /// A replica's lineage could not be proven to be ours, up to `after`: make the next L0
    /// file a full snapshot numbered after `after` (and after the local position), so that
    /// whatever precedes it on the replica, applying it gives this database. Replies with
    /// that TXID.
    Renumber(Txid, Sender<Result<Txid>>),
    /// Final sync, then stop.
    Close(Sender<Result<Txid>>),
}

/// State shared between a database's thread, its uploaders and the compactor.
#[derive(Debug)]
pub(crate) struct DbShared {
    pub path: PathBuf,
    pub meta_path: PathBuf,
    pub opts: DbOptions,
    pub status: Mutex<DbStatus>,
    pub changed: Condvar,
    pub replicas: Vec<Arc<ReplicaShared>>,
    pub cmd: Mutex<Option<Sender<Cmd>>>,
}

impl DbShared {
    pub(crate) fn new(mut db: Db) -> Arc<DbShared> {
        // Absolute, so the store finds it by either spelling and a later chdir is harmless.
        if let Ok(abs) = std::path::absolute(&db.path) {
            db.path = abs;
        }
        let meta_path = db.resolved_meta_path();
        let replicas = db
            .replicas
            .into_iter()
            .enumerate()
            .map(|(i, r)| Arc::new(ReplicaShared::new(r, i)))
            .collect();
        Arc::new(DbShared {
            path: db.path,
            meta_path,
            opts: db.opts,
            status: Mutex::new(DbStatus::default()),
            changed: Condvar::new(),
            replicas,
            cmd: Mutex::new(None),
        })
    }

    pub(crate) fn l0_dir(&self) -> PathBuf {
        self.meta_path.join("ltx").join("0")
    }

    pub(crate) fn l0_path(&self, txid: Txid) -> PathBuf {
        self.l0_dir().join(ltx::file_name(txid, txid))
    }

    pub(crate) fn status(&self) -> DbStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub(crate) fn txid(&self) -> Txid {
        self.status().txid
    }

    /// Sends a request to the database thread and waits for the reply.
    pub(crate) fn request<T>(&self, make: impl FnOnce(Sender<Result<T>>) -> Cmd) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let guard = self
                .cmd
                .lock()
                .map_err(|_| Error::State("database thread state poisoned".into()))?;
            let Some(sender) = guard.as_ref() else {
                return Err(Error::Shutdown(format!(
                    "{}: database is not open",
                    self.path.display()
                )));
            };
            sender.send(make(tx)).map_err(|_| {
                Error::Shutdown(format!(
                    "{}: database thread has stopped",
                    self.path.display()
                ))
            })?;
        }
        rx.recv().map_err(|_| {
            Error::Shutdown(format!(
                "{}: database thread has stopped",
                self.path.display()
            ))
        })?
    }

    fn publish(&self, f: impl FnOnce(&mut DbStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
        self.changed.notify_all();
    }
}

/// Position of the last L0 file written: where in the WAL it ended.
#[derive(Clone, Debug)]
struct Position {
    txid: Txid,
    /// WAL offset just past the last frame copied.
    end: u64,
    salts: (u32, u32),
    commit: u32,
    /// Running WAL checksum at `end`, when known (not after a restart of the process).
    checksum: Option<(u32, u32)>,
}

/// A WAL file's identity and size, to detect changes with one `stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StatKey {
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_ns: i64,
}

fn stat_key(path: &Path) -> Option<StatKey> {
    fs::metadata(path).ok().map(|m| StatKey {
        ino: m.ino(),
        size: m.len(),
        mtime: m.mtime(),
        mtime_ns: m.mtime_nsec(),
    })
}

/// Why a sync under the barrier gave up.
enum SyncOutcome {
    /// Nothing new, or files written up to the WAL end.
    Done,
    /// Continuity could not be proven and a snapshot is not allowed here.
    NeedSnapshot,
}

/// The engine owned by a database's thread.
pub(crate) struct Syncer {
    shared: Arc<DbShared>,
    wal_path: PathBuf,
    l0_dir: PathBuf,
    r: Conn,
    w: Conn,
    page_size: u32,
    pos: Option<Position>,
    /// True while `R` is held and was acquired under the barrier right after a complete
    /// sync: a WAL restart seen now lost nothing.
    restart_ok: bool,
    /// Set when a copy found the WAL restarted under it (its result was discarded).
    copy_raced: bool,
    /// `R` is held.
    reading: bool,
    /// Next L0 must be a full snapshot numbered after this TXID.
    renumber_after: Option<Txid>,
    last_stat: Option<StatKey>,
    /// Sync on the next tick even if the WAL looks unchanged (a write may share the
    /// mtime seen last time).
    recheck: bool,
    synced_since_checkpoint: bool,
    last_checkpoint: Instant,
    /// Last PASSIVE attempt made no progress (skip the bulk pass before a truncation).
    futile_passive: bool,
    buf: Vec<u8>,
    /// The throttle's connection, kept open once made (see [`Syncer::throttled`]).
    throttle: Option<Conn>,
    /// Test hook run after each page is read for a copy (to race a writer against it).
    #[cfg(test)]
    after_page: Option<Box<dyn FnMut(u32)>>,
}

impl Syncer {
    /// Opens connections, puts the database in WAL mode and loads the local position.
    /// The database file must exist.
    pub(crate) fn open(shared: Arc<DbShared>) -> Result<Syncer> {
        let path = shared.path.clone();
        if !path.exists() {
            return Err(Error::State(format!(
                "database {} does not exist yet",
                path.display()
            )));
        }
        let busy = shared.opts.busy_timeout.as_millis() as u32;
        let r = Conn::open(&path)?;
        let w = Conn::open(&path)?;
        for c in [&r, &w] {
            c.busy_timeout(busy);
            c.exec("PRAGMA wal_autocheckpoint = 0")?;
            c.set_persist_wal()?;
        }
        // The barrier must find the gaps between a saturating writer's transactions.
        w.eager_busy_handler(shared.opts.busy_timeout.max(Duration::from_secs(1)) * 5);
        // When our own write restarts the WAL (emergency truncation), shrink the file.
        w.exec("PRAGMA journal_size_limit = 0")?;
        let mode = w.query_column("PRAGMA journal_mode = wal")?;
        if mode.first().map(|s| s.as_str()) != Some("wal") {
            return Err(Error::State(format!(
                "{}: could not enable WAL mode (journal_mode is {mode:?})",
                path.display()
            )));
        }
        w.exec(
            "CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER);
             CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER);",
        )?;
        let page_size = w.query_i64("PRAGMA page_size")? as u32;
        if !ltx::is_valid_page_size(page_size) {
            return Err(Error::State(format!(
                "{}: invalid page size {page_size}",
                path.display()
            )));
        }
        let l0_dir = shared.l0_dir();
        fs::create_dir_all(&l0_dir)
            .map_err(|e| Error::io(format!("create {}", l0_dir.display()), e))?;
        remove_temp_files(&l0_dir);
        let wal_path = sibling(&path, "-wal");
        let wal_ok = fs::metadata(&wal_path)
            .map(|m| m.len() >= WAL_HEADER_SIZE)
            .unwrap_or(false);
        if !wal_ok {
            w.exec("INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET seq = seq + 1")?;
        }
        let mut s = Syncer {
            wal_path,
            l0_dir,
            r,
            w,
            page_size,
            pos: None,
            restart_ok: false,
            copy_raced: false,
            reading: false,
            renumber_after: None,
            last_stat: None,
            recheck: true,
            synced_since_checkpoint: false,
            last_checkpoint: Instant::now(),
            futile_passive: false,
            throttle: None,
            #[cfg(test)]
            after_page: None,
            buf: vec![0u8; page_size as usize],
            shared,
        };
        s.begin_read()?;
        s.pos = s.load_position()?;
        let txid = s.pos.as_ref().map(|p| p.txid).unwrap_or_default();
        s.shared.publish(|st| {
            st.page_size = page_size;
            st.txid = txid;
            st.initialized = true;
            st.error = None;
        });
        Ok(s)
    }

    fn begin_read(&mut self) -> Result<()> {
        if self.reading {
            return Ok(());
        }
        self.r.exec("BEGIN")?;
        if let Err(e) = self.r.query_i64("SELECT COUNT(1) FROM _litestream_seq") {
            let _ = self.r.exec("ROLLBACK");
            return Err(e);
        }
        self.reading = true;
        Ok(())
    }

    fn end_read(&mut self) -> Result<()> {
        self.restart_ok = false;
        if self.reading {
            self.reading = false;
            if self.r.in_transaction() {
                self.r.exec("ROLLBACK")?;
            }
        }
        Ok(())
    }

    /// The highest local L0 file, fully verified; a damaged one resets local state (the
    /// next sync is then a snapshot numbered after it).
    fn load_position(&mut self) -> Result<Option<Position>> {
        let max = max_local_txid(&self.l0_dir)?;
        if max == Txid::ZERO {
            return Ok(None);
        }
        let path = self.shared.l0_path(max);
        match read_verified_header(&path) {
            Ok(h) => {
                if h.page_size != self.page_size {
                    log::warn!(
                        "{}: last local L0 file has page size {}, database has {}; taking a new snapshot",
                        self.shared.path.display(),
                        h.page_size,
                        self.page_size
                    );
                    self.renumber_after = Some(max);
                }
                Ok(Some(Position {
                    txid: max,
                    end: (h.wal_offset + h.wal_size) as u64,
                    salts: (h.wal_salt1, h.wal_salt2),
                    commit: h.commit,
                    checksum: None,
                }))
            }
            Err(e) => {
                log::warn!(
                    "{}: local L0 file {} is unreadable ({e}); taking a new snapshot",
                    self.shared.path.display(),
                    path.display()
                );
                self.renumber_after = Some(max);
                Ok(Some(Position {
                    txid: max,
                    end: 0,
                    salts: (0, 0),
                    commit: 0,
                    checksum: None,
                }))
            }
        }
    }

    /// One monitor tick: a `stat`, and a sync plus checkpoint policy when the WAL changed.
    pub(crate) fn tick(&mut self, force: bool) -> Result<bool> {
        let key = stat_key(&self.wal_path);
        if !force && !self.recheck && key.is_some() && key == self.last_stat {
            // Unchanged: only a time-based checkpoint may be due after writes stopped.
            if self.time_checkpoint_due() {
                self.checkpoint(false)?;
                self.last_stat = stat_key(&self.wal_path);
            }
            return Ok(false);
        }
        let changed = key != self.last_stat;
        self.last_stat = key;
        let before = self.pos.as_ref().map(|p| p.txid);
        let started = Instant::now();
        self.sync(true)?;
        let db_size = fs::metadata(&self.shared.path)
            .map(|m| m.len())
            .unwrap_or(0);
        let secs = started.elapsed().as_secs_f64();
        self.shared.publish(|st| {
            st.sync_count += 1;
            st.sync_seconds += secs;
            st.db_size = db_size;
        });
        let wrote = self.pos.as_ref().map(|p| p.txid) != before;
        // A write may land with the same mtime as the stat above: look once more.
        self.recheck = changed || wrote;
        self.checkpoint_policy()?;
        Ok(wrote)
    }

    /// Copies every committed frame not yet copied into L0 files.
    ///
    /// With snapshots allowed (no barrier held) it stops at the WAL end it saw when it
    /// started: a writer as fast as the copy would otherwise keep it busy forever, and
    /// the checkpoint policy must get its turn. Under the barrier nothing is appended, so
    /// it runs to the true end.
    fn sync(&mut self, allow_snapshot: bool) -> Result<SyncOutcome> {
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
        // Enough chunks to cover the WAL as it is now (its file size bounds its frames).
        let chunk = self.shared.opts.max_sync_wal_bytes;
        let budget = match (allow_snapshot, chunk) {
            (true, c) if c > 0 => {
                let size = fs::metadata(&self.wal_path).map(|m| m.len()).unwrap_or(0);
                Some(size / c + 2)
            }
            _ => None,
        };
        self.redo_if_raced(|s| s.sync_chunks(allow_snapshot, budget))
    }

    /// Runs `copy`, and once more if a WAL restart raced it (possible only while R reads
    /// the database file alone; see [`Syncer::check_wal_unchanged`]): the raced result was
    /// discarded, and the one restart R allowed has happened, so the second copy cannot be
    /// raced.
    fn redo_if_raced<T>(&mut self, mut copy: impl FnMut(&mut Syncer) -> Result<T>) -> Result<T> {
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

    /// [`Syncer::sync`] limited to `budget` L0 files (of at most `max_sync_wal_bytes`).
    fn sync_chunks(
        &mut self,
        allow_snapshot: bool,
        mut budget: Option<u64>,
    ) -> Result<SyncOutcome> {
        loop {
            match self.sync_once(allow_snapshot)? {
                (SyncOutcome::Done, true) => {
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
            (Some(_), None) => {
                if self.restart_ok {
                    return Ok((SyncOutcome::Done, false));
                }
                why_snapshot = Some("WAL was reset while it was not watched");
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
        let prev_txid = self.pos.as_ref().map(|p| p.txid).unwrap_or_default();
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
            st.error = None;
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
            find_page_in_ltx(&self.shared.l0_path(p.txid), pgno)?.as_deref()
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
        let tmp = sibling(&final_path, ".tmp");
        let result = (|| -> Result<()> {
            let f = File::create(&tmp)
                .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
            let mut enc = Encoder::new(
                BufWriter::with_capacity(1 << 20, f),
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
            sync_dir(&self.l0_dir)
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
    fn check_wal_unchanged(
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
    fn read_page(&mut self, pgno: u32, map: &HashMap<u32, u64>, wal: Option<&File>) -> Result<()> {
        match (map.get(&pgno), wal) {
            (Some(&off), Some(f)) => wal::read_frame_page(f, off, &mut self.buf),
            _ => {
                let off = (pgno as u64 - 1) * self.page_size as u64;
                if !self.r.read_db_file(&mut self.buf, off)? {
                    // Past the end of the file (a page the database grew into but never
                    // wrote): zeros, as SQLite would read it.
                    log::debug!("{}: page {pgno} reads short", self.shared.path.display());
                }
                Ok(())
            }
        }
    }

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

    fn checkpoint_policy(&mut self) -> Result<()> {
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
    fn time_checkpoint_due(&self) -> bool {
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
    pub(crate) fn checkpoint(&mut self, truncate: bool) -> Result<()> {
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

    /// Writes a full snapshot of the current state as `1-<pos>` into a temp file.
    pub(crate) fn snapshot_file(&mut self) -> Result<(PathBuf, Header)> {
        self.redo_if_raced(Syncer::snapshot_file_once)
    }

    fn snapshot_file_once(&mut self) -> Result<(PathBuf, Header)> {
        self.sync(true)?;
        let pos = self
            .pos
            .clone()
            .ok_or_else(|| Error::State("no position yet".into()))?;
        let wal = File::open(&self.wal_path).ok();
        let hdr = match &wal {
            Some(f) => wal::read_header(f)?,
            None => None,
        };
        // The state at pos: the current WAL generation up to our position, over the
        // database file (earlier generations were fully backfilled before they ended).
        // Our position is a commit boundary, so a scan limited to it stops exactly there.
        let map = match (&wal, &hdr) {
            (Some(f), Some(h)) if h.salts() == pos.salts && pos.end > WAL_HEADER_SIZE => {
                let scan = wal::scan(f, h, Start::beginning(h), pos.end - WAL_HEADER_SIZE)?;
                if scan.end != pos.end {
                    return Err(Error::State(format!(
                        "{}: WAL changed under the snapshot (ends at {}, expected {}); will retry",
                        self.shared.path.display(),
                        scan.end,
                        pos.end
                    )));
                }
                scan.pages
            }
            _ => HashMap::new(),
        };
        let header = Header {
            flags: HEADER_FLAG_NO_CHECKSUM,
            page_size: self.page_size,
            commit: pos.commit,
            min_txid: Txid(1),
            max_txid: pos.txid,
            timestamp: crate::time::to_millis(SystemTime::now()),
            ..Header::default()
        };
        let path = self
            .shared
            .meta_path
            .join(format!("snapshot-{}.ltx.tmp", pos.txid));
        let name = path.display().to_string();
        let result = (|| -> Result<()> {
            let f = File::create(&path)
                .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
            let mut enc = Encoder::new(
                BufWriter::with_capacity(1 << 20, f),
                &header,
                self.shared.opts.encoding,
            )
            .map_err(|e| e.in_file(&name))?;
            let lock = ltx::lock_pgno(self.page_size);
            let mut progress =
                Progress::new(self.shared.path.clone(), header.commit, self.page_size);
            for pgno in 1..=header.commit {
                if pgno == lock {
                    continue;
                }
                self.read_page(pgno, &map, wal.as_ref())?;
                #[cfg(test)]
                if let Some(h) = self.after_page.as_mut() {
                    h(pgno);
                }
                enc.write_page(pgno, &self.buf)
                    .map_err(|e| e.in_file(&name))?;
                progress.tick(pgno);
            }
            let (w, _) = enc.finish().map_err(|e| e.in_file(&name))?;
            let f = w
                .into_inner()
                .map_err(|e| Error::io(format!("write {}", path.display()), e.into_error()))?;
            if !map.is_empty() {
                self.check_wal_unchanged(wal.as_ref(), pos.salts, false)?;
            }
            f.sync_all()
                .map_err(|e| Error::io(format!("fsync {}", path.display()), e))
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok((path, header))
    }

    /// Closes: final sync, release the read transaction.
    pub(crate) fn close(mut self) -> Result<Txid> {
        let r = self.sync(true);
        let _ = self.end_read();
        r?;
        Ok(self.pos.as_ref().map(|p| p.txid).unwrap_or_default())
    }
}

/// Progress lines for long snapshots: one every few seconds with pages, bytes, rate and
/// an estimate of the time left.
struct Progress {
    path: PathBuf,
    total: u32,
    page_size: u32,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(path: PathBuf, total: u32, page_size: u32) -> Self {
        let now = Instant::now();
        Progress {
            path,
            total,
            page_size,
            started: now,
            last: now,
        }
    }

    fn tick(&mut self, done: u32) {
        if done % 1024 != 0 || self.last.elapsed() < Duration::from_secs(3) {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let mib = |pages: u32| pages as f64 * self.page_size as f64 / (1 << 20) as f64;
        let rate = mib(done) / secs;
        let eta = if rate > 0.0 {
            (mib(self.total) - mib(done)) / rate
        } else {
            0.0
        };
        log::info!(
            "{}: snapshot {:.0}% ({:.0}/{:.0} MiB, {rate:.0} MiB/s, about {eta:.0}s left)",
            self.path.display(),
            done as f64 * 100.0 / self.total.max(1) as f64,
            mib(done),
            mib(self.total)
        );
    }
}

/// Removes leftover `*.tmp` files of an interrupted write.
fn remove_temp_files(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// Highest TXID of the L0 files in `dir`.
pub(crate) fn max_local_txid(dir: &Path) -> Result<Txid> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Txid::ZERO),
        Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
    };
    Ok(rd
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(ltx::parse_file_name)
                .map(|(_, max)| max)
        })
        .max()
        .unwrap_or_default())
}

/// Reads and fully verifies an LTX file, returning its header.
pub(crate) fn read_verified_header(path: &Path) -> Result<Header> {
    let f = File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let d = ltx::Decoder::new(io::BufReader::new(f))
        .map_err(|e| e.in_file(&path.display().to_string()))?;
    let h = d.header().clone();
    d.finish()
        .map_err(|e| e.in_file(&path.display().to_string()))?;
    Ok(h)
}

/// The copy of `pgno` stored in an LTX file, if it holds one.
fn find_page_in_ltx(path: &Path, pgno: u32) -> Result<Option<Vec<u8>>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(_) => return Ok(None),
    };
    let mut d = match ltx::Decoder::new(io::BufReader::new(f)) {
        Ok(d) => d,
        Err(_) => return Ok(None),
    };
    let mut buf = vec![0u8; d.header().page_size as usize];
    loop {
        match d.next_page(&mut buf) {
            Ok(Some(p)) if p == pgno => return Ok(Some(buf)),
            Ok(Some(p)) if p > pgno => return Ok(None),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return Ok(None),
        }
    }
}

/// The body of a database's thread: tick every monitor interval, serve requests, and kick
/// the replicas' uploads.
pub(crate) fn run(shared: Arc<DbShared>, rx: Receiver<Cmd>, pool: crate::pool::Pool) {
    let mut syncer: Option<Syncer> = None;
    let mut failures = 0u32;
    let mut last_error_log: Option<Instant> = None;
    let interval = shared.opts.monitor_interval;
    loop {
        let wait = if failures == 0 {
            interval
        } else {
            (interval * 2u32.saturating_pow(failures.min(16))).min(Duration::from_secs(60))
        };
        let cmd = match rx.recv_timeout(wait) {
            Ok(c) => Some(c),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if syncer.is_none() && shared.path.exists() {
            match Syncer::open(shared.clone()) {
                Ok(s) => {
                    log::info!("{}: replicating", shared.path.display());
                    syncer = Some(s);
                }
                Err(e) => {
                    shared.publish(|st| st.error = Some(e.to_string()));
                    log_rate_limited(&mut last_error_log, || {
                        format!("{}: open: {e}", shared.path.display())
                    });
                }
            }
        }
        let result: Result<()> = match (cmd, syncer.as_mut()) {
            (Some(Cmd::Close(reply)), s) => {
                let r = match s {
                    Some(_) => syncer.take().map(|s| s.close()).unwrap_or(Ok(Txid::ZERO)),
                    None => Ok(shared.txid()),
                };
                let _ = reply.send(r);
                break;
            }
            (Some(Cmd::Sync(reply)), Some(s)) => {
                let r = s
                    .tick(true)
                    .map(|_| s.pos.as_ref().map(|p| p.txid).unwrap_or_default());
                let e = r.as_ref().err().map(|e| e.to_string());
                let _ = reply.send(r);
                e.map_or(Ok(()), |m| Err(Error::State(m)))
            }
            (Some(Cmd::Snapshot(reply)), Some(s)) => {
                let _ = reply.send(s.snapshot_file());
                Ok(())
            }
            (Some(Cmd::Renumber(after, reply)), Some(s)) => {
                let cur = s.pos.as_ref().map(|p| p.txid).unwrap_or_default();
                s.renumber_after = Some(after.max(cur));
                let r = s
                    .tick(true)
                    .map(|_| s.pos.as_ref().map(|p| p.txid).unwrap_or_default());
                let _ = reply.send(r);
                Ok(())
            }
            (Some(Cmd::Sync(reply)), None) => {
                let _ = reply.send(Err(not_ready(&shared)));
                Ok(())
            }
            (Some(Cmd::Snapshot(reply)), None) => {
                let _ = reply.send(Err(not_ready(&shared)));
                Ok(())
            }
            (Some(Cmd::Renumber(_, reply)), None) => {
                let _ = reply.send(Err(not_ready(&shared)));
                Ok(())
            }
            (None, Some(s)) => s.tick(false).map(|_| ()),
            (None, None) => Ok(()),
        };
        match result {
            Ok(()) => failures = 0,
            Err(e) => {
                log::debug!("{}: tick failed: {e}", shared.path.display());
                failures += 1;
                shared.publish(|st| {
                    st.error = Some(e.to_string());
                    st.sync_errors += 1;
                });
                log_rate_limited(&mut last_error_log, || {
                    format!("{}: sync: {e}", shared.path.display())
                });
                if let Some(s) = syncer.as_mut() {
                    // Reopen from scratch after repeated failures (e.g. the file was replaced).
                    if failures >= 3 {
                        remove_temp_files(&s.l0_dir);
                    }
                }
            }
        }
        if syncer.is_some() {
            for r in &shared.replicas {
                r.kick(&shared, &pool);
            }
        }
    }
    // Dropping the syncer rolls back R and closes our connections.
    drop(syncer);
}

fn not_ready(shared: &DbShared) -> Error {
    let status = shared.status();
    Error::State(format!(
        "{} is not ready: {}",
        shared.path.display(),
        status
            .error
            .unwrap_or_else(|| "the database file does not exist yet".into())
    ))
}

/// Logs at most once per 30 s.
pub(crate) fn log_rate_limited(last: &mut Option<Instant>, msg: impl FnOnce() -> String) {
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
        log::error!("{}", msg());
        *last = Some(Instant::now());
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        // Release R; the connections close when their fields drop.
        let _ = self.end_read();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!(
                "lsrs-unit-{name}-{}-{}",
                std::process::id(),
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default()
            ));
            fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const INSERT_ROWS: &str =
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 300) \
         INSERT INTO t (v) SELECT randomblob(1000) FROM c";

    /// An application connection in another "process" of the test (SQLite's own locks).
    fn app(path: &Path) -> Conn {
        if !path.exists() {
            File::create(path).unwrap();
        }
        let c = Conn::open(path).unwrap();
        c.busy_timeout(5000);
        c.exec("PRAGMA wal_autocheckpoint = 0").unwrap();
        c.query_column("PRAGMA journal_mode = wal").unwrap();
        c.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)")
            .unwrap();
        c
    }

    /// Applies an LTX snapshot to a fresh database file and returns (integrity, row count).
    fn check_snapshot(ltx: &Path, out: &Path) -> (String, i64) {
        use std::os::unix::fs::FileExt;
        let mut d = ltx::Decoder::new(io::BufReader::new(File::open(ltx).unwrap())).unwrap();
        let h = d.header().clone();
        let f = File::create(out).unwrap();
        let mut buf = vec![0u8; h.page_size as usize];
        while let Some(pgno) = d.next_page(&mut buf).unwrap() {
            f.write_all_at(&buf, (pgno as u64 - 1) * h.page_size as u64)
                .unwrap();
        }
        d.finish().unwrap();
        f.set_len(h.commit as u64 * h.page_size as u64).unwrap();
        drop(f);
        let c = Conn::open(out).unwrap();
        let check = c.query_column("PRAGMA integrity_check").unwrap().join("; ");
        let n = c.query_i64("SELECT COUNT(*) FROM t").unwrap_or(-1);
        (check, n)
    }

    /// A syncer whose `R` holds read mark 0 after a full checkpoint, and a racing
    /// application connection armed to commit (restarting the WAL, overwriting its first
    /// frames) right after page 2 of the next copy is read. Returns the syncer, the WAL
    /// salts before the race and a flag set once the racing commit is done.
    fn racing_syncer(path: &Path) -> (Syncer, (u32, u32), Arc<std::sync::atomic::AtomicBool>) {
        let app = app(path);
        app.exec(INSERT_ROWS).unwrap();
        let shared = DbShared::new(Db::new(path));
        let mut s = Syncer::open(shared).unwrap();
        s.tick(true).unwrap();
        // A checkpoint whose final barrier backfills everything: R is re-taken on a fully
        // backfilled WAL, so it holds read mark 0 and does not block a restart.
        s.checkpoint(false).unwrap();
        let salts_before = s.pos.as_ref().unwrap().salts;
        let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = fired.clone();
        s.after_page = Some(Box::new(move |pgno| {
            use std::sync::atomic::Ordering::SeqCst;
            if pgno == 2 && !flag.load(SeqCst) {
                app.exec(INSERT_ROWS).unwrap();
                flag.store(true, SeqCst);
            }
        }));
        (s, salts_before, fired)
    }

    /// The racing commit ran during the copy and restarted the WAL.
    fn assert_raced(s: &Syncer, salts_before: (u32, u32), fired: &std::sync::atomic::AtomicBool) {
        assert!(
            fired.load(std::sync::atomic::Ordering::SeqCst),
            "the race never ran"
        );
        let wal = File::open(&s.wal_path).unwrap();
        let salts_now = wal::read_header(&wal).unwrap().unwrap().salts();
        assert_ne!(
            salts_before, salts_now,
            "the racing commit was meant to restart the WAL"
        );
    }

    /// The race that damaged a snapshot in CI: after a checkpoint that backfilled the whole
    /// WAL, `R` reads the database file alone ("read mark 0"), which lets the application's
    /// next commit restart the WAL and overwrite, from its start, the very frames a full
    /// snapshot is copying. The copy must notice (the WAL header changed) and be redone,
    /// never hand out pages of the new generation under the old one's page numbers.
    #[test]
    fn snapshot_copy_survives_a_wal_restart_in_the_middle() {
        let dir = Scratch::new("restart-race");
        let path = dir.0.join("app.db");
        let (mut s, salts_before, fired) = racing_syncer(&path);
        let (p, h) = s.snapshot_file().unwrap();
        s.after_page = None;
        assert_raced(&s, salts_before, &fired);
        // The copy was redone after the racing commit: the snapshot holds its rows.
        let (check, n) = check_snapshot(&p, &dir.0.join("snap.db"));
        assert_eq!(check, "ok", "a snapshot copied across a WAL restart");
        assert_eq!(n, 600);
        assert_eq!(Some(h.max_txid), s.pos.as_ref().map(|p| p.txid));
    }

    /// The same race for a full-snapshot L0 file (a new lineage, or continuity lost): the
    /// file must not be written from frames of two generations.
    #[test]
    fn snapshot_l0_survives_a_wal_restart_in_the_middle() {
        let dir = Scratch::new("restart-race-l0");
        let path = dir.0.join("app.db");
        let (mut s, salts_before, fired) = racing_syncer(&path);
        let before = s.pos.as_ref().unwrap().txid;
        s.renumber_after = Some(before);
        s.tick(true).unwrap();
        s.after_page = None;
        assert_raced(&s, salts_before, &fired);
        // One L0 file, written after the racing commit, with its rows.
        let txid = s.pos.as_ref().unwrap().txid;
        assert_eq!(txid, before.next());
        let (check, n) = check_snapshot(&s.shared.l0_path(txid), &dir.0.join("l0.db"));
        assert_eq!(check, "ok", "a snapshot L0 copied across a WAL restart");
        assert_eq!(n, 600);
    }
}
