//! The S3 client against a real S3-compatible server on 127.0.0.1 (SeaweedFS with
//! signature checking on), and interop with the official Litestream through it. The test
//! that kills the server is in tests/s3_restart.rs, its own test binary, so that none of
//! these runs while the server is down.

mod common;

use std::fs::File;
use std::io::Read;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fault_proxy::{Fault, FaultProxy};
use common::s3::{s3_env, S3Env};
use common::*;
use litestream::client::s3::{MultipartUpload, S3Client};
use litestream::ltx::{Encoder, Header, PageEncoding, HEADER_FLAG_NO_CHECKSUM};
use litestream::restore::{restore, IntegrityCheck, RestoreOptions};
use litestream::{CompactionLevels, Db, Error, Replica, ReplicaClient, Store, Txid};

fn tiny_ltx(dir: &TempDir, min: u64, max: u64) -> std::path::PathBuf {
    let h = Header {
        flags: HEADER_FLAG_NO_CHECKSUM,
        page_size: 512,
        commit: 1,
        min_txid: Txid(min),
        max_txid: Txid(max),
        timestamp: 1_700_000_000_000 + min as i64,
        wal_offset: 32,
        ..Header::default()
    };
    let p = dir.join(format!("{min}-{max}.ltx"));
    let mut e = Encoder::new(File::create(&p).unwrap(), &h, PageEncoding::Frame).unwrap();
    e.write_page(1, &[min as u8; 512]).unwrap();
    e.finish().unwrap();
    p
}

#[test]
fn wrong_secret_is_a_clear_authentication_error() {
    let Some(env) = s3_env() else { return };
    env.client("auth"); // the bucket exists
    let mut cfg = env.config(&unique("auth"));
    cfg.credentials.as_mut().unwrap().secret_access_key = "definitely-wrong".into();
    let client = S3Client::new(cfg).unwrap();
    let err = client.ltx_files(0, Txid::ZERO, false).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            Error::Backend {
                status: Some(403),
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("SignatureDoesNotMatch"), "{msg}");
    assert!(
        msg.contains("configured access key") && msg.contains(&env.ak),
        "{msg}"
    );
    assert!(
        !msg.contains("definitely-wrong"),
        "the secret leaked: {msg}"
    );
    // Not retried as if transient.
    assert!(!err.is_transient());
}

#[test]
fn listing_crosses_continuation_tokens_and_deletes_batch() {
    let Some(env) = s3_env() else { return };
    let dir = TempDir::new("s3-list");
    let client = Arc::new(env.client(&unique("list")));
    // 1100 objects, written from several threads.
    let n = 1100u64;
    let files: Vec<_> = (1..=n).map(|i| tiny_ltx(&dir, i, i)).collect();
    std::thread::scope(|s| {
        for chunk in files.chunks(n as usize / 8 + 1) {
            let client = client.clone();
            s.spawn(move || {
                for p in chunk {
                    let name = p.file_stem().unwrap().to_string_lossy().to_string();
                    let t: u64 = name.split('-').next().unwrap().parse().unwrap();
                    client
                        .write_ltx_file(1, Txid(t), Txid(t), &File::open(p).unwrap())
                        .unwrap();
                }
            });
        }
    });
    let all = client.ltx_files(1, Txid::ZERO, false).unwrap();
    assert_eq!(
        all.len(),
        n as usize,
        "listing must follow continuation tokens"
    );
    assert!(all.windows(2).all(|w| w[0].min_txid < w[1].min_txid));
    // Real ">= seek" semantics.
    let from = client.ltx_files(1, Txid(1000), false).unwrap();
    assert_eq!(from.len(), 101);
    assert_eq!(from[0].min_txid, Txid(1000));
    // Accurate timestamps come from the litestream-timestamp metadata.
    let accurate = client.ltx_files(1, Txid(1095), true).unwrap();
    assert_eq!(
        accurate[0].created_at,
        litestream::parse_rfc3339("2023-11-14T22:13:21.095Z").unwrap()
    );
    // A ranged read.
    let mut r = client
        .open_ltx_file(1, Txid(7), Txid(7), 4, Some(4))
        .unwrap();
    let mut b = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut b).unwrap();
    assert_eq!(b, 2u32.to_be_bytes());
    // UNSIGNED-PAYLOAD requests are accepted too.
    let mut cfg = env.config(&unique("list"));
    cfg.sign_payload = false;
    let unsigned = S3Client::new(cfg).unwrap();
    unsigned
        .write_ltx_file(0, Txid(1), Txid(1), &File::open(&files[0]).unwrap())
        .unwrap();
    assert_eq!(unsigned.ltx_files(0, Txid::ZERO, false).unwrap().len(), 1);
    unsigned.delete_all().unwrap();
    assert!(unsigned.ltx_files(0, Txid::ZERO, false).unwrap().is_empty());
    // Deletes go in batches of 1000.
    client.delete_ltx_files(&all).unwrap();
    assert!(client.ltx_files(1, Txid::ZERO, false).unwrap().is_empty());
    assert!(matches!(
        client.open_ltx_file(1, Txid(7), Txid(7), 0, None).err(),
        Some(Error::NotFound { .. })
    ));
}

