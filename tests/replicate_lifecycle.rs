//! Replication across restarts, crashes and disagreements between local state and the
//! replica; and an idle store that does nothing.

mod common;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use litestream::client::{FileClient, SNAPSHOT_LEVEL};
use litestream::restore::{restore, IntegrityCheck, RestoreOptions};
use litestream::{CompactionLevels, Db, FileInfo, Replica, ReplicaClient, Result, Store, Txid};

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

fn restore_equals(replica: &Path, out: &Path, want: &str) {
    restore(
        &FileClient::new(replica),
        &RestoreOptions::new(out).integrity_check(IntegrityCheck::Full),
    )
    .unwrap_or_else(|e| panic!("restore {}: {e}", replica.display()));
    assert_eq!(
        dump(out),
        want,
        "restored {} differs from the source",
        out.display()
    );
    if let Some(bin) = official_bin() {
        let theirs = out.with_extension("official.db");
        official_restore(&bin, &file_url(replica), &theirs, &[]);
        assert_eq!(
            dump(&theirs),
            want,
            "official restore differs from the source"
        );
    }
}

fn store_for(db: &Path, client: Arc<dyn ReplicaClient>) -> Store {
    let d = Db::new(db)
        .monitor_interval(Duration::from_millis(50))
        .replica(Replica::new(client).sync_interval(Duration::from_millis(50)));
    let mut s = Store::new(vec![d], CompactionLevels::default()).unwrap();
    s.open().unwrap();
    s
}

fn sync_and_close(mut s: Store, db: &Path) {
    s.sync(db).unwrap();
    s.wait_replicated(db, None, Duration::from_secs(30))
        .unwrap();
    let r = s.close().unwrap();
    assert!(r.is_complete(), "{:?}", r.missing());
}

#[test]
fn lost_local_state_wiped_replica_and_restored_database() {
    let dir = TempDir::new("lifecycle");
    let db = dir.join("app.db");
    let replica = dir.join("replica");
    let client: Arc<dyn ReplicaClient> = Arc::new(FileClient::new(&replica));
    let mut w = Writer::spawn(&db, 5000);
    w.cmd("mixed 1 10");
    let s = store_for(&db, client.clone());
    w.cmd("mixed 2 10");
    sync_and_close(s, &db);
    let before = client
        .ltx_files(0, Txid::ZERO, false)
        .unwrap()
        .last()
        .unwrap()
        .max_txid;

    // 1. The local state directory is lost: numbering continues after the replica.
    std::fs::remove_dir_all(dir.join(".app.db-litestream")).unwrap();
    w.cmd("mixed 3 10");
    let s = store_for(&db, client.clone());
    w.cmd("mixed 4 5");
    sync_and_close(s, &db);
    let l0 = client.ltx_files(0, Txid::ZERO, false).unwrap();
    assert!(l0.last().unwrap().max_txid > before);
    restore_equals(&replica, &dir.join("r1.db"), &dump(&db));

    // 2. The replica is wiped while the database is down: it is rebuilt from a snapshot.
    client.delete_all().unwrap();
    w.cmd("mixed 5 5");
    let s = store_for(&db, client.clone());
    sync_and_close(s, &db);
    restore_equals(&replica, &dir.join("r2.db"), &dump(&db));

    // 3. The database is restored from the replica (with its old local state still there)
    // and replication resumes on it: the replica is ahead of the local state.
    drop(w);
    let old = dump(&db);
    std::fs::remove_file(&db).unwrap();
    let _ = std::fs::remove_file(dir.join("app.db-wal"));
    let _ = std::fs::remove_file(dir.join("app.db-shm"));
    let restored = litestream::restore::restore_if_not_exists(client.as_ref(), &db).unwrap();
    assert!(restored.is_some());
    assert_eq!(dump(&db), old);
    let mut w = Writer::spawn(&db, 5000);
    let s = store_for(&db, client.clone());
    w.cmd("mixed 6 10");
    sync_and_close(s, &db);
    restore_equals(&replica, &dir.join("r3.db"), &dump(&db));

    // 4. Another database's local state points at this replica (diverged lineage with the
    // replica not ahead): a snapshot takes over, nothing is mixed.
    let other = dir.join("other.db");
    let mut w2 = Writer::spawn(&other, 5000);
    w2.cmd("mixed 42 200");
    let s = store_for(&other, Arc::new(FileClient::new(dir.join("scratch"))));
    sync_and_close(s, &other);
    let s = store_for(&other, client.clone());
    w2.cmd("mixed 43 5");
    sync_and_close(s, &other);
    restore_equals(&replica, &dir.join("r4.db"), &dump(&other));
    drop(w);
}

