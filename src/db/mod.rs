//! One database's replication engine: its options, the [`DbHandle`] through which the rest
//! of the engine asks it for things, and (in the submodules) the thread that turns WAL
//! frames into local L0 files and keeps the WAL checkpointed. It knows nothing of
//! replicas: after each tick it calls the listener it was started with.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | options, shared state, the handle, the `Syncer`'s fields |
//! | `open.rs` | opening a database for replication; the read transaction `R` |
//! | `sync.rs` | copying committed WAL frames into L0 files |
//! | `checkpoint.rs` | the write barrier, checkpoints, the emergency truncation |
//! | `pacer.rs` | holding writers in short slices while a checkpoint catches up |
//! | `snapshot.rs` | full snapshots of the current state |
//! | `local.rs` | the local state directory and its L0 files |
//! | `thread.rs` | the thread: ticks, requests, back-off |
//! | `watch.rs` | `monitor-interval: 0`: the WAL watched with inotify instead of polled |
//! | `tests.rs` | unit tests of the engine (the restart races below among them) |
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
//! further restart). The unit tests in `tests.rs` drive exactly that race.
//!
//! The barrier never covers I/O that scales with the WAL: a checkpoint first refreshes `R`
//! (barrier: copy the few frames since the last sync), backfills the bulk with a PASSIVE
//! checkpoint while writers run, then takes the barrier again to copy and backfill the
//! frames written meanwhile and re-acquire `R`.
//!
//! A writer faster than copy plus backfill would keep that chase going while the WAL
//! grows: a sync that copies more than half of `checkpoint::PACE_WAL_BYTES` at once, or a
//! checkpoint that does not catch up, starts the *pacer* (`pacer.rs`), a thread that holds
//! writers in slices of 100 ms with releases of 100 ms down to 35 ms, and holds the
//! barriers itself while it runs (a barrier replaces a hold rather than following one).
//! The WAL's dirty pages are written out as they are copied (`sync_file_range`) and once
//! more before the final barrier, so the fsync under it waits for little.

mod checkpoint;
mod local;
mod open;
mod pacer;
mod snapshot;
mod sync;
#[cfg(test)]
mod tests;
mod thread;
mod watch;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub(crate) use local::{default_meta_path, ltx_dir, newest_l0};
pub(crate) use thread::spawn;

use crate::durable::TempFile;
use crate::error::{Error, Result};
use crate::ltx::{Header, PageEncoding, Txid};
use crate::sqlite::Conn;

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

/// What other threads can see of a database.
#[derive(Debug, Default, Clone)]
pub(crate) struct DbState {
    pub txid: Txid,
    /// First TXID of the current numbering: earlier local TXIDs were abandoned when the
    /// database continued after a replica's newer files.
    pub lineage_start: Txid,
    pub page_size: u32,
    pub last_sync: Option<SystemTime>,
    pub wal_size: u64,
    pub error: Option<String>,
    /// The database thread has opened the database (it exists and is in WAL mode).
    pub initialized: bool,
    pub db_size: u64,
    pub sync_count: u64,
    pub sync_errors: u64,
    pub sync_seconds: f64,
    pub checkpoint_count: u64,
    /// Bytes of WAL copied into L0 files.
    pub wal_bytes: u64,
    /// The last tick failed because a file system was full.
    pub disk_full: bool,
    /// Checkpoints by mode.
    pub checkpoints: Vec<CheckpointStats>,
}

/// Checkpoints of one mode.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckpointStats {
    /// SQLite's name for the mode.
    pub mode: &'static str,
    /// Checkpoints completed.
    pub count: u64,
    /// Checkpoints that failed.
    pub errors: u64,
    /// Seconds spent.
    pub seconds: f64,
}

impl DbState {
    /// Records a checkpoint of `mode` that took `secs` and succeeded or not.
    pub(crate) fn note_checkpoint(&mut self, mode: &'static str, secs: f64, ok: bool) {
        let i = match self.checkpoints.iter().position(|c| c.mode == mode) {
            Some(i) => i,
            None => {
                self.checkpoints.push(CheckpointStats {
                    mode,
                    ..Default::default()
                });
                self.checkpoints.len() - 1
            }
        };
        let c = &mut self.checkpoints[i];
        c.seconds += secs;
        if ok {
            c.count += 1;
        } else {
            c.errors += 1;
        }
    }
}

/// Requests to a database's thread.
enum Cmd {
    /// Sync now; reply with the local TXID.
    Sync(Sender<Result<Txid>>),
    /// Write a full snapshot file (`1-<pos>`) of the current state.
    Snapshot(Sender<Result<SnapshotFile>>),
    /// Make the next L0 file a full snapshot numbered after `after` (and after the local
    /// position); replies with that TXID.
    NewLineage(Txid, Sender<Result<Txid>>),
    /// Final sync, then stop.
    Close(Sender<Result<Txid>>),
    /// The WAL changed (from the watcher of `monitor-interval: 0`): sync now.
    Wake,
}

/// State shared between a database's thread and its handles.
#[derive(Debug)]
struct Shared {
    path: PathBuf,
    meta_path: PathBuf,
    opts: DbOptions,
    state: Mutex<DbState>,
    changed: Condvar,
    cmd: Mutex<Option<Sender<Cmd>>>,
}

impl Shared {
    fn l0_dir(&self) -> PathBuf {
        local::l0_dir(&self.meta_path)
    }

    fn l0_path(&self, txid: Txid) -> PathBuf {
        self.l0_dir().join(crate::ltx::file_name(txid, txid))
    }

    fn state(&self) -> DbState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn publish(&self, f: impl FnOnce(&mut DbState)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
        self.changed.notify_all();
    }

