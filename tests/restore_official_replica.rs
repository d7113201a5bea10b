//! The official Litestream 0.5.17 replicates a database under a mixed write workload; our
//! restore (library and CLI) must reproduce the source exactly, at the latest state and at
//! intermediate TXIDs and timestamps.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use litestream::client::FileClient;
use litestream::ltx::{Header, HEADER_SIZE};
use litestream::restore::{restore, IntegrityCheck, RestoreOptions};
use litestream::{ReplicaClient, Txid};

/// The WAL's salts and the end of its last committed frame (of the frames carrying its
/// header's salts, in a row from the start).
fn wal_commit_end(wal: &Path) -> Option<(u32, u32, u64)> {
    let b = std::fs::read(wal).ok()?;
    let be32 = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap());
    if b.len() < 32 {
        return None;
    }
    let page_size = match be32(8) {
        1 => 65536,
        n => n as usize,
    };
    let (salt1, salt2) = (be32(16), be32(20));
    let (mut at, mut end) = (32, 32);
    while at + 24 + page_size <= b.len() && be32(at + 8) == salt1 && be32(at + 12) == salt2 {
        let commit = be32(at + 4) != 0;
        at += 24 + page_size;
        if commit {
            end = at;
        }
    }
    Some((salt1, salt2, end as u64))
}

/// The header of the local L0 file with the highest TXID.
fn newest_l0_header(l0: &Path) -> Option<Header> {
    let newest = std::fs::read_dir(l0)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let (_, max) = litestream::ltx::parse_file_name(e.file_name().to_str()?)?;
            Some((max, e.path()))
        })
        .max()?;
    let mut b = [0u8; HEADER_SIZE];
    std::fs::File::open(newest.1)
        .ok()?
        .read_exact(&mut b)
        .ok()?;
    Header::from_bytes(&b).ok()
}

struct Point {
    txid: u64,
    at: SystemTime,
    dump: String,
}