#[test]
fn replicate_to_s3_and_restore_both_ways() {
    let Some(env) = s3_env() else { return };
    let dir = TempDir::new("s3-replicate");
    let db = dir.join("app.db");
    let path = unique("ours");
    let mut cfg = env.config(&path);
    cfg.part_size = 5 << 20; // the big transaction (about 6 MB) goes multipart
    cfg.concurrency = 3;
    let client = Arc::new(S3Client::new(cfg).unwrap());
    client.create_bucket().unwrap();
    let mut w = Writer::spawn(&db, 5000);
    w.cmd("mixed 1 10");
    let d = Db::new(&db)
        .monitor_interval(Duration::from_millis(100))
        .replica(Replica::new(client.clone()).sync_interval(Duration::from_millis(100)));
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
    // An L1 compaction (every second).
    assert!(
        wait_until(Duration::from_secs(60), || !client
            .ltx_files(1, Txid::ZERO, false)
            .unwrap()
            .is_empty()),
        "no L1 compaction"
    );
    let want = dump(&db);
    assert!(store.close().unwrap().is_complete());
    drop(w);
    let l0 = client.ltx_files(0, Txid::ZERO, false).unwrap();
    assert!(
        l0.iter().any(|f| f.size > 5 << 20),
        "expected a multipart-sized L0 file: {l0:?}"
    );
    assert!(!client.ltx_files(1, Txid::ZERO, false).unwrap().is_empty());

    let out = dir.join("ours.db");
    restore(
        client.as_ref(),
        &RestoreOptions::new(&out).integrity_check(IntegrityCheck::Full),
    )
    .unwrap();
    assert_eq!(dump(&out), want);
    let Some(bin) = official_bin() else { return };
    let theirs = dir.join("theirs.db");
    let (ok, _, err) = run(env
        .official(&bin)
        .args(["restore", "-integrity-check", "full", "-o"])
        .arg(&theirs)
        .arg(env.url(&path)));
    assert!(ok, "official restore from our S3 replica: {err}");
    assert_eq!(dump(&theirs), want);

    // The other way: the official binary replicates to S3, we restore.
    let db2 = dir.join("official-src.db");
    let path2 = unique("theirs");
    let mut w2 = Writer::spawn(&db2, 5000);
    w2.cmd("mixed 5 10");
    let mut child = env
        .official(&bin)
        .arg("replicate")
        .arg(&db2)
        .arg(env.url(&path2))
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("official.log")).unwrap())
        .spawn()
        .unwrap();
    let c2 = env.client(&path2);
    assert!(wait_until(Duration::from_secs(20), || !c2
        .ltx_files(0, Txid::ZERO, false)
        .unwrap()
        .is_empty()));
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
        &c2,
        &RestoreOptions::new(&out2).integrity_check(IntegrityCheck::Full),
    )
    .unwrap();
    assert_eq!(dump(&out2), want2);
}

/// The key of `(level, min, max)` under `path`, as Litestream's S3 client names it.
fn s3_key(path: &str, level: u8, min: u64, max: u64) -> String {
    format!("{path}/{level:04x}/{min:016x}-{max:016x}.ltx")
}

/// A client of `path` that reaches the server through `proxy`, with parts of `part_size`.
fn through(env: &S3Env, proxy: &FaultProxy, path: &str, part_size: u64) -> S3Client {
    let mut cfg = env.config(path);
    cfg.endpoint = Some(proxy.url.clone());
    cfg.part_size = part_size;
    cfg.concurrency = 2;
    S3Client::new(cfg).unwrap()
}

fn is_create(method: &str, target: &str) -> bool {
    method == "POST" && target.contains("?uploads")
}

fn is_part(method: &str, target: &str) -> bool {
    method == "PUT" && target.contains("partNumber=")
}

/// The uploads in progress for exactly `key`, asked of the server directly.
fn uploads_of(direct: &S3Client, key: &str) -> Vec<MultipartUpload> {
    let all = direct.multipart_uploads(key).unwrap();
    all.into_iter().filter(|u| u.key == key).collect()
}

/// The UploadIds in the CreateMultipartUpload answers the server gave through `proxy`.
fn created_ids(proxy: &FaultProxy) -> Vec<String> {
    proxy
        .seen()
        .iter()
        .filter(|s| is_create(&s.method, &s.target))
        .filter_map(|s| {
            let a = s.answer.split("<UploadId>").nth(1)?;
            Some(a.split("</UploadId>").next()?.to_string())
        })
        .collect()
}

