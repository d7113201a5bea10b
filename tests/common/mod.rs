//! Shared test support: temp dirs, the official binary, database dumps, waiting.
#![allow(dead_code)]

pub mod counting;
pub mod fault_proxy;
pub mod hostile_server;
pub mod s3;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

/// A directory removed when dropped (kept if `KEEP_TEST_DIRS` is set).
pub struct TempDir(PathBuf);

static SEQ: AtomicU64 = AtomicU64::new(0);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let base = std::env::var_os("LITESTREAM_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let p = base.join(format!(
            "lsrs-{name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            eprintln!("kept {}", self.0.display());
        }
    }
}

/// True when running in CI, where a missing peer is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// An environment variable the harness (`.ci/test.sh`) provides. Outside CI a missing
/// one skips the test (returns None); in CI it fails it.
pub fn peer_env(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if in_ci() {
                panic!("{name} is not set: run the tests through .ci/test.sh, which installs and starts the peers");
            }
            eprintln!("SKIP: {name} not set (run .ci/test.sh for the full suite)");
            None
        }
    }
}

/// The official `litestream` 0.5.17 binary, or None (skip) outside CI.
pub fn official_bin() -> Option<PathBuf> {
    peer_env("LITESTREAM_BIN").map(PathBuf::from)
}

/// Our `litestream` binary.
pub fn our_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_litestream"))
}

/// A command for the official binary with a clean, loopback-only environment.
pub fn official_cmd(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    c.env_remove("AWS_CA_BUNDLE")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("GCE_METADATA_HOST", "127.0.0.1:9");
    c
}

/// Runs a command to completion, returning (status ok, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends SIGTERM and waits (bounded) for the child to exit; SIGKILL after the timeout.
pub fn terminate(child: &mut Child, timeout: Duration) -> bool {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A canonical text dump of a database: every table's schema and rows in rowid order.
pub fn dump(path: &Path) -> String {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    dump_conn(&conn)
}

pub fn dump_conn(conn: &Connection) -> String {
    let mut out = String::new();
    let mut stmt = conn
        .prepare("SELECT name, sql FROM sqlite_master WHERE type IN ('table','index') AND sql IS NOT NULL ORDER BY name")
        .unwrap();
    let objs: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    for (name, sql) in objs {
        out.push_str(&sql);
        out.push('\n');
        // Litestream's own bookkeeping tables change under litestream's own writes (the
        // seq bump that restarts the WAL), not the application's: compare schema only.
        if !sql.starts_with("CREATE TABLE") || name.starts_with("_litestream_") {
            continue;
        }
        let order = if sql.to_uppercase().contains("WITHOUT ROWID") {
            ""
        } else {
            " ORDER BY rowid"
        };
        let mut s = conn
            .prepare(&format!("SELECT * FROM \"{name}\"{order}"))
            .unwrap();
        let n = s.column_count();
        let mut rows = s.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            for i in 0..n {
                let v: rusqlite::types::Value = r.get(i).unwrap();
                out.push_str(&format!("{v:?}|"));
            }
            out.push('\n');
        }
    }
    out
}

/// `PRAGMA integrity_check` result.
pub fn integrity(path: &Path) -> String {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        .unwrap()
}

