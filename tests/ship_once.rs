//! A database is shipped once: the first replication uploads the snapshot, and the first
//! compactions (L1, L2, L3) and the L9 snapshot copy it on the server instead of uploading
//! it again; the official binary restores the result.

mod common;

use std::sync::Arc;

use common::counting::{assert_shipped_once, big_db, replicate_until_every_level};
use common::*;
use litestream::client::s3::{Credentials, S3Client, S3Config};
use litestream::FileClient;

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
