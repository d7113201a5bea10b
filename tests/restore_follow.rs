//! `restore -f`: our follower keeps a copy of a replica the official binary is writing up to
//! date under a writer, while a reader holds it open read-only and must always see whole
//! transactions; killed with SIGKILL and restarted it resumes; SIGINT stops it cleanly; at
//! the end the copy equals the source. The library call follows the same way.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use litestream::client::FileClient;
use litestream::restore::{follow, read_txid, FollowOptions};
use litestream::ReplicaClient;
use rusqlite::{Connection, OpenFlags};

/// A source replicated by the official binary to a file replica.
struct Source {
    db: std::path::PathBuf,
    replica: std::path::PathBuf,
    child: Child,
}

impl Drop for Source {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_source(dir: &TempDir, bin: &Path) -> Source {
    let db = dir.join("app.db");
    let replica = dir.join("replica");
    let cfg = dir.join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:
  - path: {}
    monitor-interval: 100ms
    checkpoint-interval: 2s
    replica:
      type: file
      path: {}
      sync-interval: 100ms
levels:
  - interval: 3s
",
            db.display(),
            replica.display()
        ),
    )
    .unwrap();
    let conn = Connection::open(&db).unwrap();
    create_schema(&conn);
    conn.execute_batch("CREATE TABLE pairs(id INTEGER PRIMARY KEY, a INTEGER NOT NULL);")
        .unwrap();
    drop(conn);
    let child = official_cmd(bin)
        .args(["replicate", "-config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("replicate.log")).unwrap())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || max_txid_in(&meta_l0_dir(&db))
            >= 1),
        "the official binary replicated nothing"
    );
    Source { db, replica, child }
}

/// One transaction that keeps `sum(a) = 0` and an even row count, plus workload churn.
fn write_step(conn: &mut Connection, rng: &mut Rng, step: u64) {
    workload_step(conn, rng, step);
    let x = 1 + rng.below(1000) as i64;
    let tx = conn.transaction().unwrap();
    tx.execute("INSERT INTO pairs(a) VALUES (?1)", [x]).unwrap();
    tx.execute("INSERT INTO pairs(a) VALUES (?1)", [-x])
        .unwrap();
    tx.commit().unwrap();
}