    /// Sends a request to the database thread and waits for the reply.
    fn request<T>(&self, make: impl FnOnce(Sender<Result<T>>) -> Cmd) -> Result<T> {
        let stopped = || {
            Error::Shutdown(format!(
                "{}: database thread has stopped",
                self.path.display()
            ))
        };
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
            sender.send(make(tx)).map_err(|_| stopped())?;
        }
        rx.recv().map_err(|_| stopped())?
    }
}

/// A full snapshot of a database's current state (`1-<txid>`) in a local temp file, which
/// is removed when this is dropped.
#[derive(Debug)]
pub(crate) struct SnapshotFile {
    file: TempFile,
    header: Header,
}

impl SnapshotFile {
    /// The snapshot's LTX header.
    pub(crate) fn header(&self) -> &Header {
        &self.header
    }

    /// Opens the file for reading.
    pub(crate) fn open(&self) -> Result<File> {
        let path = self.file.path();
        File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))
    }
}

/// What the rest of the engine may ask of a database: its position and state, its local
/// L0 files, a snapshot, a new lineage. Cheap to clone; requests go to the database's
/// thread once [`spawn`] has started it.
#[derive(Clone, Debug)]
pub(crate) struct DbHandle(Arc<Shared>);

impl DbHandle {
    /// A database at `path` (made absolute, so it is found by either spelling and a
    /// later chdir is harmless) with its local state in `meta_path`.
    pub(crate) fn new(path: &Path, meta_path: PathBuf, opts: DbOptions) -> DbHandle {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        DbHandle(Arc::new(Shared {
            path,
            meta_path,
            opts,
            state: Mutex::new(DbState::default()),
            changed: Condvar::new(),
            cmd: Mutex::new(None),
        }))
    }

    /// The database's absolute path.
    pub(crate) fn path(&self) -> &Path {
        &self.0.path
    }

    /// Where the database keeps its local state.
    pub(crate) fn meta_path(&self) -> &Path {
        &self.0.meta_path
    }

    /// The page encoding of the LTX files written for it.
    pub(crate) fn encoding(&self) -> PageEncoding {
        self.0.opts.encoding
    }

    /// A path for a temporary file in the database's local state directory.
    pub(crate) fn temp_path(&self, name: &str) -> PathBuf {
        self.0.meta_path.join(name)
    }

    /// The local L0 file of transaction `txid` (it may have been removed).
    pub(crate) fn l0_path(&self, txid: Txid) -> PathBuf {
        self.0.l0_path(txid)
    }

    /// A copy of the database's current state.
    pub(crate) fn state(&self) -> DbState {
        self.0.state()
    }

    /// The newest local TXID.
    pub(crate) fn txid(&self) -> Txid {
        self.state().txid
    }

    /// Syncs now (instead of at the next tick); returns the local TXID.
    pub(crate) fn sync(&self) -> Result<Txid> {
        self.0.request(Cmd::Sync)
    }

    /// Writes a full snapshot of the current state into a temp file.
    pub(crate) fn snapshot(&self) -> Result<SnapshotFile> {
        self.0.request(Cmd::Snapshot)
    }

    /// Starts a new lineage: the next L0 file is a full snapshot numbered after `after`
    /// (and after the local position), so that whatever precedes it on a replica,
    /// applying it gives this database. Returns its TXID.
    pub(crate) fn new_lineage_after(&self, after: Txid) -> Result<Txid> {
        self.0.request(|tx| Cmd::NewLineage(after, tx))
    }

    /// Final sync, then stops the thread; returns the final TXID. Later requests fail.
    pub(crate) fn close(&self) -> Result<Txid> {
        let r = self.0.request(Cmd::Close);
        if let Ok(mut g) = self.0.cmd.lock() {
            g.take();
        }
        r
    }

    /// Removes local L0 files through `through` that no replica needs any more, always
    /// keeping the newest (it anchors the local position).
    pub(crate) fn retire_local_l0(&self, through: Txid) {
        local::retire_l0(&self.0.l0_dir(), through, self.txid());
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

/// Why a sync under the barrier gave up.
enum SyncOutcome {
    /// Nothing new, or files written up to the WAL end.
    Done,
    /// Continuity could not be proven and a snapshot is not allowed here.
    NeedSnapshot,
}

/// The engine owned by a database's thread. Its methods are spread over the submodules
/// by job (open, sync, checkpoint, snapshot).
struct Syncer {
    shared: Arc<Shared>,
    wal_path: PathBuf,
    l0_dir: PathBuf,
    r: Conn,
    w: Conn,
    page_size: u32,
    /// Permission bits of the files it writes (L0 files, snapshots): the database's own.
    file_mode: u32,
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
    last_stat: Option<local::StatKey>,
    /// Sync on the next tick even if the WAL looks unchanged (a write may share the
    /// mtime seen last time).
    recheck: bool,
    synced_since_checkpoint: bool,
    last_checkpoint: Instant,
    /// Last PASSIVE attempt made no progress (skip the bulk pass before a truncation).
    futile_passive: bool,
    buf: Vec<u8>,
    /// The running pacer, while a checkpoint paces writers (see `pacer`).
    pacer: Option<pacer::Pacer>,
    /// The pacer's connection between checkpoints, kept open once made.
    pacer_conn: Option<Conn>,
    /// Test hook run after each page is read for a copy (to race a writer against it).
    #[cfg(test)]
    after_page: Option<Box<dyn FnMut(u32)>>,
}

impl Syncer {
    /// The local TXID (zero before the first sync).
    fn txid(&self) -> Txid {
        self.pos.as_ref().map(|p| p.txid).unwrap_or_default()
    }
}
