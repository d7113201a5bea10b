//! The GCS client (JSON API) against fake-gcs-server on 127.0.0.1, and interop with the
//! official Litestream through it (which talks to it through `STORAGE_EMULATOR_HOST`).

mod common;

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::*;
use litestream::client::{GcsClient, GcsConfig};
use litestream::{Error, ReplicaClient, Txid};

const BUCKET: &str = "lsbkt";

fn host() -> Option<String> {
    peer_env("LITESTREAM_TEST_GCS_HOST")
}

fn client(host: &str, bucket: &str, path: &str, page_size: u32) -> GcsClient {
    let mut c = GcsConfig::from_url(&format!("gs://{bucket}/{path}")).unwrap();
    c.endpoint = Some(format!("http://{host}"));
    c.page_size = page_size;
    GcsClient::new(c).unwrap()
}

fn official(bin: &Path, host: &str) -> Command {
    let mut c = official_cmd(bin);
    c.env("STORAGE_EMULATOR_HOST", host);
    c
}

#[test]
fn listing_pages_ranges_timestamps_and_deletes() {
    let Some(host) = host() else { return };
    let dir = TempDir::new("gcs-list");
    let c = client(&host, BUCKET, &unique("list"), 7);
    c.create_bucket("test").unwrap();
    assert!(c.ltx_files(0, Txid::ZERO, false).unwrap().is_empty());
    for i in 1..=30u64 {
        let p = random_ltx(&dir, i, i, 1);
        c.write_ltx_file(1, Txid(i), Txid(i), &File::open(p).unwrap())
            .unwrap();
    }
    let all = c.ltx_files(1, Txid::ZERO, false).unwrap();
    assert_eq!(
        all.len(),
        30,
        "the listing must follow page tokens (7 per page)"
    );
    assert!(all.windows(2).all(|w| w[0].min_txid < w[1].min_txid));
    let from = c.ltx_files(1, Txid(25), false).unwrap();
    assert_eq!(from.len(), 6);
    assert_eq!(from[0].min_txid, Txid(25));
    // The header timestamp comes back from the object metadata.
    assert_eq!(
        from[0].created_at,
        litestream::parse_rfc3339("2023-11-14T22:13:20.025Z").unwrap()
    );
    // Ranged read: the header's page size field at offset 8.
    let mut r = c.open_ltx_file(1, Txid(3), Txid(3), 8, Some(4)).unwrap();
    let mut b = Vec::new();
    r.read_to_end(&mut b).unwrap();
    assert_eq!(b, 4096u32.to_be_bytes());
    // A multi-megabyte file streams up and back whole.
    let big = random_ltx(&dir, 31, 40, 1700);
    let info = c
        .write_ltx_file(0, Txid(31), Txid(40), &File::open(&big).unwrap())
        .unwrap();
    assert!(info.size > 6 << 20);
    let mut got = Vec::new();
    c.open_ltx_file(0, Txid(31), Txid(40), 0, None)
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert_eq!(got, std::fs::read(&big).unwrap());
    assert_eq!(
        c.ltx_files(0, Txid::ZERO, false).unwrap()[0].size,
        info.size
    );
    // Deletes; a missing object is NotFound on read and fine on delete.
    c.delete_ltx_files(&all[..10]).unwrap();
    c.delete_ltx_files(&all[..10]).unwrap();
    assert_eq!(c.ltx_files(1, Txid::ZERO, false).unwrap().len(), 20);
    assert!(matches!(
        c.open_ltx_file(1, Txid(2), Txid(2), 0, None).err(),
        Some(Error::NotFound { .. })
    ));
    c.delete_all().unwrap();
    assert!(c.ltx_files(1, Txid::ZERO, false).unwrap().is_empty());
    assert!(c.ltx_files(0, Txid::ZERO, false).unwrap().is_empty());
}

#[test]
fn a_missing_bucket_is_a_clear_error() {
    let Some(host) = host() else { return };
    let c = client(&host, "no-such-bucket-here", "db", 1000);
    let e = c.ltx_files(0, Txid::ZERO, false).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("404"), "{msg}");
    assert!(msg.contains("no-such-bucket-here"), "{msg}");
}

#[test]
fn replicate_to_gcs_and_restore_both_ways() {
    let Some(host) = host() else { return };
    let dir = TempDir::new("gcs-replicate");
    let (path, path2) = (unique("ours"), unique("theirs"));
    let ours = client(&host, BUCKET, &path, 1000);
    ours.create_bucket("test").unwrap();
    // The official binary's replica, read through a URL as a user would.
    let theirs =
        litestream::client::from_url(&format!("gs://{BUCKET}/{path2}?endpoint=http://{host}"))
            .unwrap();
    let bin = official_bin();
    replicate_and_restore_both_ways(
        &dir,
        Interop {
            ours: Arc::new(ours),
            theirs: theirs.clone(),
            official_restore: &|_, out| {
                let mut c = official(bin.as_deref().unwrap(), &host);
                c.args(["restore", "-integrity-check", "full", "-o"])
                    .arg(out)
                    .arg(format!("gs://{BUCKET}/{path}"));
                c
            },
            official_replicate: &|db| {
                let mut c = official(bin.as_deref().unwrap(), &host);
                c.arg("replicate")
                    .arg(db)
                    .arg(format!("gs://{BUCKET}/{path2}"));
                c
            },
        },
    );
    // The timestamps the official binary stored read back as header timestamps.
    let files = theirs.ltx_files(0, Txid::ZERO, true).unwrap();
    assert!(files
        .iter()
        .all(|f| f.created_at > litestream::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()));
}

#[test]
fn first_replication_ships_the_database_once() {
    let Some(host) = host() else { return };
    let c = client(&host, BUCKET, &unique("ship-once"), 1000);
    c.create_bucket("test").unwrap();
    common::counting::assert_first_replication_ships_once("gcs-ship-once", Arc::new(c));
}