/// Reads the follower's copy read-only in a loop; every read must be a whole state.
fn reader(path: std::path::PathBuf, done: Arc<AtomicBool>, reads: Arc<AtomicU64>) {
    while !done.load(Ordering::SeqCst) {
        if !path.exists() {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .unwrap();
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        for _ in 0..20 {
            let r: rusqlite::Result<(String, i64, i64)> = (|| {
                conn.execute_batch("BEGIN")?;
                let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
                let (sum, n): (i64, i64) =
                    conn.query_row("SELECT coalesce(sum(a), 0), count(*) FROM pairs", [], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?;
                conn.execute_batch("COMMIT")?;
                Ok((ok, sum, n))
            })();
            match r {
                Ok((ok, sum, n)) => {
                    assert_eq!(ok, "ok", "a reader saw a damaged database");
                    assert_eq!((sum, n % 2), (0, 0), "a reader saw half a transaction");
                    reads.fetch_add(1, Ordering::SeqCst);
                }
                // A follower killed mid-file leaves a hot journal a read-only connection
                // cannot roll back; the restarted follower does.
                Err(e)
                    if e.to_string().contains("readonly")
                        || e.to_string().contains("read-only") =>
                {
                    let _ = conn.execute_batch("ROLLBACK");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("reader: {e}"),
            }
        }
    }
}

fn copy_equals(out: &Path, want: &str) -> bool {
    let Ok(conn) = Connection::open_with_flags(out, OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return false;
    };
    let _ = conn.busy_timeout(Duration::from_secs(10));
    dump_conn(&conn) == want
}

fn spawn_follower(dir: &TempDir, out: &Path, replica: &Path, n: u32) -> Child {
    std::process::Command::new(our_bin())
        .args(["restore", "-f", "-follow-interval", "100ms", "-o"])
        .arg(out)
        .arg(format!("file://{}", replica.display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("follow-{n}.log"))).unwrap())
        .spawn()
        .unwrap()
}

#[test]
fn cli_follower_survives_kill_9_and_readers_see_whole_transactions() {
    let Some(bin) = official_bin() else { return };
    let dir = TempDir::new("follow-cli");
    let mut src = start_source(&dir, &bin);
    let out = dir.join("copy.db");
    let mut conn = Connection::open(&src.db).unwrap();
    let mut rng = Rng::new(11);
    for step in 0..5 {
        write_step(&mut conn, &mut rng, step);
    }

    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let rd = {
        let (out, done, reads) = (out.clone(), done.clone(), reads.clone());
        std::thread::spawn(move || reader(out, done, reads))
    };

    let mut follower = spawn_follower(&dir, &out, &src.replica, 0);
    assert!(
        wait_until(Duration::from_secs(30), || read_txid(&out)
            .ok()
            .flatten()
            .is_some()
            && out.exists()),
        "the follower never restored"
    );
    let mut kills = 0;
    for step in 5..120u64 {
        match step {
            40 => big_transaction(&mut conn, &mut rng),
            _ => write_step(&mut conn, &mut rng, step),
        }
        std::thread::sleep(Duration::from_millis(30));
        if step % 30 == 0 {
            follower.kill().unwrap(); // SIGKILL, wherever it is
            follower.wait().unwrap();
            kills += 1;
            follower = spawn_follower(&dir, &out, &src.replica, kills);
        }
    }
    let want = dump(&src.db);
    assert!(
        wait_until(Duration::from_secs(60), || copy_equals(&out, &want)),
        "the follower never caught up with the source; see {}",
        dir.path().display()
    );
    let before = read_txid(&out).unwrap().unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-INT", &follower.id().to_string()])
        .status();
    let status = follower.wait().unwrap();
    assert!(status.success(), "SIGINT: {status:?}");
    let read = wait_until(Duration::from_secs(30), || reads.load(Ordering::SeqCst) > 0);
    done.store(true, Ordering::SeqCst);
    rd.join().expect("the reader failed");
    assert!(read, "the reader never read");
    assert!(kills >= 3);
    assert_eq!(read_txid(&out).unwrap(), Some(before));
    assert_eq!(integrity(&out), "ok");
    assert!(!litestream::client::FileClient::new(&src.replica)
        .ltx_files(0, litestream::Txid::ZERO, false)
        .unwrap()
        .is_empty());
    terminate(&mut src.child, Duration::from_secs(10));
}

#[test]
fn library_follow_applies_new_files_until_stopped() {
    let Some(bin) = official_bin() else { return };
    let dir = TempDir::new("follow-lib");
    let mut src = start_source(&dir, &bin);
    let out = dir.join("copy.db");
    let mut conn = Connection::open(&src.db).unwrap();
    let mut rng = Rng::new(12);
    for step in 0..5 {
        write_step(&mut conn, &mut rng, step);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let th = {
        let (stop, out, replica) = (stop.clone(), out.clone(), src.replica.clone());
        std::thread::spawn(move || {
            let client = FileClient::new(replica);
            let mut o = FollowOptions::new(out);
            o.interval = Duration::from_millis(100);
            follow(&client, &o, &stop)
        })
    };
    // A reader in the follower's own process: its connections open and close while the
    // follower holds SQLite's lock (closing a descriptor must not drop that lock).
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let rd = {
        let (out, done, reads) = (out.clone(), done.clone(), reads.clone());
        std::thread::spawn(move || reader(out, done, reads))
    };
    for step in 5..60 {
        write_step(&mut conn, &mut rng, step);
        std::thread::sleep(Duration::from_millis(30));
    }
    let want = dump(&src.db);
    assert!(
        wait_until(Duration::from_secs(60), || out.exists()
            && copy_equals(&out, &want)),
        "the library follower never caught up"
    );
    // The reader looks for the file every 20 ms: give it the time to read once.
    let read = wait_until(Duration::from_secs(30), || reads.load(Ordering::SeqCst) > 0);
    done.store(true, Ordering::SeqCst);
    rd.join().expect("the in-process reader failed");
    assert!(read, "the reader never read");
    stop.store(true, Ordering::SeqCst);
    let r = th.join().unwrap().expect("follow");
    assert!(!r.resumed);
    assert!(r.files_applied > 0);
    assert_eq!(read_txid(&out).unwrap(), Some(r.txid));
    // In rollback-journal mode, so read-only readers never need a WAL.
    let h = std::fs::read(&out).unwrap();
    assert_eq!((h[18], h[19]), (1, 1));
    terminate(&mut src.child, Duration::from_secs(10));
}

/// Writes every page of the database file `db` as one LTX file `(level, min, max)` into the
/// replica.
fn put_state(client: &FileClient, db: &Path, level: u8, min: u64, max: u64) {
    put_named(client, db, level, (min, max), (min, max));
}

/// [`put_state`] with a header covering `(min, max)` stored under the name of `named`.
fn put_named(client: &FileClient, db: &Path, level: u8, (min, max): (u64, u64), named: (u64, u64)) {
    use litestream::ltx::{Encoder, Header, PageEncoding};
    let bytes = std::fs::read(db).unwrap();
    let ps = 4096;
    let h = Header {
        flags: litestream::ltx::HEADER_FLAG_NO_CHECKSUM,
        page_size: ps as u32,
        commit: (bytes.len() / ps) as u32,
        min_txid: litestream::Txid(min),
        max_txid: litestream::Txid(max),
        timestamp: 1_700_000_000_000 + max as i64,
        ..Header::default()
    };
    let tmp = db.with_extension(format!("{min}.ltx"));
    let mut e = Encoder::new(
        std::fs::File::create(&tmp).unwrap(),
        &h,
        PageEncoding::Frame,
    )
    .unwrap();
    for (i, page) in bytes.chunks(ps).enumerate() {
        let pgno = i as u32 + 1;
        if pgno != litestream::ltx::lock_pgno(ps as u32) {
            e.write_page(pgno, page).unwrap();
        }
    }
    e.finish().unwrap();
    let f = std::fs::File::open(&tmp).unwrap();
    client
        .write_ltx_file(
            level,
            litestream::Txid(named.0),
            litestream::Txid(named.1),
            &f,
        )
        .unwrap();
}

/// Follows `dir/replica` into `out` on a thread, looking every 10 ms, until the flag
/// returned is set.
fn follow_in_thread(
    dir: &TempDir,
    out: &Path,
) -> (
    Arc<AtomicBool>,
    std::thread::JoinHandle<litestream::Result<litestream::restore::FollowReport>>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, out, root) = (stop.clone(), out.to_path_buf(), dir.join("replica"));
    let th = std::thread::spawn(move || {
        let mut o = FollowOptions::new(out);
        o.interval = Duration::from_millis(10);
        follow(&FileClient::new(root), &o, &flag)
    });
    (stop, th)
}

#[test]
fn an_idle_follower_finds_files_compacted_past_level_0() {
    let dir = TempDir::new("follow-bridge");
    let src = dir.join("src.db");
    let conn = Connection::open(&src).unwrap();
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let client = FileClient::new(dir.join("replica"));
    put_state(&client, &src, 1, 1, 5);
    let out = dir.join("copy.db");
    let (stop, th) = follow_in_thread(&dir, &out);
    assert!(wait_until(Duration::from_secs(20), || read_txid(&out)
        .ok()
        .flatten()
        .is_some_and(|t| t.0 == 5)));
    // Transactions 6..8 reach the replica only as a level-2 file: no L0 file ever shows.
    conn.execute_batch("INSERT INTO t SELECT x + 1 FROM t; INSERT INTO t SELECT x + 10 FROM t;")
        .unwrap();
    put_state(&client, &src, 2, 6, 8);
    let want = dump(&src);
    assert!(
        wait_until(Duration::from_secs(20), || copy_equals(&out, &want)),
        "the follower never applied the level-2 file"
    );
    stop.store(true, Ordering::SeqCst);
    let r = th.join().unwrap().unwrap();
    assert_eq!(r.txid.0, 8);
}

/// A `-journal` left beside the output by an earlier database (a follower killed while
/// applying a file, whose database and `-txid` the user then deleted as told) would be
/// rolled back into the freshly restored database on its first read: SQLite never checks
/// which database a hot journal belongs to. Restore and follow refuse it, as they refuse
/// a stale `-wal`, and write nothing.
#[test]
fn a_stale_journal_beside_the_output_is_refused() {
    use litestream::restore::{restore, RestoreOptions};
    let dir = TempDir::new("follow-journal");
    let src = dir.join("src.db");
    let conn = Connection::open(&src).unwrap();
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let client = FileClient::new(dir.join("replica"));
    put_state(&client, &src, 1, 1, 5);
    let out = dir.join("copy.db");
    let journal = dir.join("copy.db-journal");
    std::fs::write(&journal, b"a journal of an earlier database").unwrap();
    let e = restore(&client, &RestoreOptions::new(&out)).unwrap_err();
    assert!(e.to_string().contains("-journal"), "{e}");
    let stop = AtomicBool::new(false);
    let e = follow(&client, &FollowOptions::new(&out), &stop).unwrap_err();
    assert!(e.to_string().contains("-journal"), "{e}");
    assert!(!out.exists(), "a database was placed beside the journal");
    assert_eq!(read_txid(&out).unwrap(), None);
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        b"a journal of an earlier database"
    );
    std::fs::remove_file(&journal).unwrap();
    restore(&client, &RestoreOptions::new(&out)).unwrap();
    assert_eq!(dump(&out), dump(&src));
}

/// A file whose header covers other TXIDs than its name says is refused by the follower,
/// as restore refuses it: applied, it would record a TXID the copy does not hold.
#[test]
fn a_follower_refuses_a_file_whose_header_disagrees_with_its_name() {
    let dir = TempDir::new("follow-misnamed");
    let src = dir.join("src.db");
    let conn = Connection::open(&src).unwrap();
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let client = FileClient::new(dir.join("replica"));
    put_state(&client, &src, 1, 1, 5);
    let want = dump(&src);
    let out = dir.join("copy.db");
    let (stop, th) = follow_in_thread(&dir, &out);
    assert!(wait_until(Duration::from_secs(20), || read_txid(&out)
        .ok()
        .flatten()
        .is_some_and(|t| t.0 == 5)));
    conn.execute_batch("INSERT INTO t VALUES (2);").unwrap();
    put_named(&client, &src, 0, (6, 8), (6, 6));
    // Dozens of polls.
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::SeqCst);
    let r = th.join().unwrap().unwrap();
    assert_eq!(r.txid.0, 5, "a misnamed file was applied");
    assert_eq!(read_txid(&out).unwrap().map(|t| t.0), Some(5));
    assert!(copy_equals(&out, &want));
}

