//! Damaged replicas give clear errors that name the file, and a failed restore leaves
//! nothing behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use litestream::client::FileClient;
use litestream::restore::{restore, RestoreOptions};
use litestream::{Error, ReplicaClient, Txid};

/// A replica written by the official binary with `replicate -once` after each of several
/// writes: L0 files 1..=n, no compactions.
fn official_replica(dir: &TempDir) -> Option<(PathBuf, String)> {
    let bin = official_bin()?;
    let db = dir.join("src.db");
    let replica = dir.join("replica");
    let url = format!("file://{}", replica.display());
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    create_schema(&conn);
    let mut rng = Rng::new(3);
    for step in 0..5 {
        if step == 2 {
            big_transaction(&mut conn, &mut rng);
        } else {
            workload_step(&mut conn, &mut rng, step);
        }
        let (ok, _, err) = run(official_cmd(&bin)
            .arg("replicate")
            .arg("-once")
            .arg(&db)
            .arg(&url));
        assert!(ok, "official replicate -once: {err}");
    }
    let want = dump_conn(&conn);
    Some((replica, want))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Restores `replica` into a fresh directory and asserts it fails leaving the directory empty.
fn restore_fails(dir: &TempDir, replica: &Path, tag: &str) -> Error {
    let out_dir = dir.join(format!("out-{tag}"));
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("restored.db");
    let err = restore(&FileClient::new(replica), &RestoreOptions::new(&out))
        .err()
        .unwrap_or_else(|| panic!("{tag}: restore of a damaged replica succeeded"));
    assert!(
        entries(&out_dir).is_empty(),
        "{tag}: left behind {:?}",
        entries(&out_dir)
    );
    err
}

#[test]
fn damaged_replicas_fail_clearly_and_leave_nothing() {
    let dir = TempDir::new("damage");
    let Some((replica, want)) = official_replica(&dir) else {
        return;
    };
    let client = FileClient::new(&replica);
    let files = client.ltx_files(0, Txid::ZERO, false).unwrap();
    assert!(files.len() >= 4, "expected several L0 files, got {files:?}");

    // Sanity: the undamaged replica restores.
    let ok_out = dir.join("ok.db");
    restore(&client, &RestoreOptions::new(&ok_out)).unwrap();
    assert_eq!(dump(&ok_out), want);

    for (i, f) in files.iter().enumerate() {
        let name = f.name();
        let path_in = |r: &Path| r.join("ltx/0").join(&name);
        let len = f.size as usize;
        // One flipped byte: in the header, in the first page's payload, in the middle, in
        // the page index and in the trailer checksum.
        for (j, off) in [13usize, 118, len / 2, len - 20, len - 1]
            .into_iter()
            .enumerate()
        {
            let copy = dir.join(format!("flip-{i}-{j}"));
            copy_dir(&replica, &copy);
            let mut data = std::fs::read(path_in(&copy)).unwrap();
            data[off] ^= 0x01;
            std::fs::write(path_in(&copy), &data).unwrap();
            let err = restore_fails(&dir, &copy, &format!("flip-{i}-{j}"));
            let msg = err.to_string();
            assert!(
                matches!(err, Error::Corrupt { .. } | Error::ChecksumMismatch { .. }),
                "flip at {off} of {name}: unexpected error {msg}"
            );
            assert!(msg.contains(&name), "error does not name the file: {msg}");
        }
        // Truncated.
        let copy = dir.join(format!("trunc-{i}"));
        copy_dir(&replica, &copy);
        let data = std::fs::read(path_in(&copy)).unwrap();
        std::fs::write(path_in(&copy), &data[..len * 2 / 3]).unwrap();
        let err = restore_fails(&dir, &copy, &format!("trunc-{i}"));
        let msg = err.to_string();
        assert!(
            msg.contains(&name) && msg.contains("truncated"),
            "truncation: {msg}"
        );
    }

    // A missing middle file.
    let copy = dir.join("missing");
    copy_dir(&replica, &copy);
    let mid = &files[files.len() / 2];
    std::fs::remove_file(copy.join("ltx/0").join(mid.name())).unwrap();
    let err = restore_fails(&dir, &copy, "missing");
    assert!(matches!(err, Error::NonContiguous { .. }), "{err}");
    assert!(err.to_string().contains("non-contiguous"), "{err}");

    // An empty replica, and one that does not exist.
    std::fs::create_dir_all(dir.join("empty/ltx/0")).unwrap();
    for (tag, r) in [("empty", dir.join("empty")), ("absent", dir.join("absent"))] {
        let err = restore_fails(&dir, &r, tag);
        assert!(matches!(err, Error::NoSnapshots), "{tag}: {err}");
    }

    // An existing output is never touched.
    let existing = dir.join("existing.db");
    std::fs::write(&existing, b"precious").unwrap();
    let err = restore(&client, &RestoreOptions::new(&existing)).unwrap_err();
    assert!(matches!(err, Error::OutputExists(_)), "{err}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"precious");

    // A TXID beyond the replica.
    let err = restore(
        &client,
        &RestoreOptions::new(dir.join("future.db"))
            .txid(Txid(files.last().unwrap().max_txid.0 + 5)),
    )
    .unwrap_err();
    assert!(matches!(err, Error::TxNotAvailable { .. }), "{err}");
    assert!(
        err.to_string().contains("transaction not available"),
        "{err}"
    );
}

#[test]
fn cli_reports_failures_with_exit_status() {
    let dir = TempDir::new("cli-damage");
    let empty = format!("file://{}", dir.join("nothing").display());
    let out = dir.join("o.db");
    let (ok, _, err) = run(Command::new(our_bin())
        .args(["restore", "-o"])
        .arg(&out)
        .arg(&empty));
    assert!(!ok);
    assert!(err.contains("no matching backup files available"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line on failure: {err}");
    let (ok, _, err) = run(Command::new(our_bin())
        .args(["restore", "-if-replica-exists", "-o"])
        .arg(&out)
        .arg(&empty));
    assert!(ok, "{err}");
    assert!(!out.exists());
    std::fs::write(&out, b"x").unwrap();
    let (ok, _, err) = run(Command::new(our_bin())
        .args(["restore", "-if-db-not-exists", "-o"])
        .arg(&out)
        .arg(&empty));
    assert!(ok, "{err}");
    let (ok, _, err) = run(Command::new(our_bin())
        .args(["restore", "-txid", "12", "-o"])
        .arg(&out)
        .arg(&empty));
    assert!(!ok && err.contains("16 hex digits"), "{err}");
    let (ok, _, err) = run(Command::new(our_bin()).args(["restore", "-o", "x", "nope://y"]));
    assert!(!ok && err.contains("unsupported scheme"), "{err}");
    let status = Command::new(our_bin())
        .args(["restore", "-bogus"])
        .output()
        .unwrap()
        .status;
    assert_eq!(status.code(), Some(2));
}
