//! How the VFS lists a replica: opening (and a rebuild, and time travel) lists the whole
//! replica in one request where the backend has a recursive listing
//! (`ReplicaClient::all_ltx_files`), and one listing per level where it has not; the one
//! listing gives the same files as the per-level listings, on files and on S3.

mod common;

use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use litestream::client::{FileClient, SNAPSHOT_LEVEL};
use litestream::restore::{restore, RestoreOptions};
use litestream::vfs::{self, ReaderOptions, ReplicaReader};
use litestream::{CompactionLevels, Db, FileInfo, Replica, ReplicaClient, Result, Store, Txid};
use rusqlite::{Connection, OpenFlags};

/// Forwards every call to `inner`, counting listings; with `whole: false` it hides the
/// recursive listing (a backend without one).
#[derive(Debug)]
struct Listings {
    inner: Arc<dyn ReplicaClient>,
    whole: bool,
    per_level: AtomicU64,
    all: AtomicU64,
    all_accurate: AtomicU64,
}

impl Listings {
    fn new(inner: Arc<dyn ReplicaClient>, whole: bool) -> Arc<Listings> {
        Arc::new(Listings {
            inner,
            whole,
            per_level: AtomicU64::new(0),
            all: AtomicU64::new(0),
            all_accurate: AtomicU64::new(0),
        })
    }

    /// (per-level listings, recursive listings, recursive ones with accurate times).
    fn counts(&self) -> (u64, u64, u64) {
        (
            self.per_level.load(Ordering::SeqCst),
            self.all.load(Ordering::SeqCst),
            self.all_accurate.load(Ordering::SeqCst),
        )
    }
}

impl ReplicaClient for Listings {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn ltx_files(&self, level: u8, seek: Txid, accurate: bool) -> Result<Vec<FileInfo>> {
        self.per_level.fetch_add(1, Ordering::SeqCst);
        self.inner.ltx_files(level, seek, accurate)
    }

    fn all_ltx_files(&self, accurate: bool) -> Result<Option<Vec<FileInfo>>> {
        if !self.whole {
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
        self.inner.write_ltx_file(level, min, max, src)
    }

    fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        self.inner.delete_ltx_files(files)
    }

    fn delete_all(&self) -> Result<()> {
        self.inner.delete_all()
    }
}

