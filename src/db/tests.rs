//! The race that damaged a snapshot in CI, driven deterministically: a WAL restart in
//! the middle of a full copy must be noticed and the copy redone.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::ltx;
use crate::wal;

use crate::durable::Scratch;

const INSERT_ROWS: &str =
    "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 300) \
     INSERT INTO t (v) SELECT randomblob(1000) FROM c";

/// An application connection in another "process" of the test (SQLite's own locks).
fn app(path: &Path) -> Conn {
    if !path.exists() {
        File::create(path).unwrap();
    }
    let c = Conn::open(path).unwrap();
    c.busy_timeout(5000);
    c.exec("PRAGMA wal_autocheckpoint = 0").unwrap();
    c.query_column("PRAGMA journal_mode = wal").unwrap();
    c.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)")
        .unwrap();
    c
}

/// A scratch database with rows, its application connection, and a syncer that has
/// copied them.
fn synced(name: &str) -> (Scratch, Conn, Syncer) {
    let dir = Scratch::new(name);
    let path = dir.0.join("app.db");
    let app = app(&path);
    app.exec(INSERT_ROWS).unwrap();
    let shared = DbHandle::new(&path, default_meta_path(&path), DbOptions::default()).0;
    let mut s = Syncer::open(shared).unwrap();
    s.tick(true).unwrap();
    (dir, app, s)
}

/// Applies an LTX snapshot to a fresh database file and returns (integrity, row count).
fn check_snapshot(ltx: &Path, out: &Path) -> (String, i64) {
    use std::os::unix::fs::FileExt;
    let mut d = ltx::Decoder::new(io::BufReader::new(File::open(ltx).unwrap())).unwrap();
    let h = d.header().clone();
    let f = File::create(out).unwrap();
    let mut buf = vec![0u8; h.page_size as usize];
    while let Some(pgno) = d.next_page(&mut buf).unwrap() {
        f.write_all_at(&buf, (pgno as u64 - 1) * h.page_size as u64)
            .unwrap();
    }
    d.finish().unwrap();
    f.set_len(h.commit as u64 * h.page_size as u64).unwrap();
    drop(f);
    let c = Conn::open(out).unwrap();
    let check = c.query_column("PRAGMA integrity_check").unwrap().join("; ");
    let n = c.query_i64("SELECT COUNT(*) FROM t").unwrap_or(-1);
    (check, n)
}

/// A syncer whose `R` holds read mark 0 after a full checkpoint, and a racing
/// application connection armed to commit (restarting the WAL, overwriting its first
/// frames) right after page 2 of the next copy is read. Returns the syncer, the WAL
/// salts before the race and a flag set once the racing commit is done.
fn racing_syncer(path: &Path) -> (Syncer, (u32, u32), Arc<std::sync::atomic::AtomicBool>) {
    let app = app(path);
    app.exec(INSERT_ROWS).unwrap();
    let shared = DbHandle::new(path, default_meta_path(path), DbOptions::default()).0;
    let mut s = Syncer::open(shared).unwrap();
    s.tick(true).unwrap();
    // A checkpoint whose final barrier backfills everything: R is re-taken on a fully
    // backfilled WAL, so it holds read mark 0 and does not block a restart.
    s.checkpoint(false).unwrap();
    let salts_before = s.pos.as_ref().unwrap().salts;
    let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = fired.clone();
    s.after_page = Some(Box::new(move |pgno| {
        use std::sync::atomic::Ordering::SeqCst;
        if pgno == 2 && !flag.load(SeqCst) {
            app.exec(INSERT_ROWS).unwrap();
            flag.store(true, SeqCst);
        }
    }));
    (s, salts_before, fired)
}

/// The racing commit ran during the copy and restarted the WAL.
fn assert_raced(s: &Syncer, salts_before: (u32, u32), fired: &std::sync::atomic::AtomicBool) {
    assert!(
        fired.load(std::sync::atomic::Ordering::SeqCst),
        "the race never ran"
    );
    let wal = File::open(&s.wal_path).unwrap();
    let salts_now = wal::read_header(&wal).unwrap().unwrap().salts();
    assert_ne!(
        salts_before, salts_now,
        "the racing commit was meant to restart the WAL"
    );
}

/// The race that damaged a snapshot in CI: after a checkpoint that backfilled the whole
/// WAL, `R` reads the database file alone ("read mark 0"), which lets the application's
/// next commit restart the WAL and overwrite, from its start, the very frames a full
/// snapshot is copying. The copy must notice (the WAL header changed) and be redone,
/// never hand out pages of the new generation under the old one's page numbers.
#[test]
fn snapshot_copy_survives_a_wal_restart_in_the_middle() {
    let dir = Scratch::new("restart-race");
    let path = dir.0.join("app.db");
    let (mut s, salts_before, fired) = racing_syncer(&path);
    let snap = s.snapshot_file().unwrap();
    s.after_page = None;
    assert_raced(&s, salts_before, &fired);
    // The copy was redone after the racing commit: the snapshot holds its rows.
    let (check, n) = check_snapshot(snap.file.path(), &dir.0.join("snap.db"));
    assert_eq!(check, "ok", "a snapshot copied across a WAL restart");
    assert_eq!(n, 600);
    assert_eq!(Some(snap.header.max_txid), s.pos.as_ref().map(|p| p.txid));
}

