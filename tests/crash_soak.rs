//! Crash soak: a child process runs a `Store` and writes to its database while compaction,
//! snapshots, checkpoints and retention run every few hundred milliseconds; the parent
//! kills it with SIGKILL at a random moment, restores the replica, and checks it, then
//! starts the next child on the same database and replica.
//!
//! Every restore must pass `integrity_check`, hold a contiguous prefix of the database's
//! transactions (its ledger rows equal the database's, and its data matches the digest its
//! last transaction recorded), and include every transaction `wait_replicated` confirmed.
//!
//! `cargo test --test crash_soak` runs 30 rounds; `LITESTREAM_CRASH_ROUNDS=500` by hand.
//! (A test without the libtest harness: the same binary is the child, with `--child`.)

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{integrity, Rng, TempDir};
use litestream::restore::{restore, RestoreOptions};
use litestream::{CompactionLevels, Db, FileClient, Replica, Store};
use rusqlite::Connection;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(Path::new(&args[i + 1]));
        return;
    }
    // `cargo test other_name` passes its filter here: run only when it names this test.
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"crash_soak".contains(a.as_str()))
        || args.iter().any(|a| a == "--list")
    {
        return;
    }
    let rounds = std::env::var("LITESTREAM_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    soak(rounds);
}

const SCHEMA: &str = "PRAGMA journal_mode=WAL;
    CREATE TABLE IF NOT EXISTS data(id INTEGER PRIMARY KEY, v INTEGER NOT NULL, p BLOB);
    CREATE TABLE IF NOT EXISTS ledger(step INTEGER PRIMARY KEY, n INTEGER, sv INTEGER, sp INTEGER);";

/// The digest a transaction records of the data it leaves: rows, sum of values, bytes.
const DIGEST: &str = "SELECT count(*), coalesce(sum(v), 0), coalesce(sum(length(p)), 0) FROM data";

/// The child: replicates `dir/app.db` to `dir/replica` and writes until killed, printing
/// `confirmed STEP` each time `wait_replicated` confirms a step.
fn child(dir: &Path) {
    let db = dir.join("app.db");
    let mut conn = Connection::open(&db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    let ms = Duration::from_millis;
    let levels = CompactionLevels::from_intervals(&[ms(200), ms(600), ms(1500)]).unwrap();
    let replica = Replica::new(std::sync::Arc::new(FileClient::new(dir.join("replica"))))
        .sync_interval(ms(20));
    let mut store = Store::new(
        vec![Db::new(&db)
            .monitor_interval(ms(25))
            .checkpoint_interval(ms(250))
            .min_checkpoint_pages(40)
            .truncate_pages(Some(800))
            .replica(replica)],
        levels,
    )
    .unwrap()
    .snapshot_interval(ms(700))
    .snapshot_retention(ms(1500))
    .l0_retention(ms(100))
    .l0_retention_check_interval(ms(100));
    store.open().unwrap();
    let mut step: i64 = conn
        .query_row("SELECT coalesce(max(step), 0) FROM ledger", [], |r| {
            r.get(0)
        })
        .unwrap();
    let mut out = std::io::stdout();
    loop {
        step += 1;
        let mut rng = Rng::new(step as u64);
        let tx = conn.transaction().unwrap();
        let rows = if step % 50 == 0 {
            400
        } else {
            1 + rng.below(20)
        };
        for _ in 0..rows {
            let n = 50 + rng.below(1500) as usize;
            let p = rng.bytes(n);
            tx.execute(
                "INSERT INTO data(v, p) VALUES (?1, ?2)",
                rusqlite::params![rng.below(1000) as i64, p],
            )
            .unwrap();
        }
        tx.execute(
            "UPDATE data SET v = v + 1 WHERE id % 13 = ?1",
            [rng.below(13) as i64],
        )
        .unwrap();
        tx.execute(
            "DELETE FROM data WHERE id < (SELECT max(id) FROM data) - 3000 OR id % 97 = ?1",
            [rng.below(97) as i64],
        )
        .unwrap();
        tx.execute(
            &format!("INSERT INTO ledger(step, n, sv, sp) SELECT ?1, * FROM ({DIGEST})"),
            [step],
        )
        .unwrap();
        tx.commit().unwrap();
        if step % 5 == 0 {
            let t = store.sync(&db).unwrap();
            if store
                .wait_replicated(&db, Some(t), Duration::from_secs(20))
                .is_ok()
            {
                let _ = writeln!(out, "confirmed {step}");
                let _ = out.flush();
            }
        }
        std::thread::sleep(ms(2));
    }
}

/// The ledger of a database: `(step, n, sv, sp)` in order.
fn ledger(path: &Path) -> Vec<(i64, i64, i64, i64)> {
    let c = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut s = c
        .prepare("SELECT step, n, sv, sp FROM ledger ORDER BY step")
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// Checks a restore: integrity, a contiguous prefix of `committed`, data matching its
/// last digest, and every confirmed step. Returns its last step.
fn check(out: &Path, committed: &[(i64, i64, i64, i64)], confirmed: i64, round: u32) -> i64 {
    assert_eq!(integrity(out), "ok", "round {round}: integrity_check");
    let got = ledger(out);
    let last = got.last().map(|r| r.0).unwrap_or(0);
    assert!(
        last >= confirmed,
        "round {round}: restored through step {last}, but step {confirmed} was confirmed replicated"
    );
    assert!(
        got.len() <= committed.len() && got[..] == committed[..got.len()],
        "round {round}: the restored ledger is not a prefix of the database's"
    );
    let c = Connection::open_with_flags(out, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let digest: (i64, i64, i64) = c
        .query_row(DIGEST, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    if let Some(&(_, n, sv, sp)) = got.last() {
        assert_eq!(
            digest,
            (n, sv, sp),
            "round {round}: the restored data is not the state its last transaction committed"
        );
    }
    last
}

fn soak(rounds: u32) {
    let dir = TempDir::new("crash-soak");
    let replica = dir.join("replica");
    let mut rng = Rng::new(
        std::env::var("LITESTREAM_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(rounds as u64),
    );
    let mut confirmed = 0i64;
    let mut restores = 0u32;
    let started = Instant::now();
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--child")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(|l| l.ok())
                .filter_map(|l| l.strip_prefix("confirmed ")?.parse::<i64>().ok())
                .max()
        });
        std::thread::sleep(Duration::from_millis(100 + rng.below(1400)));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if let Some(c) = reader.join().unwrap() {
            confirmed = confirmed.max(c);
        }
        // Restore what the replica holds at this instant.
        let out: PathBuf = dir.join(format!("restored-{round}.db"));
        match restore(&FileClient::new(&replica), &RestoreOptions::new(&out)) {
            Ok(_) => {}
            Err(e) if e.is_no_backup() && confirmed == 0 => continue,
            Err(e) => panic!("round {round}: restore failed: {e}"),
        }
        // The database as committed (SQLite recovers it from the killed writer's WAL).
        let committed = ledger(&dir.join("app.db"));
        let last = check(&out, &committed, confirmed, round);
        restores += 1;
        let _ = std::fs::remove_file(&out);
        if round % 25 == 24 {
            eprintln!(
                "crash soak round {}: restored through step {last} of {}, confirmed {confirmed}, {:?}",
                round + 1,
                committed.len(),
                started.elapsed()
            );
        }
    }
    assert!(
        confirmed > 0,
        "no transaction was ever confirmed replicated"
    );
    eprintln!(
        "FIGURE crash_soak: {rounds} kill -9 rounds, {restores} restores checked, 0 lost; last confirmed step {confirmed}; {:?}",
        started.elapsed()
    );
}
