//! A database is shipped once: the first replication uploads the snapshot, and the first
//! compactions (L1, L2, L3) and the L9 snapshot copy it on the server instead of uploading
//! it again; the official binary restores the result.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::counting::Counting;
use common::*;
use litestream::client::s3::{Credentials, S3Client, S3Config};
use litestream::{CompactionLevels, Db, FileClient, Replica, ReplicaClient, Store, Txid};
use rusqlite::Connection;

/// A database of about 4 MiB, written before replication starts.
fn big_db(dir: &TempDir) -> PathBuf {
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
fn replicate_until_every_level(db: &Path, client: Arc<dyn ReplicaClient>) -> Arc<Counting> {
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

fn assert_shipped_once(db: &Path, counting: &Counting) {
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

#[test]
fn file_replica_first_replication_ships_the_database_once() {
    let dir = TempDir::new("ship-once-file");
    let db = big_db(&dir);
    let replica = dir.join("replica");
    let counting = replicate_until_every_level(&db, Arc::new(FileClient::new(&replica)));
    assert_shipped_once(&db, &counting);
    let Some(bin) = official_bin() else { return };
    let out = dir.join("official.db");
    official_restore(&bin, &format!("file://{}", replica.display()), &out, &[]);
    assert_eq!(dump(&out), dump(&db));
}

#[test]
fn s3_replica_first_replication_ships_the_database_once() {
    let (Some(endpoint), Some(bucket), Some(ak), Some(sk)) = (
        peer_env("LITESTREAM_TEST_S3_ENDPOINT"),
        peer_env("LITESTREAM_TEST_S3_BUCKET"),
        peer_env("LITESTREAM_TEST_S3_ACCESS_KEY"),
        peer_env("LITESTREAM_TEST_S3_SECRET_KEY"),
    ) else {
        return;
    };
    let dir = TempDir::new("ship-once-s3");
    let db = big_db(&dir);
    let url = format!(
        "s3://{bucket}/{}?endpoint={endpoint}&forcePathStyle=true&region=us-east-1",
        unique("ship-once")
    );
    let mut cfg = S3Config::from_url(&url).unwrap();
    cfg.credentials = Some(Credentials {
        access_key_id: ak.clone(),
        secret_access_key: sk.clone(),
        session_token: None,
    });
    let client = S3Client::new(cfg).unwrap();
    client.create_bucket().unwrap();
    let counting = replicate_until_every_level(&db, Arc::new(client));
    assert_shipped_once(&db, &counting);
    let Some(bin) = official_bin() else { return };
    let out = dir.join("official.db");
    let (ok, _, err) = run(official_cmd(&bin)
        .env("LITESTREAM_ACCESS_KEY_ID", &ak)
        .env("LITESTREAM_SECRET_ACCESS_KEY", &sk)
        .args(["restore", "-integrity-check", "full", "-o"])
        .arg(&out)
        .arg(&url));
    assert!(ok, "official restore failed: {err}");
    assert_eq!(dump(&out), dump(&db));
}
