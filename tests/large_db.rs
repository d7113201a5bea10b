//! A database larger than 1 GiB (so it contains SQLite's lock page) replicated by us and
//! restored by us and by the official binary, byte for byte. Slow: run with
//! `cargo test --release --test large_db -- --ignored --nocapture`.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::*;
use litestream::client::FileClient;
use litestream::restore::{restore, RestoreOptions};
use litestream::{CompactionLevels, Db, Replica, Store};

fn same_bytes(a: &std::path::Path, b: &std::path::Path) -> bool {
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

#[test]
#[ignore = "writes and restores more than 3 GiB; run explicitly"]
fn database_over_one_gib_round_trips() {
    let dir = TempDir::new("large");
    let db = dir.join("big.db");
    let replica = dir.join("replica");
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE blobs(id INTEGER PRIMARY KEY, data BLOB);",
    )
    .unwrap();
    let d =
        Db::new(&db).replica(Replica::from_url(&format!("file://{}", replica.display())).unwrap());
    let mut store = Store::new(vec![d], CompactionLevels::default()).unwrap();
    store.open().unwrap();
    let t0 = Instant::now();
    let mut rng = Rng::new(1);
    // 1.1 GiB in 64 MiB transactions of 64 KiB blobs.
    for _ in 0..18 {
        let tx = conn.transaction().unwrap();
        for _ in 0..1024 {
            tx.execute("INSERT INTO blobs(data) VALUES (?1)", [rng.bytes(64 << 10)])
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let pages = pages as u64;
    assert!(pages * 4096 > 1 << 30, "database is only {pages} pages");
    store.sync(&db).unwrap();
    store
        .wait_replicated(&db, None, Duration::from_secs(600))
        .unwrap();
    eprintln!("wrote and replicated {pages} pages in {:?}", t0.elapsed());
    assert!(store.close().unwrap().is_complete());
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    drop(conn);

    let out = dir.join("ours.db");
    let t0 = Instant::now();
    let r = restore(&FileClient::new(&replica), &RestoreOptions::new(&out)).unwrap();
    eprintln!(
        "our restore: {} files, {} bytes read, {:?}",
        r.files.len(),
        r.bytes_read,
        t0.elapsed()
    );
    assert!(same_bytes(&db, &out), "our restore differs from the source");
    assert_eq!(integrity(&out), "ok");
    if let Some(bin) = official_bin() {
        let theirs = dir.join("official.db");
        let t0 = Instant::now();
        let (ok, _, err) = run(official_cmd(&bin)
            .args(["restore", "-o"])
            .arg(&theirs)
            .arg(format!("file://{}", replica.display())));
        assert!(ok, "{err}");
        eprintln!("official restore: {:?}", t0.elapsed());
        assert!(
            same_bytes(&db, &theirs),
            "official restore differs from the source"
        );
    }
}
