//! The VFS without its replica (`ReaderOptions::cache_dir`, `miss_timeout`): a reader that
//! read a replica with a cache directory is dropped; the replica becomes unreachable (an
//! S3 replica behind a loopback proxy that starts stalling every request, or a file
//! replica whose directory is replaced by a file); a fresh reader in a new VFS opens from
//! the cache, serves the rows it had read equal to the source, reports a growing lag, and
//! a query needing a page it never cached fails with an I/O error instead of hanging
//! (the proxy stalls for an hour: without the timeout the query would hang). Damaged
//! cache files are never served.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::fault_proxy::{Fault, FaultProxy};
use common::s3::s3_env;
use common::*;
use litestream::client::s3::S3Client;
use litestream::client::FileClient;
use litestream::vfs::{self, ReaderOptions, ReplicaReader};
use litestream::{CompactionLevels, Db, Replica, ReplicaClient, Store};
use rusqlite::{Connection, ErrorCode, OpenFlags};

/// The rows a reader reads first (and so caches): every table but `events`.
const SMALL: &str = "SELECT 'a', id, name, balance FROM accounts UNION ALL SELECT 'n', k, v, NULL FROM notes ORDER BY 1, 2";
/// A query over every page of `events`, which the first reader never read.
const BIG: &str = "SELECT count(*), sum(length(payload)) FROM events";

fn rows(conn: &Connection, q: &str) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare(q)?;
    let n = st.column_count();
    let out = st.query_map([], |r| {
        (0..n)
            .map(|i| {
                r.get::<_, rusqlite::types::Value>(i)
                    .map(|v| format!("{v:?}"))
            })
            .collect::<rusqlite::Result<Vec<_>>>()
            .map(|v| v.join("|"))
    })?;
    out.collect()
}

/// A source database (a small part and 6 MB of `events`) replicated to `client` by our
/// store, which is closed once the replica has everything.
fn replicated_source(dir: &Path, client: Arc<dyn ReplicaClient>) -> PathBuf {
    let db = dir.join("app.db");
    let mut src = Connection::open(&db).unwrap();
    create_schema(&src);
    let mut rng = Rng::new(21);
    for step in 0..10 {
        workload_step(&mut src, &mut rng, step);
    }
    big_transaction(&mut src, &mut rng);
    let d = Db::new(&db)
        .monitor_interval(Duration::from_millis(100))
        .replica(Replica::new(client).sync_interval(Duration::from_millis(100)));
    let levels = CompactionLevels::from_intervals(&[Duration::from_secs(3600)]).unwrap();
    let mut store = Store::new(vec![d], levels).unwrap();
    store.open().unwrap();
    store.sync(&db).unwrap();
    store
        .wait_replicated(&db, None, Duration::from_secs(60))
        .unwrap();
    store.close().unwrap();
    db
}

fn opts(cache: &Path) -> ReaderOptions {
    ReaderOptions {
        poll_interval: Duration::from_millis(200),
        // Only the frame missed: what the first reader caches is what it read.
        read_ahead: 0,
        cache_dir: Some(cache.to_path_buf()),
        miss_timeout: Duration::from_secs(2),
        ..ReaderOptions::default()
    }
}

/// A connection through a new VFS whose only strong reference to `reader` is the
/// connection's, so dropping the connection drops the reader and stops its poller.
fn connect(tag: &str, reader: Arc<ReplicaReader>) -> Connection {
    try_connect(tag, reader).unwrap()
}

fn try_connect(tag: &str, reader: Arc<ReplicaReader>) -> rusqlite::Result<Connection> {
    let name = unique(tag);
    let weak = Arc::downgrade(&reader);
    vfs::register_with(&name, move |_| {
        weak.upgrade()
            .ok_or_else(|| litestream::Error::State("reader dropped".into()))
    })
    .unwrap();
    Connection::open_with_flags_and_vfs("app.db", OpenFlags::SQLITE_OPEN_READ_ONLY, name.as_str())
}

fn lag(conn: &Connection) -> i64 {
    conn.query_row("PRAGMA litestream_lag", [], |r| r.get::<_, String>(0))
        .unwrap()
        .parse()
        .unwrap()
}