/// Every UploadPart request breaks (the proxy hangs up): each is retried until the
/// attempts run out, the upload fails, and afterwards ListMultipartUploads straight
/// against the server shows nothing in progress for the key, though while the parts
/// were failing it showed the upload.
#[test]
fn a_multipart_upload_that_fails_for_good_leaves_no_upload_behind() {
    let Some(env) = s3_env() else { return };
    let dir = TempDir::new("s3-mpu-fail");
    let path = unique("mpu-fail");
    let key = s3_key(&path, 0, 1, 1);
    let direct = Arc::new(env.client(&path));
    let during: Arc<Mutex<Option<Vec<MultipartUpload>>>> = Arc::default();
    let proxy = {
        let (direct, during, key) = (direct.clone(), during.clone(), key.clone());
        FaultProxy::start(&env.endpoint, move |method, target| {
            if !is_part(method, target) {
                return Fault::Pass;
            }
            let mut d = during.lock().unwrap();
            if d.is_none() {
                *d = Some(uploads_of(&direct, &key));
            }
            Fault::HangUp
        })
    };
    // 200 KB in 64 KiB parts.
    let src = random_ltx(&dir, 1, 1, 50);
    let err = through(&env, &proxy, &path, 64 << 10)
        .write_ltx_file(0, Txid(1), Txid(1), &File::open(&src).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("UploadPart"), "{err}");

    let during = during.lock().unwrap().clone().expect("no part was tried");
    assert_eq!(during.len(), 1, "while failing: {during:?}");
    assert_eq!(created_ids(&proxy), [during[0].upload_id.clone()]);
    assert_eq!(uploads_of(&direct, &key), [], "an upload was left behind");
    let seen = proxy.seen();
    let first_part = seen
        .iter()
        .filter(|s| is_part(&s.method, &s.target) && s.target.contains("partNumber=1&"))
        .count();
    assert_eq!(
        first_part, 10,
        "part 1 is tried as often as the retry policy says"
    );
    assert!(
        seen.iter()
            .any(|s| s.method == "DELETE" && s.target.contains("uploadId=")),
        "no AbortMultipartUpload went out"
    );
    assert!(direct.ltx_files(0, Txid::ZERO, false).unwrap().is_empty());
}

/// The first CreateMultipartUpload answer is cut off mid-body after the server started
/// the upload: the retried request starts a second one, which completes; the first, whose
/// UploadId the client never read, is found and aborted.
#[test]
fn a_lost_create_answer_leaves_no_orphan_upload() {
    let Some(env) = s3_env() else { return };
    let dir = TempDir::new("s3-mpu-orphan");
    let path = unique("mpu-orphan");
    let key = s3_key(&path, 0, 1, 1);
    let direct = Arc::new(env.client(&path));
    let during: Arc<Mutex<Option<Vec<MultipartUpload>>>> = Arc::default();
    let creates = AtomicUsize::new(0);
    let proxy = {
        let (direct, during, key) = (direct.clone(), during.clone(), key.clone());
        FaultProxy::start(&env.endpoint, move |method, target| {
            if is_create(method, target) && creates.fetch_add(1, Ordering::SeqCst) == 0 {
                return Fault::CutAnswer;
            }
            if is_part(method, target) {
                let mut d = during.lock().unwrap();
                if d.is_none() {
                    *d = Some(uploads_of(&direct, &key));
                }
            }
            Fault::Pass
        })
    };
    // 5.7 MB in two parts (a part but the last must be 5 MiB at least to complete).
    let src = random_ltx(&dir, 1, 1, 1400);
    through(&env, &proxy, &path, 5 << 20)
        .write_ltx_file(0, Txid(1), Txid(1), &File::open(&src).unwrap())
        .unwrap();

    let ids = created_ids(&proxy);
    assert_eq!(ids.len(), 2, "two uploads started: {ids:?}");
    let mut during: Vec<String> = during
        .lock()
        .unwrap()
        .clone()
        .expect("no part was sent")
        .into_iter()
        .map(|u| u.upload_id)
        .collect();
    during.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(during, want, "while uploading, both were in progress");
    assert_eq!(uploads_of(&direct, &key), [], "the orphan was left behind");
    let mut got = Vec::new();
    direct
        .open_ltx_file(0, Txid(1), Txid(1), 0, None)
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert_eq!(got, std::fs::read(&src).unwrap());
}

/// Every CreateMultipartUpload answer is cut off: the upload fails once the attempts run
/// out, having started one upload per attempt on the server without learning any of their
/// ids; all of them are found and aborted.
#[test]
fn create_answers_lost_every_time_leave_no_upload_behind() {
    let Some(env) = s3_env() else { return };
    let dir = TempDir::new("s3-mpu-lost");
    let path = unique("mpu-lost");
    let key = s3_key(&path, 0, 1, 1);
    let direct = env.client(&path);
    let proxy = FaultProxy::start(&env.endpoint, |method, target| {
        if is_create(method, target) {
            Fault::CutAnswer
        } else {
            Fault::Pass
        }
    });
    // 200 KB in 64 KiB parts.
    let src = random_ltx(&dir, 1, 1, 50);
    let err = through(&env, &proxy, &path, 64 << 10)
        .write_ltx_file(0, Txid(1), Txid(1), &File::open(&src).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("CreateMultipartUpload"), "{err}");
    let ids = created_ids(&proxy);
    assert_eq!(ids.len(), 10, "one upload per attempt: {ids:?}");
    assert_eq!(uploads_of(&direct, &key), [], "orphans were left behind");
}
