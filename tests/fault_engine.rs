//! The engine against a replica that fails: every call of a replicate → compact →
//! snapshot → retention run is, in turn, made to fail, lose its answer after taking
//! effect, or hang; and the replica goes down under write load and comes back. Each run
//! checks that nothing committed is lost: every `wait_replicated` confirmation restores,
//! at that instant, to exactly the database, and the final replica restores equal.
//!
//! The store runs on the wall clock (compaction every 100/200 ms, snapshots every 300 ms,
//! retention at 50 ms), so "call k" is the k-th call a run makes to its replica, whichever
//! it is; a fault-free run measures how many there are. `LITESTREAM_FAULT_STRIDE=n` tries
//! every n-th index only (default 1: every one).

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use litestream::restore::{restore, RestoreOptions};
use litestream::testing::{Call, Fault, FaultClient, Injected, MemoryClient};
use litestream::{CompactionLevels, Db, Replica, Store, Txid};
use rusqlite::Connection;

/// How long a scenario writes before closing its store.
const WRITE_FOR: Duration = Duration::from_millis(1200);

/// What a scenario did.
#[derive(Debug, Default)]
struct Outcome {
    /// Calls made to the replica.
    calls: u64,
    injected: Vec<Injected>,
    /// `wait_replicated` confirmations, each checked by a restore of that instant.
    confirmed: u64,
    /// Files written at each level (0..=9) and files deleted, by the end.
    level_writes: [u64; 10],
    deletes: u64,
}

fn store_for(db: &Path, client: Arc<FaultClient>) -> Store {
    let ms = Duration::from_millis;
    let levels = CompactionLevels::from_intervals(&[ms(100), ms(200)]).unwrap();
    Store::new(
        vec![Db::new(db)
            .monitor_interval(ms(20))
            .checkpoint_interval(ms(150))
            .min_checkpoint_pages(30)
            .replica(Replica::new(client).sync_interval(ms(10)))],
        levels,
    )
    .unwrap()
    .snapshot_interval(ms(300))
    .snapshot_retention(ms(300))
    .l0_retention(ms(50))
    .l0_retention_check_interval(ms(50))
    .shutdown_timeout(Duration::from_secs(30))
}

/// Restores `client` into a fresh file and checks it passes `integrity_check` and equals
/// `want`; returns its TXID.
fn restore_equals(client: &MemoryClient, dir: &TempDir, want: &str, what: &str) -> Txid {
    static N: AtomicU64 = AtomicU64::new(0);
    let out = dir.join(format!("restored-{}.db", N.fetch_add(1, Ordering::Relaxed)));
    let report = restore(client, &RestoreOptions::new(&out))
        .unwrap_or_else(|e| panic!("{what}: restore failed: {e}\nreplica: {:?}", client.files()));
    assert_eq!(integrity(&out), "ok", "{what}: integrity_check");
    assert!(
        dump(&out) == want,
        "{what}: the restored database differs from the committed one"
    );
    let _ = std::fs::remove_file(&out);
    report.txid
}

/// Writes for [`WRITE_FOR`] (and until every rule fired), confirming replication every
/// few transactions, then closes the store and checks the replica.
fn scenario(rules: &[(Call, u64, Fault)], what: &str) -> Outcome {
    scenario_until(rules, what, |_, _| true)
}

/// [`scenario`], writing on (60 s at most) until `done(replica, confirmations)` holds too.
fn scenario_until(
    rules: &[(Call, u64, Fault)],
    what: &str,
    done: impl Fn(&MemoryClient, u64) -> bool,
) -> Outcome {
    let dir = TempDir::new("fault-engine");
    let db = dir.join("app.db");
    let mut conn = Connection::open(&db).unwrap();
    create_schema(&conn);
    let memory = Arc::new(MemoryClient::new());
    let faulty = Arc::new(FaultClient::new(memory.clone()));
    for &(call, n, fault) in rules {
        faulty.inject(call, n, fault);
    }
    let mut store = store_for(&db, faulty.clone());
    store.open().unwrap();
    let mut rng = Rng::new(7);
    let mut out = Outcome::default();
    let start = Instant::now();
    let mut step = 0u64;
    loop {
        let fired = faulty.injected().len() >= rules.len();
        if start.elapsed() >= WRITE_FOR && fired && done(&memory, out.confirmed) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: the faults never fired or the run never got where it should: {:?} \
             after {} calls, {} confirmed, replica {:?}, {} deletes",
            faulty.injected(),
            faulty.calls(Call::Any),
            out.confirmed,
            memory.files(),
            memory.deletes()
        );
        workload_step(&mut conn, &mut rng, step);
        if step % 4 == 3 {
            let t = store.sync(&db).unwrap();
            let got = store
                .wait_replicated(&db, Some(t), Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("{what}: step {step}: {e}"));
            // Confirmed: a backup taken right now restores to exactly the database.
            let want = dump_conn(&conn);
            let txid = restore_equals(&memory.copy(), &dir, &want, &format!("{what}: step {step}"));
            assert!(txid >= got, "{what}: confirmed {got}, restored {txid}");
            out.confirmed += 1;
        }
        step += 1;
        std::thread::sleep(Duration::from_millis(15));
    }
    let report = store.close().unwrap();
    assert!(
        report.is_complete(),
        "{what}: close left work: {:?}",
        report.missing()
    );
    let want = dump_conn(&conn);
    restore_equals(&memory, &dir, &want, &format!("{what}: after close"));
    out.calls = faulty.calls(Call::Any);
    out.injected = faulty.injected();
    for f in memory.files() {
        out.level_writes[f.level as usize] += 1;
    }
    out.deletes = memory.deletes();
    out
}

