//! The loadable extension — `cargo build --release -p litestream-vfs`, made by `.ci/vfs.sh`
//! and named by `LITESTREAM_TEST_VFS_SO` — loaded into Debian's `python3` and the
//! `sqlite3` shell: two replicas in one process read equal to their sources, configured
//! by URI parameters; writes are refused; the PRAGMAs and SQL functions answer.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use litestream::client::FileClient;
use litestream::{CompactionLevels, Db, Replica, ReplicaClient, Store};
use rusqlite::Connection;

/// Debian's python3 (it can load extensions; a pyenv build may not).
const PYTHON: &str = "/usr/bin/python3";

/// Dumps every database URI given (after loading the extension when `so` is not empty):
/// integrity check, tables and rows, then the TXID by PRAGMA and by function.
const DUMP: &str = r#"
import sqlite3, sys
so, uris = sys.argv[1], sys.argv[2:]
if so:
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(so)
for uri in uris:
    c = sqlite3.connect(uri, uri=True)
    print(c.execute("PRAGMA integrity_check").fetchone()[0])
    tables = c.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_litestream%' ESCAPE '\\' ORDER BY name").fetchall()
    for name, sql in tables:
        print(sql)
        for row in c.execute('SELECT * FROM "%s" ORDER BY 1' % name):
            print(repr(row))
    if so:
        print("txid", c.execute("PRAGMA litestream_txid").fetchone()[0], c.execute("SELECT litestream_txid()").fetchone()[0])
        try:
            c.execute("INSERT INTO notes(k, v) VALUES ('x', 'y')")
            print("write accepted")
        except sqlite3.OperationalError as e:
            print("write refused:", e)
    print("--")
"#;

/// Returns the dump and python's stderr (the extension logs at `warn`).
fn python_dump(so: &str, uris: &[String]) -> (String, String) {
    let (ok, out, err) = run(Command::new(PYTHON)
        .arg("-c")
        .arg(DUMP)
        .arg(so)
        .args(uris)
        .env("LITESTREAM_LOG_LEVEL", "warn"));
    assert!(ok, "python3 failed: {err}");
    (out, err)
}

/// A database written and replicated by our store to a file replica; returns its path
/// and replica directory once everything is replicated.
fn replicated(
    dir: &Path,
    name: &str,
    seed: u64,
) -> (std::path::PathBuf, std::path::PathBuf, Store) {
    let db = dir.join(format!("{name}.db"));
    let replica = dir.join(format!("{name}-replica"));
    let mut src = Connection::open(&db).unwrap();
    create_schema(&src);
    let mut rng = Rng::new(seed);
    for step in 0..15 {
        workload_step(&mut src, &mut rng, step);
    }
    let client: Arc<dyn ReplicaClient> = Arc::new(FileClient::new(&replica));
    let d = Db::new(&db)
        .monitor_interval(Duration::from_millis(100))
        .replica(Replica::new(client).sync_interval(Duration::from_millis(100)));
    let mut store = Store::new(vec![d], CompactionLevels::default()).unwrap();
    store.open().unwrap();
    store.sync(&db).unwrap();
    store
        .wait_replicated(&db, None, Duration::from_secs(30))
        .unwrap();
    (db, replica, store)
}

/// The extension's path (`LITESTREAM_TEST_VFS_SO`), which must exist when named.
fn extension() -> Option<String> {
    let so = peer_env("LITESTREAM_TEST_VFS_SO")?;
    assert!(
        Path::new(&so).exists(),
        "{so} does not exist: build it with .ci/vfs.sh"
    );
    Some(so)
}

fn vfs_uri(replica: &Path) -> String {
    format!(
        "file:app.db?vfs=litestream&poll_interval=200ms&replica_url=file://{}",
        replica.display()
    )
}

