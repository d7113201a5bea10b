//! Read replicas through the VFS (`litestream::vfs`), in this process through rusqlite:
//! replicas written by our `Store` (file, S3, WebDAV) and by the official binary read
//! equal to the source with `PRAGMA integrity_check` ok; an open connection follows new
//! writes; writes are refused; `litestream_time` time travel equals `restore -timestamp`.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use litestream::client::s3::{Credentials, S3Client, S3Config};
use litestream::client::{FileClient, WebDavClient};
use litestream::restore::{restore, RestoreOptions};
use litestream::vfs::{self, ReaderOptions, ReplicaReader};
use litestream::{CompactionLevels, Db, Replica, ReplicaClient, Store, Txid};
use rusqlite::{Connection, ErrorCode, OpenFlags};

fn opts() -> ReaderOptions {
    ReaderOptions {
        poll_interval: Duration::from_millis(100),
        ..ReaderOptions::default()
    }
}

/// Registers `client` as a fresh VFS and opens a read-only connection through it.
fn open_replica(tag: &str, client: Arc<dyn ReplicaClient>) -> (Arc<ReplicaReader>, Connection) {
    let reader = ReplicaReader::open(client, opts()).unwrap();
    let name = unique(tag);
    vfs::register(&name, reader.clone()).unwrap();
    let conn = Connection::open_with_flags_and_vfs(
        "app.db",
        OpenFlags::SQLITE_OPEN_READ_ONLY,
        name.as_str(),
    )
    .unwrap();
    (reader, conn)
}

fn pragma(conn: &Connection, q: &str) -> String {
    conn.query_row(q, [], |r| r.get::<_, String>(0)).unwrap()
}

fn s3_client(path: &str) -> Option<S3Client> {
    let (Some(http), Some(bucket), Some(ak), Some(sk)) = (
        peer_env("LITESTREAM_TEST_S3_ENDPOINT"),
        peer_env("LITESTREAM_TEST_S3_BUCKET"),
        peer_env("LITESTREAM_TEST_S3_ACCESS_KEY"),
        peer_env("LITESTREAM_TEST_S3_SECRET_KEY"),
    ) else {
        return None;
    };
    let mut c = S3Config::from_url(&format!(
        "s3://{bucket}/{path}?endpoint={http}&forcePathStyle=true&region=us-east-1"
    ))
    .unwrap();
    c.credentials = Some(Credentials {
        access_key_id: ak,
        secret_access_key: sk,
        session_token: None,
    });
    let client = S3Client::new(c).unwrap();
    client.create_bucket().unwrap();
    Some(client)
}

fn webdav_client(path: &str) -> Option<WebDavClient> {
    let (Some(addr), Some(user), Some(pass)) = (
        peer_env("LITESTREAM_TEST_WEBDAV_ADDR"),
        peer_env("LITESTREAM_TEST_WEBDAV_USER"),
        peer_env("LITESTREAM_TEST_WEBDAV_PASS"),
    ) else {
        return None;
    };
    Some(WebDavClient::from_url(&format!("webdav://{user}:{pass}@{addr}/{path}")).unwrap())
}

