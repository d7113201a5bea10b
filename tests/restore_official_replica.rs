//! The official Litestream 0.5.17 replicates a database under a mixed write workload; our
//! restore (library and CLI) must reproduce the source exactly, at the latest state and at
//! intermediate TXIDs and timestamps.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use litestream::client::FileClient;
use litestream::restore::{restore, IntegrityCheck, RestoreOptions};
use litestream::{ReplicaClient, Txid};

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
        // Quiet period: any sync that raced the commit is followed by one that includes it.
        std::thread::sleep(Duration::from_millis(400));
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
