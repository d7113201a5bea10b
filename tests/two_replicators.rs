//! Two replicators, one replica: two databases (two processes, or two hosts) pointed at
//! the same replica path must never leave a replica that restores wrong.
//!
//! What the engine does: a replicator that starts on a replica whose newest files are not
//! provably its own continues after them with a full snapshot (a restored database, a new
//! primary after a failover), so the newcomer takes over; a replicator that finds, while
//! it runs, files after its own last upload that it did not write stops replicating to
//! that replica with an error naming the file and saying two writers share the path.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use litestream::restore::{restore, RestoreOptions};
use litestream::{CompactionLevels, Db, FileClient, Replica, Store};
use rusqlite::Connection;

fn store_for(db: &Path, replica: &Path) -> Store {
    let ms = Duration::from_millis;
    let d = Db::new(db)
        .monitor_interval(ms(20))
        .replica(Replica::new(Arc::new(FileClient::new(replica))).sync_interval(ms(20)));
    let mut s = Store::new(
        vec![d],
        CompactionLevels::from_intervals(&[ms(200)]).unwrap(),
    )
    .unwrap()
    .snapshot_interval(ms(500))
    .l0_retention(ms(100))
    .l0_retention_check_interval(ms(100));
    s.open().unwrap();
    s
}

fn writer(db: &Path) -> Connection {
    let c = Connection::open(db).unwrap();
    create_schema(&c);
    c
}

fn restored(replica: &Path, dir: &TempDir, name: &str) -> String {
    let out = dir.join(name);
    restore(&FileClient::new(replica), &RestoreOptions::new(&out))
        .unwrap_or_else(|e| panic!("restore: {e}"));
    assert_eq!(integrity(&out), "ok");
    dump(&out)
}

#[test]
fn the_newcomer_takes_over_and_the_first_refuses_with_a_clear_error() {
    let dir = TempDir::new("two-writers");
    let replica = dir.join("replica");
    let (a, b) = (dir.join("a.db"), dir.join("b.db"));
    let (mut ca, mut cb) = (writer(&a), writer(&b));
    let mut rng = Rng::new(1);
    let sa = store_for(&a, &replica);
    for step in 0..30 {
        workload_step(&mut ca, &mut rng, step);
    }
    let t = sa.sync(&a).unwrap();
    sa.wait_replicated(&a, Some(t), Duration::from_secs(30))
        .unwrap();
    assert_eq!(restored(&replica, &dir, "r1.db"), dump_conn(&ca));

    // A second database starts on the same replica path: it continues after A's files.
    let sb = store_for(&b, &replica);
    for step in 0..10 {
        workload_step(&mut cb, &mut rng, 1000 + step);
    }
    let t = sb.sync(&b).unwrap();
    sb.wait_replicated(&b, Some(t), Duration::from_secs(30))
        .unwrap();
    assert_eq!(restored(&replica, &dir, "r2.db"), dump_conn(&cb));

    // A writes on: it must not upload over B's lineage, and says why.
    for step in 30..40 {
        workload_step(&mut ca, &mut rng, step);
    }
    let t = sa.sync(&a).unwrap();
    let err = sa
        .wait_replicated(&a, Some(t), Duration::from_secs(5))
        .expect_err("the first replicator kept uploading over the second's files");
    let msg = err.to_string();
    assert!(msg.contains("another"), "unclear error: {msg}");
    eprintln!("the first replicator says: {msg}");

    // B goes on, and the replica restores to B, whatever A tries.
    for step in 10..20 {
        workload_step(&mut cb, &mut rng, 1000 + step);
    }
    let t = sb.sync(&b).unwrap();
    sb.wait_replicated(&b, Some(t), Duration::from_secs(30))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(restored(&replica, &dir, "r3.db"), dump_conn(&cb));
    drop(sa);
    drop(sb);
    assert_eq!(restored(&replica, &dir, "r4.db"), dump_conn(&cb));
}

#[test]
fn two_writers_at_once_never_leave_a_replica_that_restores_wrong() {
    let dir = TempDir::new("two-writers-race");
    let replica = dir.join("replica");
    let (a, b) = (dir.join("a.db"), dir.join("b.db"));
    let (mut ca, mut cb) = (writer(&a), writer(&b));
    let (sa, sb) = (store_for(&a, &replica), store_for(&b, &replica));
    let mut rng = Rng::new(2);
    for step in 0..150 {
        workload_step(&mut ca, &mut rng, step);
        workload_step(&mut cb, &mut rng, 5000 + step);
        if step % 10 == 0 {
            let _ = sa.sync(&a);
            let _ = sb.sync(&b);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let ra = sa
        .sync(&a)
        .and_then(|t| sa.wait_replicated(&a, Some(t), Duration::from_secs(3)));
    let rb = sb
        .sync(&b)
        .and_then(|t| sb.wait_replicated(&b, Some(t), Duration::from_secs(3)));
    drop(sa);
    drop(sb);
    // Whoever kept the replica, it restores to exactly that database.
    let got = restored(&replica, &dir, "r.db");
    let (da, db) = (dump_conn(&ca), dump_conn(&cb));
    assert!(
        got == da || got == db,
        "the replica restores to neither database (a: {ra:?}, b: {rb:?})"
    );
    assert!(
        ra.is_ok() != rb.is_ok(),
        "exactly one replicator should keep the replica (a: {ra:?}, b: {rb:?})"
    );
    assert_eq!(
        got == da,
        ra.is_ok(),
        "the replica holds the refused writer's database"
    );
}
