//! The S3 client against a real S3-compatible server on 127.0.0.1 (SeaweedFS with
//! signature checking on), and interop with the official Litestream through it.

mod common;

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use litestream::client::s3::{S3Client, S3Config};
use litestream::ltx::{Encoder, Header, PageEncoding, HEADER_FLAG_NO_CHECKSUM};
use litestream::restore::{restore, IntegrityCheck, RestoreOptions};
use litestream::{CompactionLevels, Db, Error, Replica, ReplicaClient, Store, Txid};

struct S3Env {
    endpoint: String,
    bucket: String,
    ak: String,
    sk: String,
}

fn s3_env() -> Option<S3Env> {
    Some(S3Env {
        endpoint: peer_env("LITESTREAM_TEST_S3_ENDPOINT")?,
        bucket: peer_env("LITESTREAM_TEST_S3_BUCKET")?,
        ak: peer_env("LITESTREAM_TEST_S3_ACCESS_KEY")?,
        sk: peer_env("LITESTREAM_TEST_S3_SECRET_KEY")?,
    })
}

impl S3Env {
    fn url(&self, path: &str) -> String {
        format!(
            "s3://{}/{path}?endpoint={}&forcePathStyle=true&region=us-east-1",
            self.bucket, self.endpoint
        )
    }

    fn config(&self, path: &str) -> S3Config {
        let mut c = S3Config::from_url(&self.url(path)).unwrap();
        c.credentials = Some(litestream::client::s3::Credentials {
            access_key_id: self.ak.clone(),
            secret_access_key: self.sk.clone(),
            session_token: None,
        });
        c
    }

    fn client(&self, path: &str) -> S3Client {
        let c = S3Client::new(self.config(path)).unwrap();
        c.create_bucket().unwrap();
        c
    }

    fn official(&self, bin: &Path) -> Command {
        let mut c = official_cmd(bin);
        c.env("LITESTREAM_ACCESS_KEY_ID", &self.ak)
            .env("LITESTREAM_SECRET_ACCESS_KEY", &self.sk)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
        c
    }
}

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
    std::thread::sleep(Duration::from_secs(2)); // an L1 compaction
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

#[test]
fn server_killed_mid_upload_then_back_loses_nothing() {
    let Some(env) = s3_env() else { return };
    let (Some(pidfile), Some(restart)) = (
        peer_env("LITESTREAM_TEST_S3_PIDFILE"),
        peer_env("LITESTREAM_TEST_S3_RESTART"),
    ) else {
        return;
    };
    let dir = TempDir::new("s3-fault");
    let db = dir.join("app.db");
    let client = Arc::new(env.client(&unique("fault")));
    let mut w = Writer::spawn(&db, 5000);
    w.cmd("mixed 1 5");
    let d = Db::new(&db)
        .monitor_interval(Duration::from_millis(100))
        .replica(Replica::new(client.clone()).sync_interval(Duration::from_millis(100)));
    let mut store = Store::new(vec![d], CompactionLevels::default()).unwrap();
    store.open().unwrap();
    store.sync(&db).unwrap();
    store
        .wait_replicated(&db, None, Duration::from_secs(30))
        .unwrap();
    // Kill the server while a large upload is going on.
    w.cmd("big 2");
    store.sync(&db).unwrap();
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    let _ = Command::new("kill").args(["-KILL", &pid]).status();
    for i in 0..5 {
        w.cmd(&format!("mixed {} 5", 10 + i));
        std::thread::sleep(Duration::from_millis(300));
    }
    let status = store.status();
    eprintln!("while the server is down: {:?}", status[0].replicas[0]);
    let (ok, _, err) = run(Command::new("bash").arg("-c").arg(&restart));
    assert!(ok, "restart failed: {err}");
    w.cmd("mixed 20 5");
    store.sync(&db).unwrap();
    store
        .wait_replicated(&db, None, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("replica did not catch up after the server came back: {e}"));
    let want = dump(&db);
    let report = store.close().unwrap();
    assert!(report.is_complete(), "{:?}", report.missing());
    let out = dir.join("out.db");
    restore(
        client.as_ref(),
        &RestoreOptions::new(&out).integrity_check(IntegrityCheck::Full),
    )
    .unwrap();
    assert_eq!(dump(&out), want);
}
