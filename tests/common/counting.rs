//! A `ReplicaClient` wrapper that counts the bytes uploaded, the server-side copies and
//! the listings made through it, to prove what a workload ships or asks; and the
//! first-replication scenario every backend runs with it.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use litestream::restore::{restore, RestoreOptions};
use litestream::{CompactionLevels, Db, FileInfo, Replica, ReplicaClient, Result, Store, Txid};
use rusqlite::Connection;

use super::{dump, wait_until, Rng, TempDir};

/// Forwards every call to `inner`, counting uploads, copies and listings; with
/// [`Counting::hide_recursive_listing`] it answers as a backend without one.
#[derive(Debug)]
pub struct Counting {
    pub inner: Arc<dyn ReplicaClient>,
    pub uploaded: AtomicU64,
    pub uploads: AtomicU64,
    pub copies: AtomicU64,
    pub per_level: AtomicU64,
    pub all: AtomicU64,
    pub all_accurate: AtomicU64,
    pub no_recursive: AtomicBool,
}

impl Counting {
    pub fn new(inner: Arc<dyn ReplicaClient>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            uploaded: AtomicU64::new(0),
            uploads: AtomicU64::new(0),
            copies: AtomicU64::new(0),
            per_level: AtomicU64::new(0),
            all: AtomicU64::new(0),
            all_accurate: AtomicU64::new(0),
            no_recursive: AtomicBool::new(false),
        })
    }

    /// From now on answers `all_ltx_files` with `None`, as a backend without it.
    pub fn hide_recursive_listing(self: Arc<Self>) -> Arc<Self> {
        self.no_recursive.store(true, Ordering::SeqCst);
        self
    }

    /// (per-level listings, recursive listings, recursive ones with accurate times).
    #[allow(dead_code)]
    pub fn listings(&self) -> (u64, u64, u64) {
        (
            self.per_level.load(Ordering::SeqCst),
            self.all.load(Ordering::SeqCst),
            self.all_accurate.load(Ordering::SeqCst),
        )
    }

    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::SeqCst)
    }

    pub fn copies(&self) -> u64 {
        self.copies.load(Ordering::SeqCst)
    }
}

impl ReplicaClient for Counting {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn ltx_files(&self, level: u8, seek: Txid, accurate: bool) -> Result<Vec<FileInfo>> {
        self.per_level.fetch_add(1, Ordering::SeqCst);
        self.inner.ltx_files(level, seek, accurate)
    }

    fn all_ltx_files(&self, accurate: bool) -> Result<Option<Vec<FileInfo>>> {
        if self.no_recursive.load(Ordering::SeqCst) {
            return Ok(None);
        }
        self.all.fetch_add(1, Ordering::SeqCst);
        if accurate {
            self.all_accurate.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.all_ltx_files(accurate)
    }

    fn open_ltx_file(
        &self,
        level: u8,
        min: Txid,
        max: Txid,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Box<dyn Read + Send>> {
        self.inner.open_ltx_file(level, min, max, offset, len)
    }

    fn write_ltx_file(&self, level: u8, min: Txid, max: Txid, src: &File) -> Result<FileInfo> {
        let info = self.inner.write_ltx_file(level, min, max, src)?;
        self.uploaded.fetch_add(info.size, Ordering::SeqCst);
        self.uploads.fetch_add(1, Ordering::SeqCst);
        Ok(info)
    }

    fn copy_ltx_file(&self, src: &FileInfo, level: u8) -> Result<Option<FileInfo>> {
        let r = self.inner.copy_ltx_file(src, level)?;
        if r.is_some() {
            self.copies.fetch_add(1, Ordering::SeqCst);
        }
        Ok(r)
    }

    fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        self.inner.delete_ltx_files(files)
    }

    fn delete_all(&self) -> Result<()> {
        self.inner.delete_all()
    }
}

/// A database of about 4 MiB, written before replication starts.
pub fn big_db(dir: &TempDir) -> PathBuf {
    let db = dir.join("big.db");
    let mut conn = Connection::open(&db).unwrap();
    conn.pragma_update(None, "journal_mode", "wal").unwrap();
    conn.execute_batch("create table t(id integer primary key, b blob)")
        .unwrap();
    let mut rng = Rng::new(7);
    let tx = conn.transaction().unwrap();
    for i in 0..4000 {
        tx.execute("insert into t values (?1, ?2)", (i, rng.bytes(1000)))
            .unwrap();
    }
    tx.commit().unwrap();
    drop(conn);
    db
}

/// Replicates `db` through `client` until levels 1, 2, 3 and 9 all hold its state, and
/// returns what went through the client.
pub fn replicate_until_every_level(db: &Path, client: Arc<dyn ReplicaClient>) -> Arc<Counting> {
    let counting = Counting::new(client.clone());
    let d = Db::new(db)
        .monitor_interval(Duration::from_millis(100))
        .replica(Replica::new(counting.clone()).sync_interval(Duration::from_millis(100)));
    let levels = CompactionLevels::from_intervals(&[1, 2, 3].map(Duration::from_secs)).unwrap();
    let mut store = Store::new(vec![d], levels).unwrap();
    store.open().unwrap();
    let txid = store.sync(db).unwrap();
    let holds = |level: u8| {
        client
            .ltx_files(level, Txid::ZERO, false)
            .unwrap()
            .iter()
            .any(|f| f.max_txid >= txid)
    };
    let done = wait_until(Duration::from_secs(30), || {
        [1, 2, 3, 9].into_iter().all(holds)
    });
    store.close().unwrap();
    assert!(done, "levels 1, 2, 3 and 9 did not all reach TXID {txid}");
    counting
}

pub fn assert_shipped_once(db: &Path, counting: &Counting) {
    let size = std::fs::metadata(db).unwrap().len();
    let uploaded = counting.uploaded();
    assert!(
        uploaded * 10 <= size * 12,
        "uploaded {uploaded} bytes for a database of {size} bytes"
    );
    assert!(
        counting.copies() >= 4,
        "{} server-side copies, want L1, L2, L3 and L9",
        counting.copies()
    );
}

/// The first replication of a 4 MiB database through `client` ships it once (every
/// level's copy made on the server) and restores equal with ours.
pub fn assert_first_replication_ships_once(name: &str, client: Arc<dyn ReplicaClient>) {
    let dir = TempDir::new(name);
    let db = big_db(&dir);
    let counting = replicate_until_every_level(&db, client.clone());
    assert_shipped_once(&db, &counting);
    let out = dir.join("restored.db");
    restore(&*client, &RestoreOptions::new(&out)).unwrap();
    assert_eq!(dump(&out), dump(&db));
}
