//! A restore from S3 (SeaweedFS) fetches a snapshot larger than one range with several
//! ranged GETs in parallel and restores it equal to the source, also when an answer is
//! cut off half-way; with parallelism 1 it streams the file with one GET.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::fault_proxy::{Fault, FaultProxy};
use common::s3::{s3_env, S3Env};
use common::*;
use litestream::client::s3::S3Client;
use litestream::client::FileClient;
use litestream::restore::{restore, IntegrityCheck, RestoreOptions};
use litestream::{ReplicaClient, Txid};

/// A database of ~`mib` MiB of incompressible rows, replicated once into a directory and
/// copied to S3 under `path`: returns its dump and the largest file's name and size (the
/// snapshot).
fn source_on_s3(dir: &TempDir, env: &S3Env, path: &str, mib: usize) -> (String, String, u64) {
    let db = dir.join("src.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(v BLOB)")
        .unwrap();
    let mut rng = Rng::new(5);
    for _ in 0..mib {
        let tx = conn.unchecked_transaction().unwrap();
        for _ in 0..64 {
            tx.execute("INSERT INTO t(v) VALUES (?1)", [rng.bytes(16 << 10)])
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let rep = dir.join("rep");
    let (ok, _, err) = run(Command::new(our_bin())
        .args(["replicate", "-once"])
        .arg(&db)
        .arg(format!("file://{}", rep.display()))
        .env_remove("LITESTREAM_CONFIG"));
    assert!(ok, "replicate -once failed: {err}");
    let want = dump_conn(&conn);
    let s3 = S3Client::new(env.config(path)).unwrap();
    s3.create_bucket().unwrap();
    let file = FileClient::new(&rep);
    let (mut name, mut size) = (String::new(), 0);
    for level in 0..=9u8 {
        for f in file.ltx_files(level, Txid::ZERO, false).unwrap() {
            let src = std::fs::File::open(rep.join(format!("ltx/{level}/{}", f.name()))).unwrap();
            s3.write_ltx_file(level, f.min_txid, f.max_txid, &src)
                .unwrap();
            if f.size > size {
                (name, size) = (f.name(), f.size);
            }
        }
    }
    (want, name, size)
}

/// GETs of the object `name` the proxy saw, and how many were cut off.
fn snapshot_gets(proxy: &FaultProxy, name: &str) -> (usize, usize) {
    let gets: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| is_get_of(&s.method, &s.target, name))
        .collect();
    let cut = gets.iter().filter(|s| s.fault == Fault::CutAnswer).count();
    (gets.len(), cut)
}

fn is_get_of(method: &str, target: &str, name: &str) -> bool {
    method == "GET" && !target.contains('?') && target.ends_with(&format!("/{name}"))
}

fn restored(client: &S3Client, out: &Path, opts: RestoreOptions, want: &str) {
    restore(client, &opts.integrity_check(IntegrityCheck::Full))
        .unwrap_or_else(|e| panic!("restore to {}: {e}", out.display()));
    assert_eq!(dump(out), want, "restored database equals the source");
    assert_eq!(integrity(out), "ok");
}

#[test]
fn a_large_snapshot_restores_from_parallel_ranges_even_when_one_is_cut() {
    let Some(env) = s3_env() else { return };
    let dir = TempDir::new("restore-ranged");
    let path = unique("restore-ranged");
    let (want, name, size) = source_on_s3(&dir, &env, &path, 26);
    assert!(
        size > 3 * (4 << 20),
        "the snapshot spans 4 ranges: {size} bytes"
    );

    // Parallel ranges: several GETs of the snapshot, none cut.
    let proxy = FaultProxy::start(&env.endpoint, |_, _| Fault::Pass);
    let client = S3Client::new(env.config_at(&path, &proxy.url)).unwrap();
    let out = dir.join("ranged.db");
    restored(&client, &out, RestoreOptions::new(&out), &want);
    let (gets, _) = snapshot_gets(&proxy, &name);
    assert_eq!(
        gets as u64,
        size.div_ceil(4 << 20),
        "one GET per 4 MiB range"
    );

    // The second GET of the snapshot is cut off half-way: it is resumed, the result equal.
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    let snap = name.clone();
    let proxy = FaultProxy::start(&env.endpoint, move |method, target| {
        if is_get_of(method, target, &snap) && seen.fetch_add(1, Ordering::SeqCst) == 1 {
            Fault::CutAnswer
        } else {
            Fault::Pass
        }
    });
    let client = S3Client::new(env.config_at(&path, &proxy.url)).unwrap();
    let out = dir.join("cut.db");
    restored(&client, &out, RestoreOptions::new(&out), &want);
    let (gets, cut) = snapshot_gets(&proxy, &name);
    assert_eq!(cut, 1, "one answer was cut off");
    assert_eq!(
        gets as u64,
        size.div_ceil(4 << 20) + 1,
        "the cut range was asked for again from where it stopped"
    );

    // Parallelism 1: one streamed GET, as before.
    let proxy = FaultProxy::start(&env.endpoint, |_, _| Fault::Pass);
    let client = S3Client::new(env.config_at(&path, &proxy.url)).unwrap();
    let out = dir.join("stream.db");
    restored(
        &client,
        &out,
        RestoreOptions::new(&out).parallelism(1),
        &want,
    );
    assert_eq!(snapshot_gets(&proxy, &name), (1, 0));
    let _ = S3Client::new(env.config(&path)).unwrap().delete_all();
}