/// Writes a database with files on several levels to `client`; the source connection,
/// a time between two rounds of writes, and the store (still open).
fn replicate(dir: &TempDir, client: Arc<dyn ReplicaClient>) -> (Connection, SystemTime, Store) {
    let db = dir.join("app.db");
    let mut src = Connection::open(&db).unwrap();
    create_schema(&src);
    let mut rng = Rng::new(7);
    let d = Db::new(&db)
        .monitor_interval(Duration::from_millis(100))
        .replica(Replica::new(client).sync_interval(Duration::from_millis(100)));
    let levels = CompactionLevels::from_intervals(&[Duration::from_millis(300)]).unwrap();
    let mut store = Store::new(vec![d], levels).unwrap();
    store.open().unwrap();
    let mut t = SystemTime::now();
    for step in 0..30 {
        workload_step(&mut src, &mut rng, step);
        store.sync(&db).unwrap();
        if step == 14 {
            std::thread::sleep(Duration::from_millis(400));
            t = SystemTime::now();
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    store
        .wait_replicated(&db, None, Duration::from_secs(30))
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    (src, t, store)
}

/// A poller that stays asleep, so every listing counted is the open's or the PRAGMA's.
fn quiet() -> ReaderOptions {
    ReaderOptions {
        poll_interval: Duration::from_secs(600),
        max_idle_poll_interval: Duration::from_secs(600),
        ..ReaderOptions::default()
    }
}

fn open(tag: &str, reader: Arc<ReplicaReader>) -> Connection {
    let name = unique(tag);
    vfs::register(&name, reader).unwrap();
    Connection::open_with_flags_and_vfs("app.db", OpenFlags::SQLITE_OPEN_READ_ONLY, name.as_str())
        .unwrap()
}

/// Every level's files through `ltx_files`, in the order `all_ltx_files` gives them.
fn per_level(c: &dyn ReplicaClient, accurate: bool) -> Vec<FileInfo> {
    let mut out = Vec::new();
    for level in 0..=SNAPSHOT_LEVEL {
        out.extend(c.ltx_files(level, Txid::ZERO, accurate).unwrap());
    }
    out
}

fn one_listing_opens(tag: &str, client: Arc<dyn ReplicaClient>) {
    let dir = TempDir::new(tag);
    let (src, t, mut store) = replicate(&dir, client.clone());
    // The recursive listing is the per-level listings, exactly (sizes and times too).
    for accurate in [false, true] {
        let all = client
            .all_ltx_files(accurate)
            .unwrap()
            .expect("a recursive listing");
        assert_eq!(
            all,
            per_level(client.as_ref(), accurate),
            "accurate {accurate}"
        );
        assert!(all.iter().any(|f| f.level == SNAPSHOT_LEVEL) || all.iter().any(|f| f.level > 0));
    }

    // Open: one listing, nothing per level.
    let counting = Listings::new(client.clone(), true);
    let reader = ReplicaReader::open(counting.clone(), quiet()).unwrap();
    assert_eq!(counting.counts(), (0, 1, 0), "open lists once");
    assert_eq!(reader.stats().lists, 1);
    let rc = open(tag, reader.clone());
    assert_eq!(dump_conn(&rc), dump_conn(&src));

    // Time travel: one listing with header timestamps, and it equals restore -timestamp.
    rc.execute_batch(&format!(
        "PRAGMA litestream_time = '{}'",
        litestream::format_rfc3339(t)
    ))
    .unwrap();
    assert_eq!(counting.counts(), (0, 2, 1), "time travel lists once");
    let out = dir.join("at-t.db");
    restore(client.as_ref(), &RestoreOptions::new(&out).timestamp(t)).unwrap();
    assert_eq!(
        dump_conn(&rc),
        dump(&out),
        "time travel equals restore -timestamp"
    );
    drop(rc);

    // Without a recursive listing: one listing per level, the same state.
    let hidden = Listings::new(client.clone(), false);
    let reader2 = ReplicaReader::open(hidden.clone(), quiet()).unwrap();
    assert_eq!(hidden.counts(), (u64::from(SNAPSHOT_LEVEL) + 1, 0, 0));
    assert_eq!(reader2.stats().lists, u64::from(SNAPSHOT_LEVEL) + 1);
    assert_eq!(reader2.txid(), reader.txid());
    let rc2 = open(tag, reader2);
    assert_eq!(dump_conn(&rc2), dump_conn(&src));
    drop(rc2);
    store.close().unwrap();
}

#[test]
fn file_replica_opens_with_one_listing() {
    let dir = TempDir::new("vfs-listing-file-replica");
    let client: Arc<dyn ReplicaClient> = Arc::new(FileClient::new(dir.join("replica")));
    one_listing_opens("vfs-listing-file", client);
}

#[test]
fn s3_replica_opens_with_one_listing() {
    let Some(env) = common::s3::s3_env() else {
        return;
    };
    let path = unique("vfs-listing-s3");
    let client: Arc<dyn ReplicaClient> = Arc::new(env.client(&path));
    one_listing_opens("vfs-listing-s3", client);
    // A client built by the factory (wrapped for the metrics) lists in one request too.
    let built = litestream::client::ClientConfig::S3(env.config(&path))
        .build()
        .unwrap();
    let all = built
        .all_ltx_files(false)
        .unwrap()
        .expect("a recursive listing");
    assert_eq!(all, per_level(built.as_ref(), false));
    assert!(!all.is_empty());
}
