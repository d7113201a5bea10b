//! The `litestream` command with `litestream.yml`, as Litestream users run it.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use litestream::client::s3::{S3Client, S3Config};
use litestream::client::FileClient;
use litestream::restore::{restore, IntegrityCheck, RestoreOptions};
use litestream::{CompactionLevels, Db, Replica, ReplicaClient, Store, Txid};

fn unique(name: &str) -> String {
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

fn replicate(cfg: &Path, log: &Path, extra: &[&str]) -> Child {
    let mut c = Command::new(our_bin());
    c.arg("replicate").arg("-config").arg(cfg).args(extra);
    if let (Some(ak), Some(sk)) = (
        std::env::var("LITESTREAM_TEST_S3_ACCESS_KEY").ok(),
        std::env::var("LITESTREAM_TEST_S3_SECRET_KEY").ok(),
    ) {
        c.env("LITESTREAM_ACCESS_KEY_ID", ak)
            .env("LITESTREAM_SECRET_ACCESS_KEY", sk);
    }
    c.stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn s3_client(url: &str) -> Option<S3Client> {
    let mut c = S3Config::from_url(url).ok()?;
    c.credentials = Some(litestream::client::s3::Credentials {
        access_key_id: peer_env("LITESTREAM_TEST_S3_ACCESS_KEY")?,
        secret_access_key: peer_env("LITESTREAM_TEST_S3_SECRET_KEY")?,
        session_token: None,
    });
    let c = S3Client::new(c).ok()?;
    c.create_bucket().unwrap();
    Some(c)
}

fn restored_equals(client: &dyn ReplicaClient, out: &Path, want: &str) {
    restore(
        client,
        &RestoreOptions::new(out).integrity_check(IntegrityCheck::Full),
    )
    .unwrap_or_else(|e| panic!("restore to {}: {e}", out.display()));
    assert_eq!(dump(out), want, "{} differs from its source", out.display());
}

/// A litestream.yml written for Litestream: a file replica, an S3 replica, two databases
/// and a directory of databases. It runs unchanged, and every replica restores equal.
#[test]
fn a_litestream_config_runs_unchanged() {
    let Some(endpoint) = peer_env("LITESTREAM_TEST_S3_ENDPOINT") else {
        return;
    };
    let Some(bucket) = peer_env("LITESTREAM_TEST_S3_BUCKET") else {
        return;
    };
    let dir = TempDir::new("cli-config");
    let s3_path = unique("cfg");
    // Litestream never creates buckets: the operator does.
    let s3 = s3_client(&format!(
        "s3://{bucket}/{s3_path}?endpoint={endpoint}&forcePathStyle=true"
    ))
    .unwrap();
    std::fs::create_dir_all(dir.join("many/nested")).unwrap();
    let cfg = dir.join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            r#"# A Litestream v0.5 configuration.
levels:
  - interval: 2s
snapshot:
  interval: 1h
  retention: 24h
dbs:
  - path: {d}/one.db
    monitor-interval: 200ms
    replica:
      type: file
      path: {d}/replica-one
      sync-interval: 200ms
  - path: {d}/two.db
    monitor-interval: 200ms
    replica:
      type: s3
      bucket: {bucket}
      path: {s3_path}
      endpoint: {endpoint}
      region: us-east-1
      force-path-style: true
  - dir: {d}/many
    pattern: "*.db"
    recursive: true
    monitor-interval: 200ms
    replica:
      url: file://{d}/replica-many
"#,
            d = dir.path().display()
        ),
    )
    .unwrap();
    let mut writers: Vec<(std::path::PathBuf, Writer)> =
        ["one.db", "two.db", "many/a.db", "many/nested/b.db"]
            .iter()
            .map(|n| {
                let p = dir.join(n);
                let mut w = Writer::spawn(&p, 5000);
                w.cmd("mixed 1 5");
                (p, w)
            })
            .collect();
    // Our binary accepts the file.
    let (ok, out, err) = run(Command::new(our_bin())
        .args(["databases", "-config"])
        .arg(&cfg));
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(
        out.contains("many/nested/b.db") && out.contains(&format!("s3://{bucket}/{s3_path}")),
        "{out}"
    );
    let log = dir.join("replicate.log");
    let mut child = replicate(&cfg, &log, &[]);
    for (i, (_, w)) in writers.iter_mut().enumerate() {
        w.cmd(&format!("mixed {} 20", 10 + i));
    }
    writers[1].1.cmd("big 3");
    // Wait for every database to reach its replica.
    let (ok, status, err) = run(Command::new(our_bin())
        .args(["status", "-json", "-config"])
        .arg(&cfg)
        .env(
            "LITESTREAM_ACCESS_KEY_ID",
            std::env::var("LITESTREAM_TEST_S3_ACCESS_KEY").unwrap_or_default(),
        )
        .env(
            "LITESTREAM_SECRET_ACCESS_KEY",
            std::env::var("LITESTREAM_TEST_S3_SECRET_KEY").unwrap_or_default(),
        ));
    assert!(ok, "status: {err}");
    assert!(status.contains("\"local_txid\""), "{status}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        terminate(&mut child, Duration::from_secs(40)),
        "replicate did not exit cleanly: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    let wants: Vec<String> = writers.iter().map(|(p, _)| dump(p)).collect();
    drop(writers);

    restored_equals(
        &FileClient::new(dir.join("replica-one")),
        &dir.join("r-one.db"),
        &wants[0],
    );
    restored_equals(&s3, &dir.join("r-two.db"), &wants[1]);
    restored_equals(
        &FileClient::new(dir.join("replica-many/a.db")),
        &dir.join("r-a.db"),
        &wants[2],
    );
    restored_equals(
        &FileClient::new(dir.join("replica-many/nested/b.db")),
        &dir.join("r-b.db"),
        &wants[3],
    );
    // Restore by database path through the config, like `litestream restore /data/db`.
    let out = dir.join("by-path.db");
    let (ok, _, err) = run(Command::new(our_bin())
        .args(["restore", "-config"])
        .arg(&cfg)
        .arg("-o")
        .arg(&out)
        .arg(dir.join("many/nested/b.db")));
    assert!(ok, "{err}");
    assert_eq!(dump(&out), wants[3]);
    // The official binary reads the same file (its own config parser), and restores our
    // file replica through it.
    if let Some(bin) = official_bin() {
        let theirs = dir.join("official-one.db");
        let (ok, _, err) = run(official_cmd(&bin)
            .args(["restore", "-config"])
            .arg(&cfg)
            .arg("-o")
            .arg(&theirs)
            .arg(dir.join("one.db")));
        assert!(ok, "official restore with our config: {err}");
        assert_eq!(dump(&theirs), wants[0]);
    }
}

#[test]
fn exec_forwards_signals_and_returns_the_child_status() {
    let dir = TempDir::new("cli-exec");
    let db = dir.join("app.db");
    let cfg = dir.join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      url: file://{}\n",
            db.display(),
            dir.join("replica").display()
        ),
    )
    .unwrap();
    // The "application": writes, says it is ready, and on SIGTERM writes once more and
    // exits with status 7.
    let app = dir.join("app.py");
    std::fs::write(
        &app,
        format!(
            r#"import signal, sqlite3, sys, time
db = sqlite3.connect({db:?}, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE IF NOT EXISTS t(x)")
for i in range(200):
    db.execute("INSERT INTO t VALUES (?)", (i,))
def stop(sig, frame):
    db.execute("INSERT INTO t VALUES ('terminated')")
    db.close()
    sys.exit(7)
signal.signal(signal.SIGTERM, stop)
open({ready:?}, "w").write("ready")
while True:
    time.sleep(0.05)
"#,
            db = db.display().to_string(),
            ready = dir.join("ready").display().to_string()
        ),
    )
    .unwrap();
    let log = dir.join("log");
    let exec = format!("{} {}", python(), app.display());
    let mut child = replicate(&cfg, &log, &["-exec", &exec]);
    assert!(
        wait_until(Duration::from_secs(20), || dir.join("ready").exists()),
        "app never started"
    );
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = wait_until(Duration::from_secs(40), || {
        child.try_wait().unwrap().is_some()
    });
    assert!(status, "litestream did not exit");
    let code = child.wait().unwrap().code();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(7), "exit status must be the child's: {text}");
    assert!(
        text.contains("forwarding SIGTERM to the subprocess"),
        "{text}"
    );
    // The write the app made while handling SIGTERM is on the replica.
    let out = dir.join("out.db");
    restore(
        &FileClient::new(dir.join("replica")),
        &RestoreOptions::new(&out),
    )
    .unwrap();
    assert_eq!(dump(&out), dump(&db));
    let c = rusqlite::Connection::open(&out).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM t WHERE x = 'terminated'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn bad_configs_fail_with_the_line_and_key() {
    let dir = TempDir::new("cli-bad");
    for (doc, want) in [
        ("dbs:\n  - path: /tmp/x.db\n    replica:\n      url: file:///tmp/r\n      sync-intervall: 1s\n", "line 5: unknown key \"sync-intervall\""),
        ("dbs:\n  - path: /tmp/x.db\n    monitor-interval: soon\n    replica:\n      url: file:///tmp/r\n", "line 3: monitor-interval: invalid duration"),
        ("dbs:\n  - replica:\n      url: file:///tmp/r\n", "line 2: a database needs a path"),
        ("dbs:\n  - path: /tmp/x.db\n    replica:\n      url: file:///tmp/r\n  - path\n", "line 5"),
    ] {
        let cfg = dir.join("bad.yml");
        std::fs::write(&cfg, doc).unwrap();
        let (ok, _, err) = run(Command::new(our_bin()).args(["replicate", "-config"]).arg(&cfg));
        assert!(!ok);
        assert!(err.contains(want) && err.contains("bad.yml"), "{doc:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    let (ok, _, err) = run(Command::new(our_bin())
        .args(["replicate", "-config"])
        .arg(dir.join("missing.yml")));
    assert!(!ok && err.contains("missing.yml"), "{err}");
}

/// Two replicas for one database; one fails (its bucket does not exist yet) while the
/// other stays current; once the bucket appears the failing one catches up.
#[test]
fn one_failing_replica_never_stalls_the_other() {
    let Some(endpoint) = peer_env("LITESTREAM_TEST_S3_ENDPOINT") else {
        return;
    };
    let dir = TempDir::new("cli-two");
    let db = dir.join("app.db");
    let late_bucket = unique("late").replace('_', "-");
    let url = format!("s3://{late_bucket}/db?endpoint={endpoint}&forcePathStyle=true");
    let mut cfg = S3Config::from_url(&url).unwrap();
    cfg.credentials = Some(litestream::client::s3::Credentials {
        access_key_id: peer_env("LITESTREAM_TEST_S3_ACCESS_KEY").unwrap(),
        secret_access_key: peer_env("LITESTREAM_TEST_S3_SECRET_KEY").unwrap(),
        session_token: None,
    });
    let s3 = Arc::new(S3Client::new(cfg).unwrap());
    let file = Arc::new(FileClient::new(dir.join("replica")));
    let mut w = Writer::spawn(&db, 5000);
    w.cmd("mixed 1 5");
    let d = Db::new(&db)
        .monitor_interval(Duration::from_millis(100))
        .replica(Replica::new(file.clone()).sync_interval(Duration::from_millis(100)))
        .replica(Replica::new(s3.clone()).sync_interval(Duration::from_millis(100)));
    let mut store = Store::new(vec![d], CompactionLevels::default()).unwrap();
    store.open().unwrap();
    for i in 0..5 {
        w.cmd(&format!("mixed {} 10", 10 + i));
        let t = store.sync(&db).unwrap();
        // The file replica keeps up although the S3 one fails every time.
        let st = store.status();
        assert!(
            wait_until(Duration::from_secs(10), || store.status()[0].replicas[0]
                .remote_txid
                .is_some_and(|r| r >= t)),
            "file replica fell behind: {st:?}"
        );
    }
    let st = store.status();
    assert!(
        st[0].replicas[1]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("NoSuchBucket")),
        "{:?}",
        st[0].replicas[1]
    );
    // The bucket appears: the S3 replica catches up on its own.
    s3.create_bucket().unwrap();
    w.cmd("mixed 30 5");
    let t = store.sync(&db).unwrap();
    store
        .wait_replicated(&db, Some(t), Duration::from_secs(400))
        .unwrap_or_else(|e| panic!("s3 replica did not catch up: {e}"));
    let want = dump(&db);
    assert!(store.close().unwrap().is_complete());
    drop(w);
    restored_equals(file.as_ref(), &dir.join("from-file.db"), &want);
    restored_equals(s3.as_ref(), &dir.join("from-s3.db"), &want);
    assert_eq!(
        s3.ltx_files(0, Txid::ZERO, false)
            .unwrap()
            .first()
            .map(|f| f.min_txid),
        Some(Txid(1)),
        "the late replica got the whole history"
    );
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let dir = TempDir::new("cli-metrics");
    let db = dir.join("app.db");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = dir.join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "addr: 127.0.0.1:{port}\nlogging:\n  level: debug\n  type: json\ndbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      url: file://{}\n",
            db.display(),
            dir.join("replica").display()
        ),
    )
    .unwrap();
    let mut w = Writer::spawn(&db, 5000);
    w.cmd("mixed 1 20");
    let log = dir.join("log");
    let mut child = replicate(&cfg, &log, &[]);
    let mut body = String::new();
    let got = wait_until(Duration::from_secs(20), || {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        body.clear();
        let _ = s.read_to_string(&mut body);
        body.lines().any(|l| {
            l.starts_with("litestream_replica_operation_total{")
                && l.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v >= 1.0)
        })
    });
    assert!(got, "no metrics: {body}");
    assert!(terminate(&mut child, Duration::from_secs(30)));
    let (head, text) = body.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("text/plain; version=0.0.4"),
        "{head}"
    );
    // Valid exposition format: HELP/TYPE comments, then `name{labels} value` samples.
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
        let name = series.split('{').next().unwrap();
        assert!(
            name.starts_with("litestream_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line:?}"
        );
        // Per-database series carry `db`; Litestream's replica operation series are per
        // backend kind and operation, as its own.
        assert!(
            !series.contains('{')
                || (series.ends_with('}')
                    && (series.contains("db=\"")
                        || series.contains("replica_type=\"")
                        || series.contains("result=\""))),
            "{line:?}"
        );
    }
    for m in [
        "litestream_db_size",
        "litestream_wal_size",
        "litestream_txid",
        "litestream_sync_count",
        "litestream_sync_seconds",
        "litestream_replica_operation_bytes",
    ] {
        assert!(text.contains(&format!("# TYPE {m} ")), "missing {m}");
    }
    // JSON log lines from `logging.type: json`.
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.lines()
            .any(|l| l.starts_with("{\"time\":") && l.contains("\"level\":\"DEBUG\"")),
        "{logs}"
    );
}

