//! The GCS client (JSON API) against fake-gcs-server on 127.0.0.1, and interop with the
//! official Litestream through it (which talks to it through `STORAGE_EMULATOR_HOST`).

mod common;

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use litestream::client::{GcsClient, GcsConfig};
use litestream::ltx::{Encoder, Header, PageEncoding, HEADER_FLAG_NO_CHECKSUM};
use litestream::restore::{restore, IntegrityCheck, RestoreOptions};
use litestream::{CompactionLevels, Db, Error, Replica, ReplicaClient, Store, Txid};

const BUCKET: &str = "lsbkt";

fn host() -> Option<String> {
    peer_env("LITESTREAM_TEST_GCS_HOST")
}

fn unique(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_000
    )
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

fn ltx_file(dir: &TempDir, min: u64, max: u64, pages: u32) -> std::path::PathBuf {
    let h = Header {
        flags: HEADER_FLAG_NO_CHECKSUM,
        page_size: 4096,
        commit: pages,
        min_txid: Txid(min),
        max_txid: Txid(max),
        timestamp: 1_700_000_000_000 + min as i64,
        wal_offset: 32,
        ..Header::default()
    };
    let p = dir.join(format!("{min}-{max}.ltx"));
    let mut e = Encoder::new(File::create(&p).unwrap(), &h, PageEncoding::Frame).unwrap();
    let mut rng = Rng::new(min);
    for pg in 1..=pages {
        let page: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
        e.write_page(pg, &page).unwrap();
    }
    e.finish().unwrap();
    p
}

#[test]
fn listing_pages_ranges_timestamps_and_deletes() {
    let Some(host) = host() else { return };
    let dir = TempDir::new("gcs-list");
    let c = client(&host, BUCKET, &unique("list"), 7);
    c.create_bucket("test").unwrap();
    assert!(c.ltx_files(0, Txid::ZERO, false).unwrap().is_empty());
    for i in 1..=30u64 {
        let p = ltx_file(&dir, i, i, 1);
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
    let big = ltx_file(&dir, 31, 40, 1700);
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
    let db = dir.join("app.db");
    let path = unique("ours");
    let c = client(&host, BUCKET, &path, 1000);
    c.create_bucket("test").unwrap();
    let c = std::sync::Arc::new(c);
    let mut w = Writer::spawn(&db, 5000);
    w.cmd("mixed 1 10");
    let d = Db::new(&db)
        .monitor_interval(Duration::from_millis(100))
        .replica(Replica::new(c.clone()).sync_interval(Duration::from_millis(100)));
    let mut store = Store::new(
        vec![d],
        CompactionLevels::from_intervals(&[Duration::from_secs(1)]).unwrap(),
    )
    .unwrap();
    store.open().unwrap();
    w.cmd("big 2");
    w.cmd("mixed 3 20");
    store.sync(&db).unwrap();
    store
        .wait_replicated(&db, None, Duration::from_secs(60))
        .unwrap();
    std::thread::sleep(Duration::from_secs(2)); // an L1 compaction
    let want = dump(&db);
    assert!(store.close().unwrap().is_complete());
    drop(w);
    assert!(!c.ltx_files(1, Txid::ZERO, false).unwrap().is_empty());
    let out = dir.join("ours.db");
    restore(
        c.as_ref(),
        &RestoreOptions::new(&out).integrity_check(IntegrityCheck::Full),
    )
    .unwrap();
    assert_eq!(dump(&out), want);

    let Some(bin) = official_bin() else { return };
    let theirs = dir.join("theirs.db");
    let (ok, _, err) = run(official(&bin, &host)
        .args(["restore", "-integrity-check", "full", "-o"])
        .arg(&theirs)
        .arg(format!("gs://{BUCKET}/{path}")));
    assert!(ok, "official restore from our GCS replica: {err}");
    assert_eq!(dump(&theirs), want);

    // The other way: the official binary replicates, we restore (through the URL, as a
    // user would, with the emulator given as an endpoint).
    let db2 = dir.join("official-src.db");
    let path2 = unique("theirs");
    let mut w2 = Writer::spawn(&db2, 5000);
    w2.cmd("mixed 5 10");
    let mut child = official(&bin, &host)
        .arg("replicate")
        .arg(&db2)
        .arg(format!("gs://{BUCKET}/{path2}"))
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("official.log")).unwrap())
        .spawn()
        .unwrap();
    let c2 = litestream::client::from_url(&format!("gs://{BUCKET}/{path2}?endpoint=http://{host}"))
        .unwrap();
    assert!(wait_until(Duration::from_secs(20), || !c2
        .ltx_files(0, Txid::ZERO, false)
        .unwrap()
        .is_empty()));
    w2.cmd("big 6");
    w2.cmd("mixed 7 10");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        terminate(&mut child, Duration::from_secs(30)),
        "official replicate did not exit cleanly"
    );
    let want2 = dump(&db2);
    // Timestamps the official binary stored are read back as header timestamps.
    let files = c2.ltx_files(0, Txid::ZERO, true).unwrap();
    assert!(files
        .iter()
        .all(|f| f.created_at > litestream::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()));
    let out2 = dir.join("ours-from-theirs.db");
    restore(
        c2.as_ref(),
        &RestoreOptions::new(&out2).integrity_check(IntegrityCheck::Full),
    )
    .unwrap();
    assert_eq!(dump(&out2), want2);
}
