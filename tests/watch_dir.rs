//! `replicate` with databases still to come: a watched directory that starts empty, and a
//! config listing no database with the control socket on (databases come by `register`);
//! what a watched directory takes (SQLite files only) and keeps watching.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// Our CLI's control command `args[0]` against `sock`: success and output.
fn ctl(sock: &Path, args: &[&str]) -> (bool, String) {
    let (ok, out, err) = run(Command::new(our_bin())
        .arg(args[0])
        .arg("-socket")
        .arg(sock)
        .args(&args[1..]));
    (ok, out + &err)
}

/// Starts `replicate -config cfg`, its stderr in `log`, and waits for its socket.
fn start(cfg: &Path, sock: &Path, log: &Path) -> Child {
    let mut daemon = Command::new(our_bin())
        .args(["replicate", "-config"])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let up = wait_until(Duration::from_secs(30), || {
        ctl(sock, &["list"]).0 || daemon.try_wait().ok().flatten().is_some()
    });
    assert!(
        up && daemon.try_wait().unwrap().is_none(),
        "daemon did not start: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    daemon
}

/// A config with the socket at `sock` and the `dbs:` block `dbs`.
fn config(dir: &TempDir, sock: &Path, dbs: &str) -> PathBuf {
    let cfg = dir.join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "socket:\n  enabled: true\n  path: {}\ndbs:{dbs}",
            sock.display()
        ),
    )
    .unwrap();
    cfg
}

/// A `dbs:` block watching `data` for `*.db`, replicated under `replica`.
fn watched(data: &Path, replica: &Path) -> String {
    format!(
        "\n  - dir: {}\n    pattern: \"*.db\"\n    watch: true\n    monitor-interval: 100ms\n    replica:\n      type: file\n      path: {}\n",
        data.display(),
        replica.display()
    )
}

/// Waits until `sync -wait` of `db` succeeds, then restores `replica` and compares.
fn assert_replicated(dir: &TempDir, sock: &Path, db: &Path, replica: &Path) {
    let db_s = db.to_str().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || ctl(sock, &["list"])
            .1
            .contains(&format!("{db_s} [replicating]"))),
        "{} never replicated: {}",
        db.display(),
        ctl(sock, &["list"]).1
    );
    assert!(wait_until(Duration::from_secs(30), || {
        ctl(sock, &["sync", "-wait", db_s]).0
    }));
    let restored = dir.join(unique("restored"));
    let (ok, _, err) = run(Command::new(our_bin())
        .args(["restore", "-o"])
        .arg(&restored)
        .arg(format!("file://{}", replica.display())));
    assert!(ok, "{err}");
    assert_eq!(dump(&restored), dump(db));
}

/// Fails without the fix: `replicate` refused to start ("no databases configured").
#[test]
fn an_empty_watched_directory_starts_and_takes_a_new_database() {
    let dir = TempDir::new("watch-empty");
    let (data, replica) = (dir.join("data"), dir.join("replica"));
    std::fs::create_dir_all(&data).unwrap();
    let sock = dir.join("ls.sock");
    let cfg = config(&dir, &sock, &watched(&data, &replica));
    let log = dir.join("daemon.log");
    let mut daemon = start(&cfg, &sock, &log);
    let db = data.join("a.db");
    let _c = make_db(&db, 3, 8);
    assert_replicated(&dir, &sock, &db, &replica.join("a.db"));
    assert!(terminate(&mut daemon, Duration::from_secs(60)));
}

/// Fails without the fix: `replicate` refused to start ("no databases configured").
#[test]
fn no_databases_and_the_socket_on_takes_a_registered_one() {
    let dir = TempDir::new("socket-empty");
    let sock = dir.join("ls.sock");
    let cfg = config(&dir, &sock, " []\n");
    let log = dir.join("daemon.log");
    let mut daemon = start(&cfg, &sock, &log);
    let (db, replica) = (dir.join("app.db"), dir.join("replica"));
    let _c = make_db(&db, 4, 8);
    let url = format!("file://{}", replica.display());
    let (ok, out) = ctl(&sock, &["register", "-replica", &url, db.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert_replicated(&dir, &sock, &db, &replica);
    assert!(terminate(&mut daemon, Duration::from_secs(60)));
}

/// With no database, no watched directory and no socket nothing could ever be replicated:
/// refused (Litestream logs an error and idles).
#[test]
fn nothing_that_could_add_a_database_is_refused() {
    let dir = TempDir::new("nothing");
    let cfg = dir.join("litestream.yml");
    std::fs::write(&cfg, "dbs: []\n").unwrap();
    let (ok, _, err) = run(Command::new(our_bin())
        .args(["replicate", "-config"])
        .arg(&cfg));
    assert!(!ok && err.contains("no databases configured"), "{err}");
}

/// The watcher's rescans (one at start, one after each write in the directory) never open
/// a database it replicates to read its header: closing that descriptor dropped every
/// POSIX lock the daemon held on the file, so the application's last close took the
/// database for itself and deleted the WAL under the daemon's connections.
#[test]
fn rescans_keep_the_daemons_locks_on_watched_databases() {
    let dir = TempDir::new("watch-locks");
    let (data, replica) = (dir.join("data"), dir.join("replica"));
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("a.db");
    let mut w = Writer::spawn(&db, 5000);
    w.cmd("mixed 1 20");
    let sock = dir.join("ls.sock");
    let cfg = config(&dir, &sock, &watched(&data, &replica));
    let log = dir.join("daemon.log");
    let mut daemon = start(&cfg, &sock, &log);
    assert_replicated(&dir, &sock, &db, &replica.join("a.db"));
    // Writes in the directory wake the watcher, which rescans it.
    for seed in 2..6 {
        w.cmd(&format!("mixed {seed} 5"));
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(w);
    assert!(
        data.join("a.db-wal").exists(),
        "the application's last close deleted the WAL: the daemon's locks were dropped"
    );
    assert_replicated(&dir, &sock, &db, &replica.join("a.db"));
    assert!(terminate(&mut daemon, Duration::from_secs(60)));
}