/// Counts every call made to the wrapped client.
#[derive(Debug)]
struct Counting {
    inner: FileClient,
    calls: AtomicU64,
}

impl ReplicaClient for Counting {
    fn kind(&self) -> &'static str {
        "counting"
    }
    fn ltx_files(&self, level: u8, seek: Txid, a: bool) -> Result<Vec<FileInfo>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.ltx_files(level, seek, a)
    }
    fn open_ltx_file(
        &self,
        level: u8,
        min: Txid,
        max: Txid,
        off: u64,
        len: Option<u64>,
    ) -> Result<Box<dyn Read + Send>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.open_ltx_file(level, min, max, off, len)
    }
    fn write_ltx_file(&self, level: u8, min: Txid, max: Txid, src: &File) -> Result<FileInfo> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.write_ltx_file(level, min, max, src)
    }
    fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.delete_ltx_files(files)
    }
    fn delete_all(&self) -> Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.delete_all()
    }
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn idle_store_makes_no_files_and_no_requests() {
    let dir = TempDir::new("idle");
    let db = dir.join("app.db");
    let replica = dir.join("replica");
    let client = Arc::new(Counting {
        inner: FileClient::new(&replica),
        calls: AtomicU64::new(0),
    });
    let mut w = Writer::spawn(&db, 5000);
    w.cmd("mixed 1 20");
    let d = Db::new(&db)
        .monitor_interval(Duration::from_millis(100))
        .checkpoint_interval(Duration::from_secs(2))
        .replica(Replica::new(client.clone()));
    // Short levels and snapshot interval: every scheduled job comes due many times in the
    // idle window below (and none is left to come due in it for the first time, as an L1
    // compaction every 30 s on the wall clock's :00 and :30 would).
    let levels = [1, 2, 3].map(Duration::from_secs);
    let mut store = Store::new(vec![d], CompactionLevels::from_intervals(&levels).unwrap())
        .unwrap()
        .snapshot_interval(Duration::from_secs(3));
    store.open().unwrap();
    w.cmd("mixed 2 20");
    store.sync(&db).unwrap();
    store
        .wait_replicated(&db, None, Duration::from_secs(10))
        .unwrap();
    // Settle: every level and the snapshot hold the database's TXID (looked at through a
    // client that is not counted), and for 5 s (past a time-based checkpoint's interval
    // and every level's) no client call, sync or checkpoint happened.
    let peek = FileClient::new(&replica);
    let newest = |level| {
        peek.ltx_files(level, Txid::ZERO, false)
            .unwrap()
            .last()
            .map(|f| f.max_txid)
    };
    let quiet = Duration::from_secs(5);
    let mut last: Option<(_, Instant)> = None;
    let settled = wait_until(Duration::from_secs(60), || {
        let st = &store.status()[0];
        let t = st.local_txid;
        let caught_up = st.replicas[0].remote_txid == Some(t)
            && [0, 1, 2, 3, SNAPSHOT_LEVEL]
                .into_iter()
                .all(|l| newest(l) == Some(t));
        let now = (
            t,
            client.calls.load(Ordering::SeqCst),
            st.sync_count,
            st.checkpoint_count,
        );
        match last {
            Some((prev, since)) if caught_up && prev == now => since.elapsed() >= quiet,
            _ => {
                last = caught_up.then(|| (now, Instant::now()));
                false
            }
        }
    });
    assert!(
        settled,
        "did not settle: {:?}, levels {:?}",
        store.status()[0],
        [0, 1, 2, 3, SNAPSHOT_LEVEL].map(newest)
    );
    let calls = client.calls.load(Ordering::SeqCst);
    let files = (
        all_files(&replica),
        all_files(&dir.join(".app.db-litestream")),
    );
    let wal = std::fs::metadata(dir.join("app.db-wal"))
        .unwrap()
        .modified()
        .unwrap();
    std::thread::sleep(Duration::from_secs(30));
    assert_eq!(
        client.calls.load(Ordering::SeqCst),
        calls,
        "client calls while idle"
    );
    assert_eq!(
        (
            all_files(&replica),
            all_files(&dir.join(".app.db-litestream"))
        ),
        files,
        "files while idle"
    );
    assert_eq!(
        std::fs::metadata(dir.join("app.db-wal"))
            .unwrap()
            .modified()
            .unwrap(),
        wal
    );
    // And it still replicates when writes resume.
    w.cmd("mixed 3 3");
    let t = store.sync(&db).unwrap();
    store
        .wait_replicated(&db, Some(t), Duration::from_secs(10))
        .unwrap();
    assert!(store.close().unwrap().is_complete());
}