#[test]
fn official_replica_restores_with_ours_at_every_point() {
    let Some(bin) = official_bin() else { return };
    let dir = TempDir::new("official-replica");
    let db = dir.join("app.db");
    let replica = dir.join("replica");
    let cfg = dir.join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:
  - path: {db}
    monitor-interval: 100ms
    checkpoint-interval: 2s
    min-checkpoint-page-count: 200
    replica:
      type: file
      path: {replica}
      sync-interval: 100ms
levels:
  - interval: 3s
  - interval: 9s
snapshot:
  interval: 8s
  retention: 1h
",
            db = db.display(),
            replica = replica.display()
        ),
    )
    .unwrap();

    let mut conn = rusqlite::Connection::open(&db).unwrap();
    create_schema(&conn);
    let mut child = official_cmd(&bin)
        .args(["replicate", "-config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("replicate.log")).unwrap())
        .spawn()
        .unwrap();

    let l0 = meta_l0_dir(&db);
    assert!(
        wait_until(Duration::from_secs(10), || max_txid_in(&l0) >= 1),
        "official litestream produced no L0 file"
    );
    let mut rng = Rng::new(7);
    let mut points: Vec<Point> = Vec::new();
    let started = Instant::now();
    let mut step = 0u64;
    while started.elapsed() < Duration::from_secs(18) || step < 20 {
        let before = max_txid_in(&l0);
        match step {
            6 => big_transaction(&mut conn, &mut rng),
            14 => conn
                .execute_batch("DELETE FROM events WHERE kind = 'bulk'; VACUUM;")
                .unwrap(),
            _ => workload_step(&mut conn, &mut rng, step),
        }
        assert!(
            wait_until(Duration::from_secs(10), || max_txid_in(&l0) > before),
            "no new L0 file after step {step}"
        );
        // A sync that raced the commit made a file without it: wait for one that covers the
        // WAL up to the commit (or for the WAL to have been restarted since, which the
        // official binary does only after syncing it all).
        let wal = dir.join("app.db-wal");
        let (salt1, salt2, end) = wal_commit_end(&wal).expect("a WAL after a commit");
        assert!(
            wait_until(Duration::from_secs(30), || newest_l0_header(&l0)
                .is_some_and(|h| {
                    let later = h.wal_salt1.wrapping_sub(salt1) as i32;
                    later > 0
                        || (later == 0
                            && h.wal_salt2 == salt2
                            && (h.wal_offset + h.wal_size) as u64 >= end)
                })),
            "step {step}: no L0 file covers the WAL up to the commit (end {end}): {:?}",
            newest_l0_header(&l0)
        );
        let txid = max_txid_in(&l0);
        std::thread::sleep(Duration::from_millis(20));
        points.push(Point {
            txid,
            at: SystemTime::now(),
            dump: dump_conn(&conn),
        });
        std::thread::sleep(Duration::from_millis(20));
        step += 1;
    }
    let final_dump = dump_conn(&conn);
    assert!(
        terminate(&mut child, Duration::from_secs(30)),
        "official litestream did not exit cleanly"
    );
    drop(conn);

    let client = FileClient::new(&replica);
    let l1 = client.ltx_files(1, Txid::ZERO, false).unwrap();
    let l9 = client.ltx_files(9, Txid::ZERO, false).unwrap();
    assert!(!l1.is_empty(), "expected an L1 compaction in the replica");
    assert!(!l9.is_empty(), "expected an L9 snapshot in the replica");

    // Latest state through the library, with a full integrity check.
    let out = dir.join("latest.db");
    let report = restore(
        &client,
        &RestoreOptions::new(&out).integrity_check(IntegrityCheck::Full),
    )
    .unwrap();
    assert_eq!(dump(&out), final_dump);
    assert_eq!(integrity(&out), "ok");
    assert!(report.txid.0 >= points.last().unwrap().txid);

    // Latest state through our CLI.
    let out_cli = dir.join("latest-cli.db");
    let (ok, _, err) = run(std::process::Command::new(our_bin())
        .args(["restore", "-integrity-check", "full", "-o"])
        .arg(&out_cli)
        .arg(format!("file://{}", replica.display())));
    assert!(ok, "our CLI restore failed: {err}");
    assert_eq!(dump(&out_cli), final_dump);

    // Every recorded point by TXID, and by timestamp.
    for (i, p) in points.iter().enumerate() {
        let out = dir.join(format!("txid-{i}.db"));
        restore(&client, &RestoreOptions::new(&out).txid(Txid(p.txid)))
            .unwrap_or_else(|e| panic!("restore to txid {:016x}: {e}", p.txid));
        assert_eq!(
            dump(&out),
            p.dump,
            "state at txid {:016x} (step {i})",
            p.txid
        );
        let out = dir.join(format!("ts-{i}.db"));
        restore(&client, &RestoreOptions::new(&out).timestamp(p.at))
            .unwrap_or_else(|e| panic!("restore to timestamp of step {i}: {e}"));
        assert_eq!(dump(&out), p.dump, "state at the timestamp of step {i}");
    }
    // A TXID restore through the CLI, checked against the official binary's own restore.
    let mid = &points[points.len() / 2];
    let (ours, theirs) = (dir.join("mid-ours.db"), dir.join("mid-theirs.db"));
    let txid = format!("{:016x}", mid.txid);
    let url = format!("file://{}", replica.display());
    let (ok, _, err) = run(std::process::Command::new(our_bin())
        .args(["restore", "-txid", &txid, "-o"])
        .arg(&ours)
        .arg(&url));
    assert!(ok, "{err}");
    let (ok, _, err) = run(official_cmd(&bin)
        .args(["restore", "-txid", &txid, "-o"])
        .arg(&theirs)
        .arg(&url));
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read(&ours).unwrap(),
        std::fs::read(&theirs).unwrap(),
        "byte-identical with the official restore"
    );
    assert_eq!(dump(&ours), mid.dump);
}
