//! The daemon's operator features: heartbeats (healthy, stalled, failing), validation of
//! replica levels, `watch: true` directories, and every Prometheus metric the official
//! daemon exports.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use litestream::{CompactionLevels, Db, Heartbeat, Replica, Store, ValidationKind};

/// A local HTTP server that counts GETs of `/ping` and answers 200.
fn counting_server() -> (String, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ping", l.local_addr().unwrap());
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
            if first.starts_with("GET /ping ") {
                h.fetch_add(1, Ordering::SeqCst);
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (url, hits)
}

fn heartbeat(url: &str) -> Heartbeat {
    Heartbeat::new(url, Duration::from_millis(200))
        .unwrap()
        .check_every(Duration::from_millis(20))
}

#[test]
fn heartbeat_only_while_every_database_syncs() {
    let dir = TempDir::new("heartbeat");
    let (url, hits) = counting_server();
    // Healthy: the database syncs to its replica, so the URL is pinged again and again.
    let db = dir.join("app.db");
    let _c = make_db(&db, 1, 5);
    let d = Db::new(&db)
        .monitor_interval(Duration::from_millis(50))
        .replica(Replica::from_url(&format!("file://{}", dir.join("replica").display())).unwrap());
    let mut store = Store::new(vec![d], CompactionLevels::default())
        .unwrap()
        .heartbeat(heartbeat(&url));
    store.open().unwrap();
    assert!(wait_until(Duration::from_secs(30), || hits
        .load(Ordering::SeqCst)
        >= 3));
    assert!(store.monitor().stats().heartbeats_sent >= 3);
    store.close().unwrap();

    // Stalled: the replica cannot be written (its directory would be under a file), so
    // the database never syncs to it and no heartbeat is sent, check after check.
    let (url2, hits2) = counting_server();
    let blocker = dir.join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let db2 = dir.join("stalled.db");
    let _c2 = make_db(&db2, 2, 5);
    let d = Db::new(&db2)
        .monitor_interval(Duration::from_millis(50))
        .replica(Replica::from_url(&format!("file://{}/sub", blocker.display())).unwrap());
    let mut store = Store::new(vec![d], CompactionLevels::default())
        .unwrap()
        .heartbeat(heartbeat(&url2))
        .shutdown_timeout(Duration::from_millis(100));
    store.open().unwrap();
    assert!(wait_until(Duration::from_secs(30), || {
        store.monitor().stats().heartbeats_skipped >= 20
    }));
    assert_eq!(
        hits2.load(Ordering::SeqCst),
        0,
        "no heartbeat while stalled"
    );
    assert_eq!(store.monitor().stats().heartbeats_sent, 0);
    let _ = store.close();

    // Failing: nothing listens at the URL (port 9, discard: privileged, never handed out
    // by bind(0), so no other test's server can be there); counted, logged, never fatal.
    let dead_url = "http://127.0.0.1:9/ping";
    let d = Db::new(&db)
        .monitor_interval(Duration::from_millis(50))
        .replica(Replica::from_url(&format!("file://{}", dir.join("replica").display())).unwrap());
    let mut store = Store::new(vec![d], CompactionLevels::default())
        .unwrap()
        .heartbeat(heartbeat(dead_url));
    store.open().unwrap();
    assert!(wait_until(Duration::from_secs(60), || {
        store.monitor().stats().heartbeat_errors >= 2
    }));
    let t = store.sync(&db).unwrap();
    store
        .wait_replicated(&db, Some(t), Duration::from_secs(30))
        .unwrap();
    assert!(store.close().unwrap().is_complete());
}

#[test]
fn heartbeat_config_rules() {
    assert!(Heartbeat::new("ftp://x/y", Duration::from_secs(60)).is_err());
    assert!(Heartbeat::new("https://hc-ping.com/abc", Duration::from_secs(60)).is_ok());
    let dir = TempDir::new("heartbeat-config");
    let cfg = dir.join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "heartbeat-url: http://127.0.0.1:9/x\nheartbeat-interval: 30s\ndbs:\n  - path: {}\n    replica:\n      url: file://{}\n",
            dir.join("a.db").display(),
            dir.join("r").display()
        ),
    )
    .unwrap();
    let (ok, _, err) = run(Command::new(our_bin())
        .args(["replicate", "-config"])
        .arg(&cfg));
    assert!(
        !ok && err.contains("heartbeat interval must be at least 1 minute"),
        "{err}"
    );
}