fn spawn_replicate(db: &Path, url: &str, log: &Path) -> Child {
    Command::new(our_bin())
        .args(["replicate"])
        .arg(db)
        .arg(url)
        .env("LOG_LEVEL", "debug")
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .spawn()
        .unwrap()
}

fn kill9_rounds(rounds: u32) {
    let dir = TempDir::new("kill9");
    let db = dir.join("app.db");
    let replica = dir.join("replica");
    let url = file_url(&replica);
    let log = dir.join("replicate.log");
    let mut w = Writer::spawn(&db, 5000);
    w.cmd("mixed 1 5");
    // The writer keeps writing from its own thread for the whole test.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut i = 0u64;
        while !stop2.load(Ordering::SeqCst) {
            if i % 40 == 17 {
                w.cmd(&format!("big {i}"));
            } else if i % 40 == 33 {
                w.cmd("vacuum");
            } else {
                w.cmd(&format!("mixed {} 3", 1000 + i));
            }
            i += 1;
            std::thread::sleep(Duration::from_millis(30));
        }
        w
    });
    let mut rng = Rng::new(rounds as u64);
    for round in 0..rounds {
        let mut child = spawn_replicate(&db, &url, &log);
        std::thread::sleep(Duration::from_millis(200 + rng.below(2800)));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if round % 5 == 4 {
            eprintln!(
                "kill -9 round {round}: replica at {}",
                max_txid_in(&replica.join("ltx/0"))
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    let w = writer.join().unwrap();
    // Catch up and stop cleanly.
    let mut child = spawn_replicate(&db, &url, &log);
    let local = meta_l0_dir(&db);
    let caught_up = wait_until(Duration::from_secs(60), || {
        let l = max_txid_in(&local);
        l > 0 && max_txid_in(&replica.join("ltx/0")) >= l && {
            std::thread::sleep(Duration::from_millis(1500));
            max_txid_in(&local) == l && max_txid_in(&replica.join("ltx/0")) >= l
        }
    });
    assert!(
        terminate(&mut child, Duration::from_secs(40)),
        "replicate did not stop cleanly"
    );
    assert!(
        caught_up,
        "replica never caught up; log: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let want = dump(&db);
    drop(w);
    restore_equals(&replica, &dir.join("restored.db"), &want);
}

#[test]
fn kill_9_at_random_moments_loses_nothing() {
    kill9_rounds(20);
}

#[test]
#[ignore = "long: 200 kill -9 rounds"]
fn kill_9_many_rounds() {
    kill9_rounds(200);
}

#[test]
fn second_signal_aborts_a_shutdown_that_cannot_finish() {
    let dir = TempDir::new("signals2");
    let db = dir.join("app.db");
    let mut w = Writer::spawn(&db, 5000);
    w.cmd("mixed 1 3");
    // A replica that can never be written: the graceful shutdown would wait 30 s.
    let blocker = dir.join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let log = dir.join("log");
    let mut child = spawn_replicate(&db, &file_url(&blocker.join("replica")), &log);
    // Up, with its signal handlers (installed before the store opens): a SIGTERM before
    // that would end it at once, as "exited before the second signal".
    assert!(
        wait_until(Duration::from_secs(30), || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("replicating ")),
        "replicate never started: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited before the second signal"
    );
    let t0 = Instant::now();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    assert!(
        wait_until(Duration::from_secs(5), || child
            .try_wait()
            .unwrap()
            .is_some()),
        "second signal did not abort"
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(
        !child.wait().unwrap().success(),
        "an aborted shutdown must not exit 0"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("shutting down"), "{text}");
}

#[test]
fn second_signal_aborts_and_first_one_flushes() {
    let dir = TempDir::new("signals");
    let db = dir.join("app.db");
    let replica = dir.join("replica");
    let mut w = Writer::spawn(&db, 5000);
    w.cmd("mixed 1 10");
    let log = dir.join("log");
    let mut child = spawn_replicate(&db, &file_url(&replica), &log);
    let started = Instant::now();
    assert!(wait_until(Duration::from_secs(10), || max_txid_in(
        &replica.join("ltx/0")
    ) >= 1));
    w.cmd("mixed 2 10");
    // SIGTERM right after a write: the final sync must still ship it.
    assert!(
        terminate(&mut child, Duration::from_secs(40)),
        "exit status not success"
    );
    eprintln!("replicate ran {:?}", started.elapsed());
    restore_equals(&replica, &dir.join("out.db"), &dump(&db));
}

/// SQLite keeps a shared POSIX lock on the database file for as long as a connection in
/// WAL mode is open, and a process loses all its POSIX locks on a file when it closes
/// *any* descriptor of it. If the engine ever opened and closed the database file itself
/// (say, to flush it before a checkpoint's barrier), the application's last connection
/// would find no one else there when it closes, checkpoint in exclusive mode and delete
/// the WAL and the shared-memory file under our open connections.
#[test]
fn checkpoints_keep_the_process_locks_on_the_database() {
    let dir = TempDir::new("locks");
    let db = dir.join("app.db");
    let wal = dir.join("app.db-wal");
    let mut w = Writer::spawn(&db, 5000);
    w.cmd("mixed 1 20");
    let d = Db::new(&db)
        .monitor_interval(Duration::from_millis(50))
        .checkpoint_interval(Duration::from_millis(100))
        .replica(Replica::new(Arc::new(FileClient::new(dir.join("replica")))));
    let mut store = Store::new(vec![d], CompactionLevels::default()).unwrap();
    store.open().unwrap();
    let checkpoints = |s: &Store| s.status()[0].checkpoint_count;
    let mut seed = 2;
    let done = wait_until(Duration::from_secs(30), || {
        seed += 1;
        w.cmd(&format!("mixed {seed} 5"));
        store.sync(&db).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        checkpoints(&store) >= 3
    });
    assert!(done, "no checkpoints: {:?}", store.status());
    // The application closes its only connection while we still replicate.
    drop(w);
    assert!(
        wal.exists(),
        "the application's last close deleted the WAL under our connections: the engine dropped the process's locks on the database file"
    );
    let t = store.sync(&db).unwrap();
    store
        .wait_replicated(&db, Some(t), Duration::from_secs(10))
        .unwrap();
    assert!(store.close().unwrap().is_complete());
    restore_equals(&dir.join("replica"), &dir.join("restored.db"), &dump(&db));
}

/// A replica whose levels 0 and 9 another tool trimmed (a lifecycle rule), so that its
/// level 1 reaches past both: a database that starts replicating there must number its
/// lineage after every level, or the old level 1 file shadows it in every restore.
#[test]
fn a_new_lineage_starts_after_every_level_of_the_replica() {
    let dir = TempDir::new("lineage-levels");
    let replica = dir.join("replica");
    let one_second = CompactionLevels::from_intervals(&[Duration::from_secs(1)]).unwrap();
    let replicate = |db: &Path, steps: u64, seed: u64| {
        let mut conn = make_db(db, seed, 3);
        let d = Db::new(db)
            .monitor_interval(Duration::from_millis(50))
            .replica(Replica::new(Arc::new(FileClient::new(&replica))));
        let mut s = Store::new(vec![d], one_second.clone()).unwrap();
        s.open().unwrap();
        let mut rng = Rng::new(seed + 1);
        for i in 0..steps {
            workload_step(&mut conn, &mut rng, i);
            s.sync(db).unwrap();
        }
        s
    };
    // The first database, compacted into level 1.
    let a = dir.join("a.db");
    let s = replicate(&a, 30, 1);
    let l1 = replica.join("ltx/1");
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read_dir(&l1)
            .map(|d| d.count() > 0)
            .unwrap_or(false)),
        "no level 1 file"
    );
    sync_and_close(s, &a);
    // (Level 9 may not exist yet: the first snapshot waits a second after the open.)
    for level in ["ltx/0", "ltx/9"] {
        let Ok(files) = std::fs::read_dir(replica.join(level)) else {
            continue;
        };
        for f in files {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
    }
    // Another database takes the replica over, with fewer transactions than the first.
    let b = dir.join("b.db");
    let s = replicate(&b, 3, 7);
    sync_and_close(s, &b);
    restore_equals(&replica, &dir.join("restored.db"), &dump(&b));
}

/// A configured database that never appeared holds nothing to replicate: closing the
/// store, or stopping or removing it at runtime, returns at once and counts as complete
/// instead of waiting out the whole shutdown timeout and reporting a failure.
#[test]
fn a_database_that_never_appeared_does_not_hold_up_shutdown() {
    let dir = TempDir::new("never-appeared");
    let missing = dir.join("missing.db");
    let other = dir.join("other.db");
    let replica = |name: &str| {
        Replica::new(Arc::new(FileClient::new(dir.join(name))))
            .sync_interval(Duration::from_millis(50))
    };
    let mut store = Store::new(
        vec![
            Db::new(&missing).replica(replica("r1")),
            Db::new(&other).replica(replica("r2")),
        ],
        CompactionLevels::default(),
    )
    .unwrap()
    .shutdown_timeout(Duration::from_secs(60));
    store.open().unwrap();
    let h = store.handle();
    let started = Instant::now();
    h.stop(&missing, Duration::from_secs(60)).unwrap();
    assert!(h.start(&missing).unwrap());
    h.remove(&missing, Duration::from_secs(60)).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stop and remove waited {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let report = store.close().unwrap();
    assert!(report.is_complete(), "{:?}", report.missing());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "close waited {:?}",
        started.elapsed()
    );
}

/// A database that exists but cannot be opened (its state directory's path is taken by a
/// file) holds changes nobody replicated: the close report says so.
#[test]
fn a_database_that_cannot_open_is_reported_not_replicated() {
    let dir = TempDir::new("cannot-open");
    let db = dir.join("app.db");
    let _c = make_db(&db, 1, 5);
    let blocked = dir.join("state-is-a-file");
    std::fs::write(&blocked, b"not a directory").unwrap();
    let d = Db::new(&db)
        .monitor_interval(Duration::from_millis(50))
        .meta_path(&blocked)
        .replica(Replica::new(Arc::new(FileClient::new(dir.join("replica")))));
    let mut store = Store::new(vec![d], CompactionLevels::default())
        .unwrap()
        .shutdown_timeout(Duration::from_secs(2));
    store.open().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || store.status()[0]
            .error
            .is_some()),
        "the open never failed"
    );
    let report = store.close().unwrap();
    assert!(!report.is_complete(), "{:?}", report.dbs);
}