/// A follower resumed after a long pause bridges the gap with a big compacted file: its
/// pages go through a spool file beside the output, not memory (a 64 MiB file once
/// cost 64 MiB and more).
#[test]
fn a_big_bridging_file_is_applied_in_bounded_memory() {
    let dir = TempDir::new("follow-big");
    let src = dir.join("src.db");
    let conn = Connection::open(&src).unwrap();
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let client = FileClient::new(dir.join("replica"));
    put_state(&client, &src, 1, 1, 5);
    let out = dir.join("copy.db");
    let run = |stop_at: u64| {
        let (stop, th) = follow_in_thread(&dir, &out);
        let reached = wait_until(Duration::from_secs(60), || {
            read_txid(&out)
                .ok()
                .flatten()
                .is_some_and(|t| t.0 == stop_at)
        });
        stop.store(true, Ordering::SeqCst);
        th.join().unwrap().unwrap();
        assert!(reached, "the follower never reached {stop_at}");
    };
    run(5);
    conn.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 16384)
         INSERT INTO t SELECT randomblob(4000) FROM n;",
    )
    .unwrap();
    put_state(&client, &src, 2, 6, 8);
    let want = dump(&src);
    reset_peak_rss();
    let base = rss_kib();
    run(8);
    let grew = peak_rss_growth_kib(base);
    eprintln!("FIGURE follow: a 64 MiB bridging file raised peak memory by {grew} KiB");
    assert!(grew < 32 * 1024, "peak memory grew by {grew} KiB");
    assert!(copy_equals(&out, &want));
    assert!(!dir.join(".copy.db.follow-pages.tmp").exists());
}
