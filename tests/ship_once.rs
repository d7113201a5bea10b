//! A database is shipped once: the first replication uploads the snapshot, and the first
//! compactions (L1, L2, L3) and the L9 snapshot copy it on the server instead of uploading
//! it again; the official binary restores the result.

mod common;

use std::sync::Arc;

use common::counting::{assert_shipped_once, big_db, replicate_until_every_level};
use common::s3::s3_env;
use common::*;
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
    let Some(env) = s3_env() else { return };
    let dir = TempDir::new("ship-once-s3");
    let db = big_db(&dir);
    let path = unique("ship-once");
    let client = env.client(&path);
    let counting = replicate_until_every_level(&db, Arc::new(client));
    assert_shipped_once(&db, &counting);
    let Some(bin) = official_bin() else { return };
    let out = dir.join("official.db");
    let (ok, _, err) = run(env
        .official(&bin)
        .args(["restore", "-integrity-check", "full", "-o"])
        .arg(&out)
        .arg(env.url(&path)));
    assert!(ok, "official restore failed: {err}");
    assert_eq!(dump(&out), dump(&db));
}