/// The same race for a full-snapshot L0 file (a new lineage, or continuity lost): the
/// file must not be written from frames of two generations.
#[test]
fn snapshot_l0_survives_a_wal_restart_in_the_middle() {
    let dir = Scratch::new("restart-race-l0");
    let path = dir.0.join("app.db");
    let (mut s, salts_before, fired) = racing_syncer(&path);
    let before = s.pos.as_ref().unwrap().txid;
    s.renumber_after = Some(before);
    s.tick(true).unwrap();
    s.after_page = None;
    assert_raced(&s, salts_before, &fired);
    // One L0 file, written after the racing commit, with its rows.
    let txid = s.pos.as_ref().unwrap().txid;
    assert_eq!(txid, before.next());
    let (check, n) = check_snapshot(&s.shared.l0_path(txid), &dir.0.join("l0.db"));
    assert_eq!(check, "ok", "a snapshot L0 copied across a WAL restart");
    assert_eq!(n, 600);
}

/// A sync that fails after its `stat` (here: the L0 directory is briefly not a
/// directory) is retried by the next timer tick even though the WAL has not changed
/// since. It was not: the failed tick had already recorded the stat, so the frames
/// waited for the application's next write (a watched database's replica stalled on it).
#[test]
fn a_failed_sync_is_retried_without_a_new_write() {
    let (dir, app, mut s) = synced("retry-sync");
    // A tick that finds nothing new: the next one trusts an unchanged stat.
    assert!(!s.tick(false).unwrap());
    let before = s.txid();
    app.exec(INSERT_ROWS).unwrap();
    let aside = dir.0.join("l0-aside");
    fs::rename(&s.l0_dir, &aside).unwrap();
    File::create(&s.l0_dir).unwrap();
    assert!(s.tick(true).is_err(), "writing L0 into a file must fail");
    fs::remove_file(&s.l0_dir).unwrap();
    fs::rename(&aside, &s.l0_dir).unwrap();
    // No write since: the WAL's stat is the one the failed tick saw.
    s.tick(false).unwrap();
    assert_eq!(s.txid(), before.next(), "the failed sync was not retried");
}

/// A syncer dropped while it paces writers (its database closed after a sync that failed
/// half-way, say) stops its pacer: the application's writers are not held any more.
#[test]
fn a_dropped_syncer_stops_pacing() {
    let (_dir, app, mut s) = synced("pacer-drop");
    s.pace(super::pacer::MIN_RELEASE).unwrap();
    app.busy_timeout(0);
    let refused = |n: u32| {
        (0..n)
            .filter(|_| {
                std::thread::sleep(std::time::Duration::from_millis(5));
                app.exec("INSERT INTO t (v) VALUES (x'00')").is_err()
            })
            .count()
    };
    // The pacer thread holds writers a slice at a time once it runs: however late that is,
    // a write is refused within 10 s.
    let started = std::time::Instant::now();
    let mut held = false;
    while !held && started.elapsed() < std::time::Duration::from_secs(10) {
        held = refused(1) > 0;
    }
    assert!(held, "the pacer never held the writer");
    drop(s);
    assert_eq!(
        refused(60),
        0,
        "writes refused after the syncer was dropped"
    );
}

