//! A full disk, on the replica's side and under litestream's own local files: the error
//! says what failed and where, the application keeps writing, nothing is lost, and
//! replication catches up by itself once there is space again.
//!
//! The full disk is a small tmpfs mounted inside the test directory (needs root, as in
//! CI; elsewhere the tests say they are skipped).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use litestream::client::FileClient;
use litestream::restore::{restore, IntegrityCheck, RestoreOptions};
use litestream::{CompactionLevels, Db, Replica, Store};

/// A tmpfs of a given size, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "cannot mount a tmpfs at {} (root is needed), and CI must run this test",
                dir.display()
            );
            eprintln!("skipped: cannot mount a tmpfs (root is needed)");
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }

    /// Gives the file system more room (the disk was "cleaned up").
    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Polls `f` until it returns `Some` or `secs` pass.
fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn restore_equals(replica: &Path, out: &Path, want: &str) {
    restore(
        &FileClient::new(replica),
        &RestoreOptions::new(out).integrity_check(IntegrityCheck::Full),
    )
    .unwrap();
    assert_eq!(dump(out), want, "restore differs from the source");
    if let Some(bin) = official_bin() {
        let theirs = out.with_extension("official.db");
        official_restore(&bin, &format!("file://{}", replica.display()), &theirs, &[]);
        assert_eq!(dump(&theirs), want, "official restore differs");
    }
}

/// No temp file of an upload cut short by the full disk is left behind.
fn no_temp_files(dir: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return true;
    };
    rd.flatten().all(|e| {
        let p = e.path();
        if p.is_dir() {
            no_temp_files(&p)
        } else {
            !p.to_string_lossy().ends_with(".tmp")
        }
    })
}

/// A writer on `dir/app.db`, a few transactions in, and an open store replicating it to
/// `replica` every 50 ms (its local state under `meta` when given).
fn start(dir: &TempDir, replica: &Path, meta: Option<PathBuf>) -> (PathBuf, Writer, Store) {
    let db = dir.join("app.db");
    let mut w = Writer::spawn(&db, 5000);
    w.cmd("mixed 1 5");
    let mut d = Db::new(&db)
        .monitor_interval(Duration::from_millis(50))
        .replica(
            Replica::from_url(&format!("file://{}", replica.display()))
                .unwrap()
                .sync_interval(Duration::from_millis(50)),
        );
    if let Some(m) = meta {
        d = d.meta_path(m);
    }
    let mut store = Store::new(vec![d], CompactionLevels::default()).unwrap();
    store.open().unwrap();
    store.sync(&db).unwrap();
    // About 6 MB of incompressible rows: more than the small disk holds.
    w.cmd("big 2");
    (db, w, store)
}

/// The error says what failed, where (`place`), and what to do.
fn assert_clear(err: &str, place: &str) {
    eprintln!("error: {err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains(place), "the error names the path: {err}");
    assert!(
        err.contains("free space"),
        "the error says what to do: {err}"
    );
}

/// The disk gets room again: after more writes the replica catches up by itself, leaves
/// no temp files, and restores equal to the source.
fn space_again(
    fs: &Tmpfs,
    dir: &TempDir,
    db: &Path,
    mut w: Writer,
    mut store: Store,
    replica: &Path,
) {
    fs.resize("64m");
    w.cmd("mixed 4 5");
    let want = dump(db);
    store.sync(db).unwrap();
    store
        .wait_replicated(db, None, Duration::from_secs(60))
        .unwrap();
    assert!(store.status()[0].error.is_none());
    assert!(store.close().unwrap().is_complete());
    drop(w);
    assert!(no_temp_files(replica), "temp files left on the replica");
    restore_equals(replica, &dir.join("out.db"), &want);
}

#[test]
fn replica_disk_full_then_space_again() {
    let dir = TempDir::new("full-replica");
    let Some(fs) = Tmpfs::mount(&dir.join("replica-fs"), "2m") else {
        return;
    };
    let replica = dir.join("replica-fs/replica");
    let (db, mut w, store) = start(&dir, &replica, None);
    let err = wait_for(30, "the replica's full-disk error", || {
        store.status()[0].replicas[0].error.clone()
    });
    assert_clear(&err, "replica-fs");
    // The application is not held up, and its writes are kept locally meanwhile.
    w.cmd("mixed 3 10");
    let st = &store.status()[0];
    assert!(st.error.is_none(), "the local side is fine: {:?}", st.error);
    assert!(st.replicas[0].remote_txid.unwrap_or_default() < st.local_txid);
    space_again(&fs, &dir, &db, w, store, &replica);
}

#[test]
fn local_disk_full_then_space_again() {
    let dir = TempDir::new("full-local");
    let meta = dir.join("meta-fs");
    let Some(fs) = Tmpfs::mount(&meta, "1m") else {
        return;
    };
    let replica = dir.join("replica");
    let (db, mut w, store) = start(&dir, &replica, Some(meta.join("state")));
    let err = wait_for(30, "the local full-disk error", || {
        store.status()[0].error.clone()
    });
    assert_clear(&err, "meta-fs");
    // The application keeps writing; its frames wait in the WAL.
    w.cmd("mixed 3 10");
    w.cmd("checkpoint PASSIVE");
    space_again(&fs, &dir, &db, w, store, &replica);
}

/// A restore whose output disk fills up: its pages are written by a second thread, whose
/// error must come back as the restore's, naming the output and what to do; nothing is
/// left on the full disk, and with room again the same restore succeeds.
#[test]
fn restore_into_a_full_disk_fails_cleanly() {
    let dir = TempDir::new("full-restore");
    let replica = dir.join("replica");
    let (db, w, mut store) = start(&dir, &replica, None);
    store.sync(&db).unwrap();
    store
        .wait_replicated(&db, None, Duration::from_secs(60))
        .unwrap();
    let want = dump(&db);
    assert!(store.close().unwrap().is_complete());
    drop(w);
    let Some(fs) = Tmpfs::mount(&dir.join("out-fs"), "2m") else {
        return;
    };
    let out = dir.join("out-fs/out.db");
    let err = restore(&FileClient::new(&replica), &RestoreOptions::new(&out))
        .expect_err("6 MB cannot be restored into 2 MB")
        .to_string();
    assert_clear(&err, "out-fs");
    assert!(
        !out.exists(),
        "a partial output was left at {}",
        out.display()
    );
    let left: Vec<_> = std::fs::read_dir(dir.join("out-fs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "files left on the full disk: {left:?}");
    fs.resize("64m");
    restore_equals(&replica, &out, &want);
}
