//! The control socket: the official 0.5.17 CLI drives our daemon (`info`, `list`,
//! `register`, `unregister`, `start`, `stop`, `sync -wait`), and our CLI drives the official
//! daemon; the socket's permissions, its removal at exit, a stale socket file.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use rusqlite::Connection;

fn config(dir: &TempDir, sock: &Path, db: &Path, replica: &Path) -> PathBuf {
    let cfg = dir.join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "socket:\n  enabled: true\n  path: {}\n  permissions: 0640\ndbs:\n  - path: {}\n    replica:\n      url: file://{}\n",
            sock.display(),
            db.display(),
            replica.display()
        ),
    )
    .unwrap();
    cfg
}

fn spawn(mut c: Command, log: &Path) -> Child {
    c.stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn wait_socket(sock: &Path, daemon: &mut Child, log: &Path) {
    let up = wait_until(Duration::from_secs(30), || {
        std::os::unix::net::UnixStream::connect(sock).is_ok()
            || daemon.try_wait().ok().flatten().is_some()
    });
    assert!(
        up && daemon.try_wait().unwrap().is_none(),
        "daemon did not listen on {}: {}",
        sock.display(),
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Runs `bin CMD -socket S ARGS...` and returns stdout; panics with stderr on failure.
fn ctl(bin: &Path, cmd: &str, sock: &Path, args: &[&str]) -> String {
    let (ok, out, err) = run(Command::new(bin)
        .arg(cmd)
        .arg("-socket")
        .arg(sock)
        .args(args));
    assert!(ok, "{} {cmd} {args:?} failed: {err}{out}", bin.display());
    out
}

fn ctl_fails(bin: &Path, cmd: &str, sock: &Path, args: &[&str]) -> String {
    let (ok, out, err) = run(Command::new(bin)
        .arg(cmd)
        .arg("-socket")
        .arg(sock)
        .args(args));
    assert!(!ok, "{cmd} {args:?} should fail: {out}");
    err
}

fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {out}"))
        .trim()
        .to_string()
}

/// Drives the daemon at `sock` with `client` through every command; `db` is configured
/// (replica `replica`), `db2` gets registered with `replica2`. After each `sync -wait`
/// the official restore of the replica equals the source.
#[allow(clippy::too_many_arguments)]
fn drive(
    client: &Path,
    official: &Path,
    sock: &Path,
    dir: &TempDir,
    db: &Path,
    replica: &Path,
    db2: &Path,
    replica2: &Path,
) {
    let db_s = db.to_str().unwrap();
    let db2_s = db2.to_str().unwrap();
    let info = ctl(client, "info", sock, &["-json"]);
    assert!(info.contains("\"database_count\": 1"), "{info}");
    let list = ctl(client, "list", sock, &[]);
    assert!(list.contains(&format!("{db_s} [replicating]")), "{list}");

    // sync -wait: the replica holds the TXID when the command returns.
    let mut conn = Connection::open(db).unwrap();
    let mut rng = Rng::new(7);
    for i in 0..20 {
        workload_step(&mut conn, &mut rng, i);
    }
    let out = ctl(client, "sync", sock, &["-wait", "-timeout", "60", db_s]);
    let txid: u64 = field(&out, "txid").parse().unwrap();
    let replica_txid: u64 = field(&out, "replica_txid").parse().unwrap();
    assert!(txid > 0 && replica_txid >= txid, "{out}");
    let restored = dir.join(format!("restored-{}.db", unique("a")));
    official_restore(
        official,
        &format!("file://{}", replica.display()),
        &restored,
        &[],
    );
    assert_eq!(dump(&restored), dump(db), "restore after sync -wait");

    // stop: stays listed, stopped; sync refused; start again.
    let out = ctl(client, "stop", sock, &[db_s]);
    assert_eq!(field(&out, "status"), "stopped", "{out}");
    assert!(ctl(client, "list", sock, &[]).contains(&format!("{db_s} [stopped]")));
    let err = ctl_fails(client, "sync", sock, &[db_s]);
    assert!(err.contains("sync failed"), "{err}");
    let out = ctl(client, "stop", sock, &[db_s]);
    assert_eq!(field(&out, "status"), "already_stopped", "{out}");
    let out = ctl(client, "start", sock, &[db_s]);
    assert_eq!(field(&out, "status"), "started", "{out}");
    let out = ctl(client, "start", sock, &[db_s]);
    assert_eq!(field(&out, "status"), "already_running", "{out}");
    for i in 20..30 {
        workload_step(&mut conn, &mut rng, i);
    }
    ctl(client, "sync", sock, &["-wait", db_s]);
    let restored = dir.join(format!("restored-{}.db", unique("b")));
    official_restore(
        official,
        &format!("file://{}", replica.display()),
        &restored,
        &[],
    );
    assert_eq!(dump(&restored), dump(db), "restore after stop/start");

    // register a second database, replicate it, unregister it.
    let _c2 = make_db(db2, 11, 15);
    let url2 = format!("file://{}", replica2.display());
    let out = ctl(client, "register", sock, &["-replica", &url2, db2_s]);
    assert_eq!(field(&out, "status"), "registered", "{out}");
    let out = ctl(client, "register", sock, &["-replica", &url2, db2_s]);
    assert_eq!(field(&out, "status"), "already registered", "{out}");
    let info = ctl(client, "info", sock, &["-json"]);
    assert!(info.contains("\"database_count\": 2"), "{info}");
    // A freshly registered database may not have been opened by its thread yet.
    assert!(wait_until(Duration::from_secs(30), || {
        run(Command::new(client)
            .args(["sync", "-wait", "-socket"])
            .arg(sock)
            .arg(db2_s))
        .0
    }));
    let restored = dir.join(format!("restored-{}.db", unique("c")));
    official_restore(official, &url2, &restored, &[]);
    assert_eq!(
        dump(&restored),
        dump(db2),
        "restore of the registered database"
    );
    let out = ctl(client, "unregister", sock, &[db2_s]);
    assert_eq!(field(&out, "status"), "unregistered", "{out}");
    assert!(
        field(&out, "final_txid").parse::<u64>().unwrap() > 0,
        "{out}"
    );
    let list = ctl(client, "list", sock, &["-json"]);
    assert!(!list.contains(db2_s) && list.contains(db_s), "{list}");
    let out = ctl(client, "unregister", sock, &[db2_s]);
    assert_eq!(field(&out, "status"), "already_unregistered", "{out}");
}

#[test]
fn official_cli_drives_our_daemon() {
    let Some(official) = official_bin() else {
        return;
    };
    let dir = TempDir::new("socket-ours");
    let (db, replica) = (dir.join("app.db"), dir.join("replica"));
    let (db2, replica2) = (dir.join("second.db"), dir.join("replica2"));
    let sock = dir.join("ls.sock");
    // A stale socket left by a killed daemon does not stop a new start.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(std::fs::symlink_metadata(&sock)
        .unwrap()
        .file_type()
        .is_socket());
    let _conn = make_db(&db, 3, 10);
    let cfg = config(&dir, &sock, &db, &replica);
    let log = dir.join("daemon.log");
    let mut c = Command::new(our_bin());
    c.args(["replicate", "-config"]).arg(&cfg);
    let mut daemon = spawn(c, &log);
    wait_socket(&sock, &mut daemon, &log);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640, "socket permissions");
    drive(
        &official, &official, &sock, &dir, &db, &replica, &db2, &replica2,
    );
    assert!(
        terminate(&mut daemon, Duration::from_secs(60)),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(!sock.exists(), "socket file removed at exit");
}

#[test]
fn our_cli_drives_the_official_daemon() {
    let Some(official) = official_bin() else {
        return;
    };
    let dir = TempDir::new("socket-official");
    let (db, replica) = (dir.join("app.db"), dir.join("replica"));
    let (db2, replica2) = (dir.join("second.db"), dir.join("replica2"));
    let sock = dir.join("ls.sock");
    let _conn = make_db(&db, 5, 10);
    let cfg = config(&dir, &sock, &db, &replica);
    let log = dir.join("daemon.log");
    let mut daemon = spawn(official_replicate_by_config(&cfg), &log);
    wait_socket(&sock, &mut daemon, &log);
    drive(
        &our_bin(),
        &official,
        &sock,
        &dir,
        &db,
        &replica,
        &db2,
        &replica2,
    );
    terminate(&mut daemon, Duration::from_secs(60));
}

#[test]
fn our_cli_usage_errors_match() {
    let (ok, _, err) = run(Command::new(our_bin()).args(["sync", "-socket", "/nonexistent.sock"]));
    assert!(!ok && err.contains("database path required"), "{err}");
    let (ok, _, err) = run(Command::new(our_bin()).args(["register", "/a.db"]));
    assert!(!ok && err.contains("-replica is required"), "{err}");
    let (ok, _, err) =
        run(Command::new(our_bin()).args(["list", "-socket", "/nonexistent/ls.sock"]));
    assert!(
        !ok && err.contains("failed to connect to control socket"),
        "{err}"
    );
}