/// A syncer opened on a database whose tables it needs exist and whose WAL is all
/// backfilled (so it writes nothing and its read transaction reads the database file
/// alone), then the WAL emptied by the application's TRUNCATE checkpoint.
fn truncated_behind_the_syncer(name: &str) -> (Scratch, Conn, Syncer) {
    let dir = Scratch::new(name);
    let path = dir.0.join("app.db");
    let app = app(&path);
    app.exec(INSERT_ROWS).unwrap();
    app.exec(
        "CREATE TABLE _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER);
         CREATE TABLE _litestream_lock (id INTEGER);",
    )
    .unwrap();
    app.exec("PRAGMA wal_checkpoint(PASSIVE)").unwrap();
    let shared = DbHandle::new(&path, default_meta_path(&path), DbOptions::default()).0;
    let mut s = Syncer::open(shared).unwrap();
    s.tick(true).unwrap();
    app.exec("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    let wal = crate::durable::sibling(&path, "-wal");
    assert_eq!(
        fs::metadata(&wal).unwrap().len(),
        0,
        "the WAL was not truncated"
    );
    (dir, app, s)
}

/// An application that truncates a fully backfilled WAL while the syncer's read
/// transaction reads the database file alone (read mark 0, which SQLite lets a TRUNCATE
/// checkpoint pass) costs one snapshot, not one per tick: the syncer makes a WAL again,
/// as Litestream does, and its read transaction then keeps it.
#[test]
fn a_wal_truncated_by_the_application_costs_one_snapshot() {
    let (_dir, app, mut s) = truncated_behind_the_syncer("app-truncates");
    let wal = crate::durable::sibling(&s.shared.path, "-wal");
    let before = s.txid();
    for _ in 0..3 {
        s.tick(false).unwrap();
    }
    assert!(
        s.txid() <= before.next(),
        "{} snapshots of an unchanged database",
        s.txid().0 - before.0
    );
    // And its read transaction now keeps the WAL: the application's TRUNCATE cannot
    // empty it behind the syncer again.
    app.exec(INSERT_ROWS).unwrap();
    let _ = app.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    s.tick(false).unwrap();
    assert!(
        fs::metadata(&wal).unwrap().len() >= wal::WAL_HEADER_SIZE,
        "the WAL was emptied behind the read transaction"
    );
}

/// Two snapshots of one TXID (a replica starting a lineage while compaction takes its L9
/// snapshot) are two files: the second once truncated and rewrote the file the first was
/// uploading from.
#[test]
fn two_snapshots_of_one_txid_are_two_files() {
    let (_dir, _app, mut s) = synced("two-snapshots");
    let a = s.snapshot_file().unwrap();
    let mut first = Vec::new();
    a.open().unwrap().read_to_end(&mut first).unwrap();
    let b = s.snapshot_file().unwrap();
    assert_eq!(a.header().max_txid, b.header().max_txid);
    let mut again = Vec::new();
    a.open().unwrap().read_to_end(&mut again).unwrap();
    assert!(
        first == again,
        "the second snapshot rewrote the first's file"
    );
    drop(a);
    assert!(
        b.open().is_ok(),
        "dropping the first removed the second's file"
    );
}

/// Snapshot and compaction temp files a killed process left in the meta directory (each
/// as large as the database) are removed when the database is first opened.
#[test]
fn leftover_work_files_are_removed_at_open() {
    let dir = Scratch::new("leftovers");
    let path = dir.0.join("app.db");
    let app = app(&path);
    app.exec(INSERT_ROWS).unwrap();
    let meta = default_meta_path(&path);
    fs::create_dir_all(&meta).unwrap();
    let left = [
        meta.join("snapshot-5.ltx.tmp"),
        meta.join("snapshot-5-1.ltx.tmp"),
        meta.join("compact-1-2-3.ltx.tmp"),
    ];
    for p in &left {
        fs::write(p, b"left by a killed process").unwrap();
    }
    let keep = meta.join("notes.txt");
    fs::write(&keep, b"not ours to remove").unwrap();
    let shared = DbHandle::new(&path, meta.clone(), DbOptions::default()).0;
    let _s = Syncer::open(shared).unwrap();
    for p in &left {
        assert!(!p.exists(), "{} was left", p.display());
    }
    assert!(keep.exists());
}

/// Pages in the local L0 file of `txid`.
fn l0_pages(s: &Syncer, txid: Txid) -> usize {
    let f = File::open(s.shared.l0_path(txid)).unwrap();
    let mut d = ltx::Decoder::new(io::BufReader::new(f)).unwrap();
    let mut buf = vec![0u8; d.header().page_size as usize];
    let mut n = 0;
    while d.next_page(&mut buf).unwrap().is_some() {
        n += 1;
    }
    n
}

/// After our own full checkpoint (R taken under the barrier on the database file
/// alone), an application's TRUNCATE checkpoint cannot have changed the database: SQLite
/// backfills nothing past a reader on read mark 0. The next copy continues into the new
/// WAL with our one small write instead of copying the whole database again.
#[test]
fn a_truncate_after_our_checkpoint_costs_no_snapshot() {
    let (_dir, app, mut s) = synced("truncate-after-ours");
    app.exec(INSERT_ROWS).unwrap();
    s.tick(true).unwrap();
    s.checkpoint(false).unwrap();
    app.exec("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    let wal = crate::durable::sibling(&s.shared.path, "-wal");
    assert_eq!(
        fs::metadata(&wal).unwrap().len(),
        0,
        "the WAL was not truncated"
    );
    let before = s.txid();
    s.tick(false).unwrap();
    assert_eq!(s.txid(), before.next());
    let pages = l0_pages(&s, s.txid());
    assert!(
        pages <= 3,
        "a copy of {pages} pages, not our one small write"
    );
}

/// With the WAL emptied and the application holding the write lock, a tick copies
/// nothing and fails nothing: no transaction can commit meanwhile.
#[test]
fn an_emptied_wal_under_the_applications_write_lock_is_not_an_error() {
    let (_dir, app, mut s) = truncated_behind_the_syncer("truncate-locked");
    app.exec("BEGIN IMMEDIATE").unwrap();
    let before = s.txid();
    s.tick(true).unwrap();
    assert_eq!(s.txid(), before);
    app.exec("INSERT INTO t (v) VALUES (x'01'); COMMIT")
        .unwrap();
    s.tick(true).unwrap();
    assert!(s.txid() > before, "the application's commit was not copied");
}
