//! Files we create are never readable by more users than the database: the local state
//! directory (its L0 files and snapshots hold the database's pages) is narrowed to who
//! may read the database and its files get the database's bits; a restored database (and
//! its temp file, the same inode) is owner-only unless it replaces or sits beside a
//! database whose bits it then takes.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use litestream::restore::{restore, RestoreOptions, DEFAULT_MODE};
use litestream::{CompactionLevels, Db, FileClient, Replica, Store};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Replicates a database with mode `db_mode` to `<dir>/replica`; returns the local state
/// directory's mode and the union of its L0 files' modes.
fn meta_mode_for(dir: &TempDir, db_mode: u32) -> (u32, u32) {
    let db = dir.join("app.db");
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    create_schema(&conn);
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(db_mode)).unwrap();
    workload_step(&mut conn, &mut Rng::new(1), 0);
    let replica = Replica::new(Arc::new(FileClient::new(dir.join("replica"))));
    let mut store = Store::new(
        vec![Db::new(&db)
            .monitor_interval(Duration::from_millis(20))
            .replica(replica)],
        CompactionLevels::default(),
    )
    .unwrap();
    store.open().unwrap();
    let t = store.sync(&db).unwrap();
    store
        .wait_replicated(&db, Some(t), Duration::from_secs(30))
        .unwrap();
    assert!(store.close().unwrap().is_complete());
    let l0 = meta_l0_dir(&db);
    let meta = l0.parent().unwrap().parent().unwrap().to_path_buf();
    let mut files = 0;
    for e in std::fs::read_dir(&l0).unwrap() {
        files |= mode(&e.unwrap().path());
    }
    assert_ne!(files, 0, "no L0 file in {}", l0.display());
    (mode(&meta), files)
}

#[test]
fn the_local_state_is_no_wider_than_the_database() {
    // A private database: the local state is private, whatever the umask gave it.
    let (m, files) = meta_mode_for(&TempDir::new("perms"), 0o600);
    assert_eq!(m & 0o077, 0, "local state of a 0600 database: {m:o}");
    assert_eq!(files & 0o077, 0, "L0 files of a 0600 database: {files:o}");
    // Group-readable: the group may enter, others may not.
    let (m, files) = meta_mode_for(&TempDir::new("perms"), 0o640);
    assert_eq!(m & 0o007, 0, "local state of a 0640 database: {m:o}");
    assert_eq!(files & 0o027, 0, "L0 files of a 0640 database: {files:o}");
}

#[test]
fn a_restored_database_is_owner_only_unless_asked() {
    let dir = TempDir::new("perms-restore");
    meta_mode_for(&dir, 0o644);
    let client = FileClient::new(dir.join("replica"));
    let out = dir.join("default.db");
    restore(&client, &RestoreOptions::new(&out)).unwrap();
    assert_eq!(DEFAULT_MODE, 0o600);
    assert_eq!(mode(&out), 0o600, "default mode of a restored database");
    let out = dir.join("asked.db");
    restore(&client, &RestoreOptions::new(&out).mode(0o640)).unwrap();
    assert_eq!(mode(&out), 0o640 & !umask(), "asked 0640");
    // Nothing but the outputs, the database and its state were left.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("app.db") && n != "replica" && n != ".app.db-litestream")
        .collect();
    names.sort();
    assert_eq!(names, ["asked.db", "default.db"]);
}

/// `litestream restore`: owner-only from a URL; the configured database's bits when
/// restored beside it with `-o`; the replaced database's bits with `-force`.
#[test]
fn the_cli_restores_with_the_databases_own_bits() {
    let dir = TempDir::new("perms-cli");
    meta_mode_for(&dir, 0o640);
    let db = dir.join("app.db");
    let url = format!("file://{}", dir.join("replica").display());
    let restore_cli = |args: &[&str]| {
        let (ok, out, err) = run(std::process::Command::new(our_bin())
            .arg("restore")
            .args(args));
        assert!(ok, "restore {args:?}: {out}{err}");
    };
    let from_url = dir.join("from-url.db");
    restore_cli(&["-o", from_url.to_str().unwrap(), &url]);
    assert_eq!(mode(&from_url), 0o600, "restored from a URL");

    let cfg = dir.join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      url: {url}\n",
            db.display()
        ),
    )
    .unwrap();
    let beside = dir.join("beside.db");
    restore_cli(&[
        "-config",
        cfg.to_str().unwrap(),
        "-o",
        beside.to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    assert_eq!(
        mode(&beside),
        0o640 & !umask(),
        "restored beside a 0640 database"
    );

    std::fs::set_permissions(&from_url, std::fs::Permissions::from_mode(0o604)).unwrap();
    restore_cli(&["-force", "-o", from_url.to_str().unwrap(), &url]);
    assert_eq!(
        mode(&from_url),
        0o604 & !umask(),
        "restored over a 0604 database"
    );
}

/// This process's umask (from /proc).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}