/// The whole story, with `client` reaching the replica and `cut` making it unreachable.
fn offline_from_the_cache(tag: &str, client: Arc<dyn ReplicaClient>, cut: impl FnOnce()) {
    let dir = TempDir::new(tag);
    let db = replicated_source(dir.path(), client.clone());
    let src = Connection::open(&db).unwrap();
    let want = rows(&src, SMALL).unwrap();
    let cache = dir.join("cache");

    // Online: read the small tables (cached on disk as they are read).
    let first = ReplicaReader::open(client.clone(), opts(&cache)).unwrap();
    let txid = first.txid();
    let conn = connect(tag, first);
    assert_eq!(rows(&conn, SMALL).unwrap(), want);
    let online_txid: String = conn
        .query_row("PRAGMA litestream_txid", [], |r| r.get(0))
        .unwrap();
    drop(conn);

    cut();

    // A fresh reader opens from the cache.
    let again = ReplicaReader::open(client.clone(), opts(&cache))
        .expect("open from the cache while the replica is unreachable");
    assert_eq!(again.txid(), txid);
    let conn = connect(tag, again);
    assert_eq!(rows(&conn, SMALL).unwrap(), want, "the cached rows");
    let txid_now: String = conn
        .query_row("PRAGMA litestream_txid", [], |r| r.get(0))
        .unwrap();
    assert_eq!(txid_now, online_txid);
    let lag0 = lag(&conn);
    assert!(lag0 >= 0, "lag {lag0}: unknown after an offline open");
    assert!(
        wait_until(Duration::from_secs(20), || lag(&conn) > lag0),
        "the lag never grew while the replica is unreachable"
    );

    // A page never cached: an I/O error, not a hang and not wrong rows.
    let err = rows(&conn, BIG).expect_err("a query needing uncached pages succeeded offline");
    assert_eq!(
        err.sqlite_error_code(),
        Some(ErrorCode::SystemIoFailure),
        "{err}"
    );
    drop(conn);

    // Damaged cache files are never served: every cached page range flipped, a new
    // reader still opens (the indexes are intact) but reading fails with an I/O error
    // (rusqlite's open already reads page 1).
    let mut flipped = 0;
    for f in std::fs::read_dir(cache.join("pages")).unwrap() {
        let p = f.unwrap().path();
        let mut b = std::fs::read(&p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x55;
        std::fs::write(&p, b).unwrap();
        flipped += 1;
    }
    assert!(flipped > 0, "nothing was cached on disk");
    let third = ReplicaReader::open(client, opts(&cache)).unwrap();
    let err = try_connect(tag, third)
        .and_then(|conn| rows(&conn, SMALL))
        .expect_err("damaged cache files were served");
    assert_eq!(
        err.sqlite_error_code(),
        Some(ErrorCode::SystemIoFailure),
        "{err}"
    );
}

#[test]
fn file_replica_offline_from_the_cache() {
    let dir = TempDir::new("vfs-offline-file-replica");
    let replica = dir.join("replica");
    let client: Arc<dyn ReplicaClient> = Arc::new(FileClient::new(&replica));
    offline_from_the_cache("vfs-offline-file", client, || {
        // A file where the replica directory was: every listing and read fails.
        std::fs::rename(&replica, dir.join("replica-away")).unwrap();
        std::fs::write(&replica, b"not a directory").unwrap();
    });
}

#[test]
fn s3_replica_offline_from_the_cache() {
    let Some(env) = s3_env() else { return };
    let path = unique("vfs-offline-s3");
    env.client(&path);
    let stalled = Arc::new(AtomicBool::new(false));
    let s = stalled.clone();
    let proxy = FaultProxy::start(&env.endpoint, move |_, _| {
        if s.load(Ordering::SeqCst) {
            Fault::Stall(Duration::from_secs(3600))
        } else {
            Fault::Pass
        }
    });
    let client = S3Client::new(env.config_at(&path, &proxy.url)).unwrap();
    offline_from_the_cache("vfs-offline-s3", Arc::new(client), || {
        stalled.store(true, Ordering::SeqCst)
    });
}