#[test]
fn validation_reports_a_planted_gap() {
    let dir = TempDir::new("validation");
    let db = dir.join("app.db");
    let replica = dir.join("replica");
    let _c = make_db(&db, 3, 10);
    let d = Db::new(&db)
        .monitor_interval(Duration::from_millis(50))
        .replica(Replica::from_url(&format!("file://{}", replica.display())).unwrap());
    let mut store = Store::new(vec![d], CompactionLevels::default())
        .unwrap()
        .compaction(false)
        .validation_interval(Duration::from_millis(50));
    store.open().unwrap();
    let t = store.sync(&db).unwrap();
    store
        .wait_replicated(&db, Some(t), Duration::from_secs(30))
        .unwrap();
    let h = store.handle();
    assert_eq!(h.validate().unwrap(), vec![], "a healthy replica");
    // Plant a gap in level 1 and an overlap in level 2.
    for (level, name) in [
        (1, "0000000000000001-0000000000000003.ltx"),
        (1, "0000000000000006-0000000000000008.ltx"),
        (2, "0000000000000001-0000000000000005.ltx"),
        (2, "0000000000000004-0000000000000008.ltx"),
    ] {
        let d = replica.join(format!("ltx/{level}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), b"planted").unwrap();
    }
    assert!(wait_until(Duration::from_secs(30), || {
        store.monitor().stats().validation_errors.len() == 2
    }));
    let errs = store.monitor().stats().validation_errors;
    let gap = errs.iter().find(|e| e.kind == ValidationKind::Gap).unwrap();
    assert_eq!(
        (gap.level, gap.prev.as_str(), gap.curr.as_str()),
        (
            1,
            "0000000000000001-0000000000000003.ltx",
            "0000000000000006-0000000000000008.ltx"
        )
    );
    assert!(gap.to_string().contains("TXID gap"), "{gap}");
    let overlap = errs
        .iter()
        .find(|e| e.kind == ValidationKind::Overlap)
        .unwrap();
    assert_eq!(overlap.level, 2);
    store.close().unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn ctl(sock: &Path, args: &[&str]) -> (bool, String) {
    let (ok, out, err) = run(Command::new(our_bin())
        .arg(args[0])
        .arg("-socket")
        .arg(sock)
        .args(&args[1..]));
    (ok, out + &err)
}

#[test]
fn watched_directory_and_every_metric() {
    let dir = TempDir::new("watch");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let first = data.join("first.db");
    let _c1 = make_db(&first, 4, 5);
    let sock = dir.join("ls.sock");
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = dir.join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "addr: {addr}\nsocket:\n  enabled: true\n  path: {}\nvalidation:\n  interval: 1s\ndbs:\n  - dir: {}\n    pattern: \"*.db\"\n    watch: true\n    monitor-interval: 100ms\n    replica:\n      type: file\n      path: {}\n      name: legacy\n",
            sock.display(),
            data.display(),
            dir.join("replica").display()
        ),
    )
    .unwrap();
    let log = dir.join("daemon.log");
    let mut daemon = Command::new(our_bin())
        .args(["replicate", "-config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || ctl(&sock, &["list"]).0),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let first_s = first.to_str().unwrap();
    assert!(ctl(&sock, &["list"])
        .1
        .contains(&format!("{first_s} [replicating]")));
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("key is deprecated and has no effect"));

    // A database created after start is replicated.
    let second = data.join("second.db");
    let second_s = second.to_str().unwrap();
    let _c2 = make_db(&second, 5, 12);
    assert!(wait_until(Duration::from_secs(30), || {
        ctl(&sock, &["list"])
            .1
            .contains(&format!("{second_s} [replicating]"))
    }));
    assert!(wait_until(Duration::from_secs(30), || {
        ctl(&sock, &["sync", "-wait", second_s]).0
    }));
    let restored = dir.join("second-restored.db");
    let (ok, _, err) = run(Command::new(our_bin())
        .args(["restore", "-o"])
        .arg(&restored)
        .arg(format!(
            "file://{}/second.db",
            dir.join("replica").display()
        )));
    assert!(ok, "{err}");
    assert_eq!(dump(&restored), dump(&second));

    // Every metric the official daemon exports, with its labels.
    ctl(&sock, &["sync", "-wait", first_s]);
    let m = get(&addr, "/metrics");
    for name in [
        "litestream_db_size{db=",
        "litestream_wal_size{db=",
        "litestream_total_wal_bytes{db=",
        "litestream_txid{db=",
        "litestream_sync_count{db=",
        "litestream_sync_error_count{db=",
        "litestream_sync_seconds{db=",
        "litestream_disk_full{db=",
        "litestream_checkpoint_count{db=",
        "litestream_checkpoint_error_count{db=",
        "litestream_checkpoint_seconds{db=",
        "litestream_compaction_verify_error_count{db=",
        "litestream_l0_retention_files_total{db=",
        "litestream_replica_operation_total{replica_type=\"file\",operation=\"PUT\"}",
        "litestream_replica_operation_total{replica_type=\"file\",operation=\"LIST\"}",
        "litestream_replica_operation_bytes{replica_type=\"file\",operation=\"PUT\"}",
        "litestream_replica_operation_duration_seconds_bucket{replica_type=\"file\",operation=\"PUT\",le=\"0.01\"}",
        "litestream_replica_operation_duration_seconds_count{replica_type=\"file\",operation=\"PUT\"}",
        "# TYPE litestream_replica_operation_errors_total counter",
        "mode=\"PASSIVE\"",
        "status=\"not_compacted\"",
        "litestream_validation_runs_total",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics:\n{m}");
    }

    // A removed database is stopped and dropped.
    drop(_c2);
    std::fs::remove_file(&second).unwrap();
    assert!(wait_until(Duration::from_secs(30), || {
        let (ok, out) = ctl(&sock, &["list"]);
        ok && !out.contains(second_s) && out.contains(first_s)
    }));
    assert!(
        terminate(&mut daemon, Duration::from_secs(60)),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
}

#[test]
fn version_verbose_and_once_flags() {
    let (ok, out, _) = run(Command::new(our_bin()).args(["version", "-verbose"]));
    assert!(
        ok && out.contains("SQLite:") && out.contains("OS/Arch:"),
        "{out}"
    );
    let (ok, _, err) =
        run(Command::new(our_bin()).args(["replicate", "-force-snapshot", "/a.db", "file:///b"]));
    assert!(!ok && err.contains("without -once"), "{err}");
    // -once -force-snapshot puts a snapshot on level 9; -enforce-retention keeps it (new).
    let dir = TempDir::new("once");
    let db = dir.join("a.db");
    let _c = make_db(&db, 9, 5);
    let replica = dir.join("replica");
    let url = format!("file://{}", replica.display());
    let (ok, _, err) = run(Command::new(our_bin())
        .args([
            "replicate",
            "-once",
            "-force-snapshot",
            "-enforce-retention",
        ])
        .arg(&db)
        .arg(&url));
    assert!(ok, "{err}");
    assert!(
        max_txid_in(&replica.join("ltx/9")) > 0,
        "a snapshot on level 9"
    );
}