/// Our store replicates a database to `client`; the VFS reads it equal, follows new
/// writes, refuses writes, and time-travels like `restore -timestamp`.
fn our_replica_through_the_vfs(tag: &str, client: Arc<dyn ReplicaClient>) {
    let dir = TempDir::new(tag);
    let db = dir.join("app.db");
    let mut src = Connection::open(&db).unwrap();
    create_schema(&src);
    let mut rng = Rng::new(11);
    for step in 0..20 {
        workload_step(&mut src, &mut rng, step);
    }
    big_transaction(&mut src, &mut rng);
    let d = Db::new(&db)
        .monitor_interval(Duration::from_millis(100))
        .replica(Replica::new(client.clone()).sync_interval(Duration::from_millis(100)));
    let levels = CompactionLevels::from_intervals(&[Duration::from_secs(1)]).unwrap();
    let mut store = Store::new(vec![d], levels).unwrap();
    store.open().unwrap();
    let txid = store.sync(&db).unwrap();
    store
        .wait_replicated(&db, None, Duration::from_secs(30))
        .unwrap();

    let (reader, rc) = open_replica(tag, client.clone());
    assert_eq!(
        dump_conn(&rc),
        dump_conn(&src),
        "the replica read through the VFS"
    );
    assert_eq!(pragma(&rc, "PRAGMA integrity_check"), "ok");
    assert!(Txid(u64::from_str_radix(&pragma(&rc, "PRAGMA litestream_txid"), 16).unwrap()) >= txid);
    assert_eq!(reader.txid(), store.status()[0].local_txid);

    // Writes are refused as a read-only database.
    let err = rc
        .execute("INSERT INTO notes(k, v) VALUES ('x', 'y')", [])
        .unwrap_err();
    assert_eq!(err.sqlite_error_code(), Some(ErrorCode::ReadOnly), "{err}");

    // The point in time before more writes.
    std::thread::sleep(Duration::from_millis(20));
    let t1 = SystemTime::now();
    let dump1 = dump_conn(&src);
    std::thread::sleep(Duration::from_millis(20));

    // The open connection follows new transactions.
    for step in 20..40 {
        workload_step(&mut src, &mut rng, step);
        if step % 5 == 0 {
            store.sync(&db).unwrap();
        }
    }
    store.sync(&db).unwrap();
    store
        .wait_replicated(&db, None, Duration::from_secs(30))
        .unwrap();
    let want = dump_conn(&src);
    assert!(
        wait_until(Duration::from_secs(30), || dump_conn(&rc) == want),
        "the open connection never showed the new writes"
    );
    assert_eq!(pragma(&rc, "PRAGMA integrity_check"), "ok");

    // Time travel shows what `restore -timestamp` rebuilds.
    rc.execute_batch(&format!(
        "PRAGMA litestream_time = '{}'",
        litestream::format_rfc3339(t1)
    ))
    .unwrap();
    let out = dir.join("at-t1.db");
    restore(client.as_ref(), &RestoreOptions::new(&out).timestamp(t1)).unwrap();
    assert_eq!(
        dump_conn(&rc),
        dump(&out),
        "time travel equals restore -timestamp"
    );
    assert_eq!(dump_conn(&rc), dump1);
    assert_eq!(
        pragma(&rc, "PRAGMA litestream_time"),
        litestream::format_rfc3339(t1)
    );
    rc.execute_batch("PRAGMA litestream_time = 'latest'")
        .unwrap();
    assert_eq!(dump_conn(&rc), want, "back to the newest state");
    let lag: i64 = pragma(&rc, "PRAGMA litestream_lag").parse().unwrap();
    assert!(lag >= 0, "lag {lag}");

    // The SQL functions answer what the PRAGMAs do.
    // SAFETY: rusqlite's open handle of the same SQLite.
    assert_eq!(unsafe { vfs::register_functions(rc.handle()) }, 0);
    let f: String = rc
        .query_row("SELECT litestream_txid()", [], |r| r.get(0))
        .unwrap();
    assert_eq!(f, pragma(&rc, "PRAGMA litestream_txid"));
    let lag: i64 = rc
        .query_row("SELECT litestream_lag()", [], |r| r.get(0))
        .unwrap();
    assert!(lag >= 0);

    drop(rc);
    store.close().unwrap();
}

#[test]
fn our_file_replica() {
    let dir = TempDir::new("vfs-file-replica");
    let client: Arc<dyn ReplicaClient> = Arc::new(FileClient::new(dir.join("replica")));
    our_replica_through_the_vfs("vfs-file", client);
}

#[test]
fn our_s3_replica() {
    let Some(c) = s3_client(&unique("vfs-s3")) else {
        return;
    };
    our_replica_through_the_vfs("vfs-s3", Arc::new(c));
}