/// Runs `scenario` for every index in `0..n` (by the stride) with `fault`, a few at a
/// time; returns how many faults fired.
fn every_index(n: u64, fault: Fault, kind: &str) -> u64 {
    let stride: u64 = std::env::var("LITESTREAM_FAULT_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    let next = Arc::new(Mutex::new((0..n).step_by(stride as usize)));
    let fired = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (next, fired) = (next.clone(), fired.clone());
            let kind = kind.to_string();
            std::thread::spawn(move || loop {
                let Some(k) = next.lock().unwrap().next() else {
                    return;
                };
                let o = scenario(&[(Call::Any, k, fault)], &format!("{kind} at call {k}"));
                assert_eq!(o.injected.len(), 1, "{kind} at call {k}: {:?}", o.injected);
                fired.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    let mut panicked = None;
    for t in threads {
        if let Err(e) = t.join() {
            panicked.get_or_insert(e);
        }
    }
    if let Some(e) = panicked {
        std::panic::resume_unwind(e);
    }
    let n = fired.load(Ordering::SeqCst);
    eprintln!("FIGURE fault_engine {kind}: {n} runs, each with one fault, 0 transactions lost");
    n
}

/// The number of calls a fault-free run makes, after checking it covers every phase. The
/// run writes on until every phase has happened (on a loaded machine the first snapshot and
/// retention may come after [`WRITE_FOR`]), so the indices tried cover them all.
fn baseline() -> u64 {
    static CALLS: Mutex<Option<u64>> = Mutex::new(None);
    // A test that panicked here leaves the value unset: the next one measures again.
    let mut c = CALLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = *c {
        return n;
    }
    let o = scenario_until(&[], "no fault", |memory, confirmed| {
        let files = memory.files();
        let at = |level| files.iter().any(|f| f.level == level);
        confirmed >= 5 && (at(1) || at(2)) && at(9) && memory.deletes() > 0
    });
    assert!(o.confirmed >= 5, "{o:?}");
    assert!(
        o.level_writes[1] + o.level_writes[2] > 0,
        "no compaction: {o:?}"
    );
    assert!(o.level_writes[9] > 0, "no snapshot: {o:?}");
    assert!(o.deletes > 0, "no retention: {o:?}");
    eprintln!("fault-free run: {o:?}");
    *c = Some(o.calls);
    o.calls
}

#[test]
fn every_call_failing_once_loses_nothing() {
    every_index(baseline(), Fault::Fail, "fail");
}

#[test]
fn every_call_losing_its_answer_once_loses_nothing() {
    // Writes and deletes take effect, their answers are lost; reads break half-way.
    every_index(baseline(), Fault::Half, "half");
}

#[test]
fn every_call_hanging_once_loses_nothing() {
    every_index(baseline(), Fault::Hang(Duration::from_millis(300)), "hang");
}

#[test]
fn refused_uploads_and_deletes_are_retried_later() {
    // A final error (a 403) on the first few writes and deletes of every kind.
    let mut rules = Vec::new();
    for n in 0..3 {
        rules.push((Call::Write, n * 5, Fault::Refuse));
        rules.push((Call::Delete, n, Fault::Refuse));
    }
    let o = scenario(&rules, "refusals");
    assert_eq!(o.injected.len(), rules.len(), "{o:?}");
}

#[test]
fn a_replica_down_under_write_load_catches_up_and_loses_nothing() {
    let dir = TempDir::new("fault-outage");
    let db = dir.join("app.db");
    let mut conn = Connection::open(&db).unwrap();
    create_schema(&conn);
    let memory = Arc::new(MemoryClient::new());
    let faulty = Arc::new(FaultClient::new(memory.clone()));
    faulty.latency(Call::Any, Duration::from_millis(5));
    let mut store = store_for(&db, faulty.clone());
    store.open().unwrap();
    let mut rng = Rng::new(11);
    for step in 0..20 {
        workload_step(&mut conn, &mut rng, step);
    }
    let before = store.sync(&db).unwrap();
    store
        .wait_replicated(&db, Some(before), Duration::from_secs(30))
        .unwrap();
    // Down for a while under writes: nothing new is confirmed, nothing is lost.
    faulty.set_down(true);
    let down_at = faulty.calls(Call::Any);
    for step in 20..80 {
        workload_step(&mut conn, &mut rng, step);
        std::thread::sleep(Duration::from_millis(10));
    }
    let during = store.sync(&db).unwrap();
    assert!(store
        .wait_replicated(&db, Some(during), Duration::from_millis(300))
        .is_err());
    let refused = faulty.calls(Call::Any) - down_at;
    assert!(refused > 0);
    faulty.set_down(false);
    // Back: it catches up by itself (no forced sync), within the back-off.
    store
        .wait_replicated(&db, Some(during), Duration::from_secs(90))
        .unwrap();
    let want = dump_conn(&conn);
    restore_equals(&memory.copy(), &dir, &want, "after the outage");
    assert!(store.close().unwrap().is_complete());
    restore_equals(&memory, &dir, &want, "after close");
    eprintln!(
        "FIGURE fault_engine outage: {refused} calls refused while down, 0 transactions lost"
    );
}