/// Highest TXID among `<dir>/*.ltx` (0 if none).
pub fn max_txid_in(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    litestream::ltx::parse_file_name(e.file_name().to_str()?).map(|(_, max)| max.0)
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// The local L0 directory Litestream keeps beside a database.
pub fn meta_l0_dir(db: &Path) -> PathBuf {
    let name = db.file_name().unwrap().to_string_lossy();
    db.with_file_name(format!(".{name}-litestream"))
        .join("ltx/0")
}

/// A small deterministic PRNG (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Creates the workload schema.
pub fn create_schema(conn: &Connection) {
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE IF NOT EXISTS accounts(id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS accounts_name ON accounts(name);
         CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, account INTEGER, kind TEXT, payload BLOB);
         CREATE TABLE IF NOT EXISTS notes(k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;",
    )
    .unwrap();
}

/// A database in WAL mode with the workload schema and `steps` steps of it (seeded).
pub fn make_db(path: &Path, seed: u64, steps: u64) -> Connection {
    let mut conn = Connection::open(path).unwrap();
    create_schema(&conn);
    let mut rng = Rng::new(seed);
    for i in 0..steps {
        workload_step(&mut conn, &mut rng, i);
    }
    conn
}

/// One step of a mixed workload (inserts, updates, deletes) in one transaction.
pub fn workload_step(conn: &mut Connection, rng: &mut Rng, step: u64) {
    let tx = conn.transaction().unwrap();
    match rng.below(4) {
        0 => {
            for _ in 0..(1 + rng.below(50)) {
                let name = format!("acct-{}", rng.below(100_000));
                tx.execute(
                    "INSERT INTO accounts(name, balance) VALUES (?1, ?2)",
                    rusqlite::params![name, rng.below(10_000) as i64],
                )
                .unwrap();
            }
        }
        1 => {
            tx.execute(
                "UPDATE accounts SET balance = balance + ?1 WHERE id % 7 = ?2",
                rusqlite::params![rng.below(100) as i64, rng.below(7) as i64],
            )
            .unwrap();
            tx.execute(
                "INSERT OR REPLACE INTO notes(k, v) VALUES (?1, ?2)",
                rusqlite::params![format!("k{}", rng.below(200)), format!("step {step}")],
            )
            .unwrap();
        }
        2 => {
            tx.execute(
                "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY random() LIMIT ?1)",
                [rng.below(30) as i64],
            )
            .unwrap();
            tx.execute(
                "DELETE FROM accounts WHERE id % 11 = ?1",
                [rng.below(11) as i64],
            )
            .unwrap();
        }
        _ => {
            for _ in 0..(1 + rng.below(20)) {
                let n = 100 + rng.below(3000) as usize;
                let payload = rng.bytes(n);
                tx.execute(
                    "INSERT INTO events(account, kind, payload) VALUES (?1, ?2, ?3)",
                    rusqlite::params![rng.below(1000) as i64, "evt", payload],
                )
                .unwrap();
            }
        }
    }
    // Every step changes something, so every step produces WAL frames.
    tx.execute(
        "INSERT OR REPLACE INTO notes(k, v) VALUES ('step', ?1)",
        [step.to_string()],
    )
    .unwrap();
    tx.commit().unwrap();
}

/// One transaction of more than 1000 pages (about 6 MB of rows).
pub fn big_transaction(conn: &mut Connection, rng: &mut Rng) {
    let tx = conn.transaction().unwrap();
    for _ in 0..6000 {
        let payload = rng.bytes(1000);
        tx.execute(
            "INSERT INTO events(account, kind, payload) VALUES (?1, 'bulk', ?2)",
            rusqlite::params![rng.below(1000) as i64, payload],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// The Python application writer (`tests/support/writer.py`), another process with its own
/// SQLite library.
pub struct Writer {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

pub fn python() -> String {
    std::env::var("LITESTREAM_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

impl Writer {
    pub fn spawn(db: &Path, busy_ms: u32) -> Writer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/writer.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(db)
            .arg(busy_ms.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3 writer");
        let stdin = child.stdin.take().unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        Writer {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one command and returns the words after "ok"; panics on "err".
    pub fn cmd(&mut self, line: &str) -> Vec<String> {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).unwrap();
        let words: Vec<String> = reply.split_whitespace().map(String::from).collect();
        assert_eq!(
            words.first().map(|s| s.as_str()),
            Some("ok"),
            "writer: {line} -> {reply}"
        );
        words[1..].to_vec()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.cmd_quiet("quit");
        let _ = self.child.wait();
    }
}

impl Writer {
    fn cmd_quiet(&mut self, line: &str) -> std::io::Result<()> {
        use std::io::Write;
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()
    }
}

/// Restores `url` with the official binary into `out`, with a full integrity check.
pub fn official_restore(bin: &Path, url: &str, out: &Path, extra: &[&str]) {
    let (ok, _, err) = run(&mut restore_url_cmd(bin, url, out, extra));
    assert!(ok, "official restore of {url} {extra:?} failed: {err}");
}

/// `restore EXTRA -integrity-check full -o OUT URL` with the official binary `bin`.
fn restore_url_cmd(bin: &Path, url: &str, out: &Path, extra: &[&str]) -> Command {
    let mut c = official_cmd(bin);
    c.arg("restore")
        .args(extra)
        .args(["-integrity-check", "full", "-o"])
        .arg(out)
        .arg(url);
    c
}

/// A name unique to this test run, for paths on shared servers.
pub fn unique(name: &str) -> String {
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

/// The official binary, once `official_bin()` found it installed.
fn installed_official_bin() -> PathBuf {
    official_bin().expect("the official litestream binary")
}

fn official() -> Command {
    official_cmd(&installed_official_bin())
}

/// The official `restore -integrity-check full` of `db` through a litestream.yml.
pub fn official_restore_by_config(cfg: &Path, db: &Path, out: &Path) -> Command {
    let mut c = official();
    c.args(["restore", "-integrity-check", "full", "-config"])
        .arg(cfg)
        .arg("-o")
        .arg(out)
        .arg(db);
    c
}

/// The official `restore -integrity-check full` of a replica URL.
pub fn official_restore_by_url(url: &str, out: &Path) -> Command {
    restore_url_cmd(&installed_official_bin(), url, out, &[])
}

/// The official `replicate -config cfg`.
pub fn official_replicate_by_config(cfg: &Path) -> Command {
    let mut c = official();
    c.args(["replicate", "-config"]).arg(cfg);
    c
}

/// The official `replicate DB URL`.
pub fn official_replicate_by_url(db: &Path, url: &str) -> Command {
    let mut c = official();
    c.arg("replicate").arg(db).arg(url);
    c
}

/// Our binary restores `db` through the same litestream.yml the official one read; the
/// result must equal `want`.
pub fn assert_our_restore_by_config(cfg: &Path, db: &Path, out: &Path, want: &str) {
    let (ok, _, err) = run(Command::new(our_bin())
        .args(["restore", "-config"])
        .arg(cfg)
        .arg("-o")
        .arg(out)
        .arg(db));
    assert!(ok, "our restore through litestream.yml: {err}");
    assert_eq!(dump(out), want, "our restore through litestream.yml");
}

/// One backend's half of the two-way interop check with the official binary.
pub struct Interop<'a> {
    /// Our replica (an empty path on the server).
    pub ours: std::sync::Arc<dyn litestream::ReplicaClient>,
    /// The official binary's replica (another empty path), read with our client.
    pub theirs: std::sync::Arc<dyn litestream::ReplicaClient>,
    /// The official `restore` of our replica of `db` into `out` (all but the binary's args
    /// given by the backend: a URL, or a config naming `db`).
    pub official_restore: &'a dyn Fn(&Path, &Path) -> Command,
    /// The official `replicate` of `db` to the other path.
    pub official_replicate: &'a dyn Fn(&Path) -> Command,
}

/// Replicates a mixed workload (a >1000-page transaction, an L1 compaction) with our
/// `Store`, restores it with ours and with the official binary; then lets the official
/// binary replicate and restores that with ours. Every restore must equal its source.
/// Returns our source database and its dump, for backend-specific checks.
pub fn replicate_and_restore_both_ways(dir: &TempDir, i: Interop<'_>) -> (PathBuf, String) {
    use litestream::restore::{restore, IntegrityCheck, RestoreOptions};
    use litestream::{CompactionLevels, Db, Replica, Store, Txid};

    let db = dir.join("app.db");
    let mut w = Writer::spawn(&db, 5000);
    w.cmd("mixed 1 10");
    let d = Db::new(&db)
        .monitor_interval(Duration::from_millis(100))
        .replica(Replica::new(i.ours.clone()).sync_interval(Duration::from_millis(100)));
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
    assert!(!i.ours.ltx_files(1, Txid::ZERO, false).unwrap().is_empty());
    let out = dir.join("ours.db");
    restore(
        i.ours.as_ref(),
        &RestoreOptions::new(&out).integrity_check(IntegrityCheck::Full),
    )
    .unwrap();
    assert_eq!(dump(&out), want, "our restore of our replica");

    if official_bin().is_none() {
        return (db, want);
    }
    let theirs = dir.join("theirs.db");
    let (ok, _, err) = run(&mut (i.official_restore)(&db, &theirs));
    assert!(ok, "official restore of our replica: {err}");
    assert_eq!(dump(&theirs), want, "official restore of our replica");

    let db2 = dir.join("official-src.db");
    let mut w2 = Writer::spawn(&db2, 5000);
    w2.cmd("mixed 5 10");
    let log = dir.join("official.log");
    let mut child = (i.official_replicate)(&db2)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || !i
            .theirs
            .ltx_files(0, Txid::ZERO, false)
            .unwrap_or_default()
            .is_empty()),
        "the official binary wrote nothing: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    w2.cmd("big 6");
    w2.cmd("mixed 7 10");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        terminate(&mut child, Duration::from_secs(30)),
        "official replicate did not exit cleanly"
    );
    let want2 = dump(&db2);
    let out2 = dir.join("ours-from-theirs.db");
    restore(
        i.theirs.as_ref(),
        &RestoreOptions::new(&out2).integrity_check(IntegrityCheck::Full),
    )
    .unwrap();
    assert_eq!(dump(&out2), want2, "our restore of the official replica");
    (db, want)
}

/// An LTX file `min-max` of `pages` random 4 KiB pages, with header timestamp
/// 1 700 000 000 000 ms + `min` (2023-11-14T22:13:20Z plus `min` ms).
pub fn random_ltx(dir: &TempDir, min: u64, max: u64, pages: u32) -> PathBuf {
    use litestream::ltx::{Encoder, Header, PageEncoding, HEADER_FLAG_NO_CHECKSUM};
    use litestream::Txid;
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
    let mut e = Encoder::new(std::fs::File::create(&p).unwrap(), &h, PageEncoding::Frame).unwrap();
    let mut rng = Rng::new(min);
    for pg in 1..=pages {
        let page: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
        e.write_page(pg, &page).unwrap();
    }
    e.finish().unwrap();
    p
}

/// Peak resident memory of this process, in KiB (`VmHWM`).
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

/// How far the peak resident memory rose above `base` KiB. The kernel folds each
/// thread's resident-page counts into `VmHWM` lazily, so a `VmRSS` read just after
/// [`reset_peak_rss`] can exceed `VmHWM` for a moment: that counts as no growth.
pub fn peak_rss_growth_kib(base: u64) -> u64 {
    peak_rss_kib().saturating_sub(base)
}

/// A `kB` line of `/proc/self/status`.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Resets the peak resident memory (`VmHWM`) to the current resident size, after handing
/// heap memory freed by earlier tests of the process back to the system (glibc's
/// `malloc_trim`), so that a peak measures the test's own use.
pub fn reset_peak_rss() {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: malloc_trim only returns free heap pages to the system.
    unsafe {
        malloc_trim(0);
    }
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

/// The resident size now (`VmRSS`), KiB: what a test's peak grows from.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}