#[test]
fn our_webdav_replica() {
    let Some(c) = webdav_client(&unique("vfs-webdav")) else {
        return;
    };
    our_replica_through_the_vfs("vfs-webdav", Arc::new(c));
}

/// A litestream.yml replicating `db` with `replica` (the YAML lines of its `replica:`).
fn official_config(dir: &Path, replica: &str) -> std::path::PathBuf {
    let cfg = dir.join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n{replica}      sync-interval: 100ms\n",
            dir.join("app.db").display()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn official_file_replica() {
    if official_bin().is_none() {
        return;
    }
    let dir = TempDir::new("vfs-official-file");
    let replica = dir.join("replica");
    let cfg = official_config(
        dir.path(),
        &format!("      type: file\n      path: {}\n", replica.display()),
    );
    official_replica_through_the_vfs(
        "vfs-official-file",
        &cfg,
        Arc::new(FileClient::new(&replica)),
        dir.path(),
    );
}

#[test]
fn official_s3_replica() {
    if official_bin().is_none() {
        return;
    }
    let dir = TempDir::new("vfs-official-s3");
    let path = unique("vfs-official-s3");
    let Some(c) = s3_client(&path) else { return };
    let (Some(endpoint), Some(bucket), Some(ak), Some(sk)) = (
        peer_env("LITESTREAM_TEST_S3_ENDPOINT"),
        peer_env("LITESTREAM_TEST_S3_BUCKET"),
        peer_env("LITESTREAM_TEST_S3_ACCESS_KEY"),
        peer_env("LITESTREAM_TEST_S3_SECRET_KEY"),
    ) else {
        return;
    };
    let cfg = official_config(
        dir.path(),
        &format!(
            "      type: s3\n      bucket: {bucket}\n      path: {path}\n      endpoint: {endpoint}\n      \
             region: us-east-1\n      force-path-style: true\n      access-key-id: {ak}\n      \
             secret-access-key: {sk}\n"
        ),
    );
    official_replica_through_the_vfs("vfs-official-s3", &cfg, Arc::new(c), dir.path());
}

/// The application's tables: the official binary adds its own (`_litestream_seq`,
/// `_litestream_lock`) to the source.
fn app_dump(conn: &Connection) -> String {
    dump_conn(conn)
        .lines()
        .filter(|l| !l.contains("_litestream_"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The official binary replicates `app.db` (written here) through `cfg`; the VFS over
/// `client` reads the replica equal to the source and follows it.
fn official_replica_through_the_vfs(
    tag: &str,
    cfg: &Path,
    client: Arc<dyn ReplicaClient>,
    dir: &Path,
) {
    let db = dir.join("app.db");
    let mut src = Connection::open(&db).unwrap();
    create_schema(&src);
    let mut rng = Rng::new(9);
    for step in 0..10 {
        workload_step(&mut src, &mut rng, step);
    }
    let mut child = official_replicate_by_config(cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("replicate.log")).unwrap())
        .spawn()
        .unwrap();
    let want = app_dump(&src);
    let mut probe = 0;
    assert!(
        wait_until(Duration::from_secs(60), || {
            probe += 1;
            let out = dir.join(format!("probe-{probe}.db"));
            restore(client.as_ref(), &RestoreOptions::new(&out)).is_ok()
                && app_dump(&Connection::open(&out).unwrap()) == want
        }),
        "the official binary never replicated the database"
    );
    let (_reader, rc) = open_replica(tag, client.clone());
    assert_eq!(app_dump(&rc), want);
    assert_eq!(pragma(&rc, "PRAGMA integrity_check"), "ok");
    for step in 10..30 {
        workload_step(&mut src, &mut rng, step);
    }
    big_transaction(&mut src, &mut rng);
    let want = app_dump(&src);
    assert!(
        wait_until(Duration::from_secs(90), || app_dump(&rc) == want),
        "the open connection never showed the official replica's new transactions"
    );
    assert_eq!(pragma(&rc, "PRAGMA integrity_check"), "ok");
    assert!(terminate(&mut child, Duration::from_secs(30)));
}