/// `replicate -once DB URL` with a relative database path, run from its directory: the
/// replica gets everything and restores equal.
#[test]
fn replicate_once_with_a_relative_path() {
    let dir = TempDir::new("cli-once");
    let db = dir.join("app.db");
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA journal_mode=wal").unwrap();
    create_schema(&conn);
    let mut rng = Rng::new(7);
    for step in 0..50 {
        workload_step(&mut conn, &mut rng, step);
    }
    let (ok, _, err) = run(Command::new(our_bin())
        .current_dir(dir.path())
        .args(["replicate", "-once", "app.db"])
        .arg(format!("file://{}", dir.join("rep").display()))
        .env_remove("LITESTREAM_CONFIG"));
    assert!(ok, "replicate -once failed: {err}");
    // After the run: it adds Litestream's two tables.
    let want = dump_conn(&conn);
    restored_equals(
        &FileClient::new(dir.join("rep")),
        &dir.join("out.db"),
        &want,
    );
}

/// `reset` removes a database's local LTX files (`-dry-run` only lists them) and leaves
/// the database alone; the next `replicate` starts over with a snapshot numbered after
/// what the replica holds, and the replica still restores equal, with ours and the
/// official binary.
#[test]
fn reset_clears_local_state_and_replication_resumes() {
    let dir = TempDir::new("cli-reset");
    let db = dir.join("app.db");
    let rep = format!("file://{}", dir.join("rep").display());
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA journal_mode=wal").unwrap();
    create_schema(&conn);
    let mut rng = Rng::new(11);
    let once = |conn: &rusqlite::Connection| {
        let (ok, _, err) = run(Command::new(our_bin())
            .args(["replicate", "-once"])
            .arg(&db)
            .arg(&rep)
            .env_remove("LITESTREAM_CONFIG"));
        assert!(ok, "replicate -once failed: {err}");
        dump_conn(conn)
    };
    for step in 0..20 {
        workload_step(&mut conn, &mut rng, step);
    }
    once(&conn);
    let l0 = dir.join(".app.db-litestream/ltx/0");
    let before: Vec<_> = std::fs::read_dir(&l0).unwrap().collect();
    assert!(!before.is_empty());
    let reset = |extra: &[&str]| {
        let (ok, out, err) = run(Command::new(our_bin())
            .arg("reset")
            .args(extra)
            .arg(&db)
            .env_remove("LITESTREAM_CONFIG"));
        assert!(ok, "reset failed: {err}");
        out
    };
    let db_bytes = std::fs::read(&db).unwrap();
    let out = reset(&["-dry-run"]);
    assert!(out.contains("would remove"), "{out}");
    assert!(out.contains(".ltx"), "the files are listed: {out}");
    assert_eq!(std::fs::read_dir(&l0).unwrap().count(), before.len());
    let out = reset(&[]);
    assert!(
        out.contains(&format!("removed {} local LTX files", before.len())),
        "{out}"
    );
    assert!(!l0.exists());
    assert_eq!(
        std::fs::read(&db).unwrap(),
        db_bytes,
        "reset touched the database"
    );
    let remote_before = FileClient::new(dir.join("rep"))
        .ltx_files(0, Txid::ZERO, false)
        .unwrap();

    for step in 20..40 {
        workload_step(&mut conn, &mut rng, step);
    }
    let want = once(&conn);
    let remote = FileClient::new(dir.join("rep"))
        .ltx_files(0, Txid::ZERO, false)
        .unwrap();
    let last_before = remote_before.last().unwrap().max_txid;
    assert!(
        remote.last().unwrap().max_txid > last_before,
        "replication continued after TXID {last_before}"
    );
    restored_equals(
        &FileClient::new(dir.join("rep")),
        &dir.join("out.db"),
        &want,
    );
    if let Some(bin) = official_bin() {
        let theirs = dir.join("official.db");
        official_restore(&bin, &rep, &theirs, &[]);
        assert_eq!(dump(&theirs), want);
    }
    // A database the given config does not list is an error, not a guess.
    let cfg = dir.join("litestream.yml");
    std::fs::write(
        &cfg,
        "dbs:\n  - path: /elsewhere.db\n    replica:\n      url: file:///tmp/x\n",
    )
    .unwrap();
    let (ok, _, err) = run(Command::new(our_bin())
        .args(["reset", "-config"])
        .arg(&cfg)
        .arg(&db));
    assert!(!ok && err.contains("not found in config"), "{err}");
}
