//! The requests the VFS makes. Opening (and a rebuild, and time travel) lists the whole
//! replica in one request where the backend has a recursive listing
//! (`ReplicaClient::all_ltx_files`), and one listing per level where it has not; the one
//! listing gives the same files as the per-level listings, on files and on S3. A large
//! file costs two reads at open; a miss at a random place reads its page alone, a scan
//! reads ahead.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::counting::Counting;
use common::*;
use litestream::client::{AbsClient, AbsConfig, FileClient, GcsClient, GcsConfig, SNAPSHOT_LEVEL};
use litestream::restore::{restore, RestoreOptions};
use litestream::vfs::{self, ReaderOptions, ReplicaReader};
use litestream::{CompactionLevels, Db, FileInfo, Replica, ReplicaClient, Store, Txid};
use rusqlite::{Connection, OpenFlags};

/// Writes a database with files on several levels to `client`; the source connection,
/// a time between two rounds of writes, and the store (still open).
fn replicate(dir: &TempDir, client: Arc<dyn ReplicaClient>) -> (Connection, SystemTime, Store) {
    let db = dir.join("app.db");
    let mut src = Connection::open(&db).unwrap();
    create_schema(&src);
    let mut rng = Rng::new(7);
    let d = Db::new(&db)
        .monitor_interval(Duration::from_millis(100))
        .replica(Replica::new(client.clone()).sync_interval(Duration::from_millis(100)));
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
    let last = store
        .wait_replicated(&db, None, Duration::from_secs(30))
        .unwrap();
    // Done changing: level 1 (the top level) compacted up to the last TXID, and the
    // snapshot taken (the listings compared below would differ if either came between them).
    let newest = |level| {
        client
            .ltx_files(level, Txid::ZERO, false)
            .unwrap()
            .last()
            .map(|f| f.max_txid)
    };
    assert!(
        wait_until(Duration::from_secs(30), || newest(1) == Some(last)
            && newest(SNAPSHOT_LEVEL).is_some()),
        "the replica did not settle: L1 at {:?}, L9 at {:?}, want {last}",
        newest(1),
        newest(SNAPSHOT_LEVEL)
    );
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
    let counting = Counting::new(client.clone());
    let reader = ReplicaReader::open(counting.clone(), quiet()).unwrap();
    assert_eq!(counting.listings(), (0, 1, 0), "open lists once");
    assert_eq!(reader.stats().lists, 1);
    let rc = open(tag, reader.clone());
    assert_eq!(dump_conn(&rc), dump_conn(&src));

    // Time travel: one listing with header timestamps, and it equals restore -timestamp.
    rc.execute_batch(&format!(
        "PRAGMA litestream_time = '{}'",
        litestream::format_rfc3339(t)
    ))
    .unwrap();
    assert_eq!(counting.listings(), (0, 2, 1), "time travel lists once");
    let out = dir.join("at-t.db");
    restore(client.as_ref(), &RestoreOptions::new(&out).timestamp(t)).unwrap();
    assert_eq!(
        dump_conn(&rc),
        dump(&out),
        "time travel equals restore -timestamp"
    );
    drop(rc);

    // Without a recursive listing: one listing per level, the same state.
    let hidden = Counting::new(client.clone()).hide_recursive_listing();
    let reader2 = ReplicaReader::open(hidden.clone(), quiet()).unwrap();
    assert_eq!(hidden.listings(), (u64::from(SNAPSHOT_LEVEL) + 1, 0, 0));
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

#[test]
fn azure_replica_opens_with_one_listing() {
    let (Some(endpoint), Some(account), Some(key)) = (
        peer_env("LITESTREAM_TEST_ABS_ENDPOINT"),
        peer_env("LITESTREAM_TEST_ABS_ACCOUNT"),
        peer_env("LITESTREAM_TEST_ABS_KEY"),
    ) else {
        return;
    };
    let c = AbsClient::new(AbsConfig {
        account_name: account,
        account_key: key,
        sas_token: None,
        container: "lsbkt".into(),
        path: unique("vfs-listing-abs"),
        endpoint: Some(endpoint),
        block_size: 4 << 20,
        // Small pages: the one listing follows the continuation markers.
        page_size: 7,
    })
    .unwrap();
    c.create_container().unwrap();
    one_listing_opens("vfs-listing-abs", Arc::new(c));
}

#[test]
fn gcs_replica_opens_with_one_listing() {
    let Some(host) = peer_env("LITESTREAM_TEST_GCS_HOST") else {
        return;
    };
    let mut cfg =
        GcsConfig::from_url(&format!("gs://lsbkt/{}", unique("vfs-listing-gcs"))).unwrap();
    cfg.endpoint = Some(format!("http://{host}"));
    // Small pages: the one listing follows the page tokens.
    cfg.page_size = 7;
    let c = GcsClient::new(cfg).unwrap();
    c.create_bucket("test").unwrap();
    one_listing_opens("vfs-listing-gcs", Arc::new(c));
}

/// A database of about 4 MiB in one snapshot: open reads its head and its tail; point
/// lookups read their pages alone; a scan reads ahead.
#[test]
fn lookups_read_pages_alone_and_scans_read_ahead() {
    let dir = TempDir::new("vfs-requests-reads");
    let db = dir.join("app.db");
    let mut src = Connection::open(&db).unwrap();
    src.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        .unwrap();
    let mut rng = Rng::new(3);
    let tx = src.transaction().unwrap();
    for id in 1..=3000 {
        tx.execute(
            "INSERT INTO t(id, v) VALUES (?1, ?2)",
            rusqlite::params![id, rng.bytes(1024)],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    let client: Arc<dyn ReplicaClient> = Arc::new(FileClient::new(dir.join("replica")));
    let d = Db::new(&db)
        .monitor_interval(Duration::from_millis(100))
        .replica(Replica::new(client.clone()).sync_interval(Duration::from_millis(100)));
    let levels = CompactionLevels::from_intervals(&[Duration::from_secs(60)]).unwrap();
    let mut store = Store::new(vec![d], levels).unwrap();
    store.open().unwrap();
    store.sync(&db).unwrap();
    store
        .wait_replicated(&db, None, Duration::from_secs(30))
        .unwrap();
    store.close().unwrap();

    let reader = ReplicaReader::open(client, quiet()).unwrap();
    let s = reader.stats();
    assert_eq!(
        (s.lists, s.gets),
        (1, 2),
        "open: one listing, the head and the tail"
    );
    let rc = open("vfs-requests-reads", reader.clone());
    let count: i64 = rc
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert!(count >= 1);
    assert_eq!(reader.stats().gets, 2, "page 1 came with the head");

    // Lookups far apart: each miss reads one frame (a page of random bytes: ~4 KiB).
    for id in [2900, 2100, 1300] {
        let before = reader.stats();
        let n: i64 = rc
            .query_row("SELECT length(v) FROM t WHERE id = ?1", [id], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1024);
        let after = reader.stats();
        let (gets, bytes) = (after.gets - before.gets, after.bytes - before.bytes);
        assert!((1..=3).contains(&gets), "lookup of {id}: {gets} reads");
        assert!(
            bytes <= gets * 4200,
            "lookup of {id}: {bytes} bytes in {gets} reads"
        );
    }

    // A scan: far fewer reads than pages (each 256 KiB, about 64 pages).
    let before = reader.stats();
    let sum: i64 = rc
        .query_row("SELECT sum(length(v)) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sum, 3000 * 1024);
    let gets = reader.stats().gets - before.gets;
    assert!(gets <= 40, "a scan of ~1000 pages took {gets} reads");
    assert_eq!(dump_conn(&rc), dump_conn(&src));
}

/// Every page of the database file `db` as an LTX file `min-max` (a temp file in `dir`).
fn ltx_of(dir: &TempDir, db: &std::path::Path, min: u64, max: u64) -> std::fs::File {
    use litestream::ltx::{Encoder, Header, PageEncoding, HEADER_FLAG_NO_CHECKSUM};
    let bytes = std::fs::read(db).unwrap();
    let h = Header {
        flags: HEADER_FLAG_NO_CHECKSUM,
        page_size: 4096,
        commit: (bytes.len() / 4096) as u32,
        min_txid: Txid(min),
        max_txid: Txid(max),
        timestamp: 1_700_000_000_000 + max as i64,
        ..Header::default()
    };
    let p = dir.join(unique("ltx"));
    let mut e = Encoder::new(std::fs::File::create(&p).unwrap(), &h, PageEncoding::Frame).unwrap();
    for (i, page) in bytes.chunks(4096).enumerate() {
        e.write_page(i as u32 + 1, page).unwrap();
    }
    e.finish().unwrap();
    std::fs::File::open(&p).unwrap()
}

/// The newest level-0 file, compacted into level 1 and then deleted while the writer
/// idles, is planned again once: the rebuilt state becomes the newest, instead of every
/// later transaction pinning the old map, missing and listing the whole replica again.
#[test]
fn a_newest_level_0_file_compacted_away_is_planned_again_once() {
    let dir = TempDir::new("vfs-l0-gone");
    let db = dir.join("src.db");
    let src = Connection::open(&db).unwrap();
    src.execute_batch(
        "PRAGMA journal_mode=DELETE; CREATE TABLE t(x);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
         INSERT INTO t SELECT randomblob(1000) FROM n;",
    )
    .unwrap();
    let client = Arc::new(FileClient::new(dir.join("replica")));
    client
        .write_ltx_file(SNAPSHOT_LEVEL, Txid(1), Txid(1), &ltx_of(&dir, &db, 1, 1))
        .unwrap();
    src.execute_batch("INSERT INTO t VALUES (1)").unwrap();
    let l0 = ltx_of(&dir, &db, 2, 2);
    client.write_ltx_file(0, Txid(2), Txid(2), &l0).unwrap();
    // A cache of a few pages: every scan misses.
    let reader = ReplicaReader::open(
        client.clone(),
        ReaderOptions {
            cache_size: 0,
            ..quiet()
        },
    )
    .unwrap();
    let count = |c: &Connection| -> i64 {
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(count(&open("vfs-l0-gone", reader.clone())), 2001);
    // Compaction moves it to level 1; L0 retention deletes it.
    client.write_ltx_file(1, Txid(2), Txid(2), &l0).unwrap();
    client
        .delete_ltx_files(&client.ltx_files(0, Txid::ZERO, false).unwrap())
        .unwrap();
    let before = reader.stats().lists;
    for _ in 0..5 {
        assert_eq!(count(&open("vfs-l0-gone", reader.clone())), 2001);
    }
    let lists = reader.stats().lists - before;
    assert!(lists <= 2, "{lists} listings for 5 connections");
}