#[test]
fn python_and_the_sqlite3_shell_load_the_extension_and_read_two_replicas() {
    let Some(so) = extension() else {
        return;
    };
    let dir = TempDir::new("vfs-ext");
    let (db_a, rep_a, mut store_a) = replicated(dir.path(), "a", 1);
    let (db_b, rep_b, mut store_b) = replicated(dir.path(), "b", 2);

    let plain = |db: &Path| format!("file:{}?mode=ro", db.display());
    let (want, _) = python_dump("", &[plain(&db_a), plain(&db_b)]);
    let (got, log) = python_dump(&so, &[vfs_uri(&rep_a), vfs_uri(&rep_b)]);
    // Each refused write says why in the log, once per connection.
    assert_eq!(
        log.matches("is a read replica: writes are refused").count(),
        2,
        "{log}"
    );
    // The extension's output adds the TXID and the refused write to each database.
    let mut kept = Vec::new();
    let mut extra = Vec::new();
    for line in got.lines() {
        if line.starts_with("txid ") || line.starts_with("write ") {
            extra.push(line.to_string());
        } else {
            kept.push(line);
        }
    }
    assert_eq!(
        kept.join("\n") + "\n",
        want,
        "the replicas read through the extension"
    );
    assert!(want.starts_with("ok\n"));
    assert_eq!(extra.len(), 4, "{extra:?}");
    for (i, store) in [&store_a, &store_b].iter().enumerate() {
        let txid = store.status()[0].local_txid.to_string();
        assert_eq!(
            extra[i * 2],
            format!("txid {txid} {txid}"),
            "PRAGMA and function"
        );
        assert!(
            extra[i * 2 + 1].starts_with("write refused:") && extra[i * 2 + 1].contains("readonly"),
            "{}",
            extra[i * 2 + 1]
        );
    }

    // The sqlite3 shell: .load, then .open through the VFS.
    let sqlite3 = std::env::var("LITESTREAM_TEST_SQLITE3").unwrap_or("/usr/bin/sqlite3".into());
    let script = format!(
        ".load {so}\n.open {}\nSELECT count(*) FROM accounts;\nPRAGMA litestream_txid;\n",
        vfs_uri(&rep_a)
    );
    let mut child = Command::new(&sqlite3)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let count: i64 = Connection::open(&db_a)
        .unwrap()
        .query_row("SELECT count(*) FROM accounts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        stdout,
        format!("{count}\n{}\n", store_a.status()[0].local_txid),
        "sqlite3 shell: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    store_a.close().unwrap();
    store_b.close().unwrap();
}

/// Reads the small tables (not `events`) of one database URI after loading the extension
/// (unless `so` is empty); `offline` then waits for the lag to grow and reads `events`.
const OFFLINE: &str = r#"
import sqlite3, sys, time
so, uri, mode = sys.argv[1], sys.argv[2], sys.argv[3]
if so:
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(so)
c = sqlite3.connect(uri, uri=True)
for row in c.execute("SELECT 'a', id, name, balance FROM accounts UNION ALL SELECT 'n', k, v, NULL FROM notes ORDER BY 1, 2"):
    print(repr(row))
if so:
    print("txid", c.execute("PRAGMA litestream_txid").fetchone()[0])
if mode == "offline":
    lag0 = c.execute("SELECT litestream_lag()").fetchone()[0]
    deadline = time.time() + 30
    while c.execute("SELECT litestream_lag()").fetchone()[0] <= lag0 and time.time() < deadline:
        time.sleep(0.2)
    print("lag", "grew" if c.execute("SELECT litestream_lag()").fetchone()[0] > lag0 >= 0 else "stuck at %d" % lag0)
    try:
        print("events", c.execute("SELECT count(*), sum(length(payload)) FROM events").fetchone())
    except sqlite3.OperationalError as e:
        print("events failed:", e)
"#;

#[test]
fn python_reopens_from_the_cache_while_the_replica_is_unreachable() {
    let Some(so) = extension() else {
        return;
    };
    let dir = TempDir::new("vfs-ext-offline");
    let (db, replica, mut store) = replicated(dir.path(), "a", 3);
    // 6 MB of `events` in a file too large to be fetched whole: pages nobody reads stay
    // uncached.
    let mut src = Connection::open(&db).unwrap();
    big_transaction(&mut src, &mut Rng::new(4));
    store.sync(&db).unwrap();
    store
        .wait_replicated(&db, None, Duration::from_secs(30))
        .unwrap();
    let txid = store.status()[0].local_txid.to_string();
    store.close().unwrap();

    let py = |so: &str, uri: &str, mode: &str| {
        let (ok, out, err) = run(Command::new(PYTHON)
            .arg("-c")
            .arg(OFFLINE)
            .arg(so)
            .arg(uri)
            .arg(mode)
            .env("LITESTREAM_LOG_LEVEL", "warn"));
        assert!(ok, "python3 failed: {err}");
        (out, err)
    };
    let (want, _) = py("", &format!("file:{}?mode=ro", db.display()), "plain");
    assert!(want.lines().count() > 10, "{want}");
    let uri = format!(
        "{}&cache_dir={}&read_ahead=0&miss_timeout=2s",
        vfs_uri(&replica),
        dir.join("cache").display()
    );
    let (online, _) = py(&so, &uri, "online");
    assert_eq!(online, format!("{want}txid {txid}\n"));

    // The replica becomes unreachable: a file where its directory was.
    std::fs::rename(&replica, dir.join("replica-away")).unwrap();
    std::fs::write(&replica, b"not a directory").unwrap();
    let (offline, log) = py(&so, &uri, "offline");
    assert_eq!(
        offline,
        format!("{want}txid {txid}\nlag grew\nevents failed: disk I/O error\n"),
        "stderr: {log}"
    );
    assert!(log.contains("serving the state cached"), "{log}");
}

/// Opens one URI and keeps the connection: prints the row count of `notes`, then, for each
/// count read on stdin, waits (≤ 20 s) until the same connection sees it and prints how
/// long that took, with the TXID.
const FOLLOW: &str = r#"
import sqlite3, sys, time
so, uri = sys.argv[1], sys.argv[2]
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(so)
c = sqlite3.connect(uri, uri=True)
count = lambda: c.execute("SELECT count(*) FROM notes").fetchone()[0]
print("count", count(), flush=True)
for line in sys.stdin:
    want, t = int(line), time.time()
    while count() < want and time.time() < t + 20:
        time.sleep(0.05)
    print("seen", count(), "after %.2f s" % (time.time() - t), "txid", c.execute("PRAGMA litestream_txid").fetchone()[0], flush=True)
"#;

#[test]
fn an_open_python_connection_follows_new_writes() {
    use std::io::{BufRead, BufReader, Write};
    let Some(so) = extension() else {
        return;
    };
    let dir = TempDir::new("vfs-ext-follow");
    let (db, replica, mut store) = replicated(dir.path(), "a", 5);
    let src = Connection::open(&db).unwrap();
    let notes = |c: &Connection| -> i64 {
        c.query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
            .unwrap()
    };
    let mut py = Command::new(PYTHON)
        .arg("-c")
        .arg(FOLLOW)
        .arg(&so)
        .arg(vfs_uri(&replica))
        .env("LITESTREAM_LOG_LEVEL", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = py.stdin.take().unwrap();
    let mut lines = BufReader::new(py.stdout.take().unwrap()).lines();
    let mut next = || lines.next().expect("python3 ended").unwrap();
    assert_eq!(next(), format!("count {}", notes(&src)));
    for round in 0..3 {
        for i in 0..5 {
            src.execute(
                "INSERT INTO notes(k, v) VALUES (?1, ?2)",
                (format!("follow-{round}-{i}"), "x".repeat(100 * i)),
            )
            .unwrap();
        }
        store.sync(&db).unwrap();
        store
            .wait_replicated(&db, None, Duration::from_secs(30))
            .unwrap();
        let want = notes(&src);
        let txid = store.status()[0].local_txid.to_string();
        writeln!(stdin, "{want}").unwrap();
        let seen = next();
        eprintln!("FIGURE python follows round {round}: {seen}");
        assert!(
            seen.starts_with(&format!("seen {want} after"))
                && seen.ends_with(&format!("txid {txid}")),
            "round {round}: wanted {want} rows at {txid}, python3 says {seen}"
        );
    }
    drop(stdin);
    assert!(py.wait().unwrap().success());
    store.close().unwrap();
}
