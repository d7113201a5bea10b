//! The Azure Blob client against Azurite on 127.0.0.1 (SharedKey signatures checked), and
//! interop with the official Litestream through it.

mod common;

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use litestream::client::{AbsClient, AbsConfig};
use litestream::ltx::{Encoder, Header, PageEncoding, HEADER_FLAG_NO_CHECKSUM};
use litestream::restore::{restore, IntegrityCheck, RestoreOptions};
use litestream::{CompactionLevels, Db, Error, Replica, ReplicaClient, Store, Txid};

const CONTAINER: &str = "lsbkt";

struct Env {
    endpoint: String,
    account: String,
    key: String,
}

fn env() -> Option<Env> {
    Some(Env {
        endpoint: peer_env("LITESTREAM_TEST_ABS_ENDPOINT")?,
        account: peer_env("LITESTREAM_TEST_ABS_ACCOUNT")?,
        key: peer_env("LITESTREAM_TEST_ABS_KEY")?,
    })
}

impl Env {
    fn config(&self, path: &str) -> AbsConfig {
        AbsConfig {
            account_name: self.account.clone(),
            account_key: self.key.clone(),
            container: CONTAINER.into(),
            path: path.into(),
            endpoint: Some(self.endpoint.clone()),
            block_size: 4 << 20,
            page_size: 5000,
        }
    }

    fn client(&self, path: &str) -> AbsClient {
        let c = AbsClient::new(self.config(path)).unwrap();
        c.create_container().unwrap();
        c
    }

    /// A litestream.yml for the official binary (its abs:// URL has no endpoint).
    fn official_config(&self, dir: &TempDir, db: &Path, path: &str) -> std::path::PathBuf {
        let cfg = dir.join(format!("{path}.yml"));
        std::fs::write(
            &cfg,
            format!(
                "dbs:\n  - path: {}\n    replicas:\n      - type: abs\n        account-name: {}\n        account-key: {}\n        bucket: {CONTAINER}\n        path: {path}\n        endpoint: {}\n        sync-interval: 100ms\n",
                db.display(),
                self.account,
                self.key,
                self.endpoint
            ),
        )
        .unwrap();
        cfg
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

fn ltx_file(dir: &TempDir, min: u64, max: u64, pages: u32) -> std::path::PathBuf {
    let h = Header {
        flags: HEADER_FLAG_NO_CHECKSUM,
        page_size: 4096,
        commit: pages,
        min_txid: Txid(min),
        max_txid: Txid(max),
        timestamp: 1_700_000_000_000 + min as i64,
        wal_offset: 32,
        ..Header::default()
    };
    let p = dir.join(format!("{min}-{max}.ltx"));
    let mut e = Encoder::new(File::create(&p).unwrap(), &h, PageEncoding::Frame).unwrap();
    let mut rng = Rng::new(min);
    for pg in 1..=pages {
        let page: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
        e.write_page(pg, &page).unwrap();
    }
    e.finish().unwrap();
    p
}

#[test]
fn wrong_key_is_a_clear_error() {
    let Some(env) = env() else { return };
    let mut cfg = env.config("denied");
    cfg.account_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=".into();
    let e = AbsClient::new(cfg)
        .unwrap()
        .ltx_files(0, Txid::ZERO, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("403"), "{e}");
    assert!(e.contains("devstoreaccount1"), "{e}");
}

#[test]
fn files_pages_blocks_and_deletes() {
    let Some(env) = env() else { return };
    let dir = TempDir::new("abs-files");
    let mut cfg = env.config(&unique("files"));
    cfg.page_size = 5;
    cfg.block_size = 1 << 20;
    let c = AbsClient::new(cfg).unwrap();
    c.create_container().unwrap();
    assert!(c.ltx_files(1, Txid::ZERO, false).unwrap().is_empty());
    for i in 1..=17u64 {
        c.write_ltx_file(
            1,
            Txid(i),
            Txid(i),
            &File::open(ltx_file(&dir, i, i, 1)).unwrap(),
        )
        .unwrap();
    }
    let all = c.ltx_files(1, Txid::ZERO, false).unwrap();
    assert_eq!(
        all.len(),
        17,
        "the listing must follow markers (5 per page)"
    );
    assert!(all.windows(2).all(|w| w[0].min_txid < w[1].min_txid));
    let from = c.ltx_files(1, Txid(15), false).unwrap();
    assert_eq!(from.len(), 3);
    // The header timestamp comes back from the blob metadata.
    assert_eq!(
        from[0].created_at,
        litestream::parse_rfc3339("2023-11-14T22:13:20.015Z").unwrap()
    );
    let mut b = Vec::new();
    c.open_ltx_file(1, Txid(7), Txid(7), 8, Some(4))
        .unwrap()
        .read_to_end(&mut b)
        .unwrap();
    assert_eq!(b, 4096u32.to_be_bytes());
    // Above the block size: blocks and one commit.
    let big = ltx_file(&dir, 20, 30, 900);
    c.write_ltx_file(0, Txid(20), Txid(30), &File::open(&big).unwrap())
        .unwrap();
    let mut got = Vec::new();
    c.open_ltx_file(0, Txid(20), Txid(30), 0, None)
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert_eq!(got, std::fs::read(&big).unwrap());
    c.delete_ltx_files(&all[..4]).unwrap();
    c.delete_ltx_files(&all[..4]).unwrap();
    assert_eq!(c.ltx_files(1, Txid::ZERO, false).unwrap().len(), 13);
    assert!(matches!(
        c.open_ltx_file(1, Txid(2), Txid(2), 0, None).err(),
        Some(Error::NotFound { .. })
    ));
    c.delete_all().unwrap();
    assert!(c.ltx_files(1, Txid::ZERO, false).unwrap().is_empty());
    assert!(c.ltx_files(0, Txid::ZERO, false).unwrap().is_empty());
}

#[test]
fn replicate_to_azure_and_restore_both_ways() {
    let Some(env) = env() else { return };
    let dir = TempDir::new("abs-replicate");
    let db = dir.join("app.db");
    let path = unique("ours");
    let c = Arc::new(env.client(&path));
    let mut w = Writer::spawn(&db, 5000);
    w.cmd("mixed 1 10");
    let d = Db::new(&db)
        .monitor_interval(Duration::from_millis(100))
        .replica(Replica::new(c.clone()).sync_interval(Duration::from_millis(100)));
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
    assert!(!c.ltx_files(1, Txid::ZERO, false).unwrap().is_empty());
    let out = dir.join("ours.db");
    restore(
        c.as_ref(),
        &RestoreOptions::new(&out).integrity_check(IntegrityCheck::Full),
    )
    .unwrap();
    assert_eq!(dump(&out), want);

    let Some(bin) = official_bin() else { return };
    let theirs = dir.join("theirs.db");
    let cfg = env.official_config(&dir, &db, &path);
    let (ok, _, err) = run(official_cmd(&bin)
        .args(["restore", "-integrity-check", "full", "-config"])
        .arg(&cfg)
        .arg("-o")
        .arg(&theirs)
        .arg(&db));
    assert!(ok, "official restore from our Azure replica: {err}");
    assert_eq!(dump(&theirs), want);
    // Our command reads the same litestream.yml keys.
    let ours_cli = dir.join("ours-cli.db");
    let (ok, _, err) = run(std::process::Command::new(our_bin())
        .args(["restore", "-config"])
        .arg(&cfg)
        .arg("-o")
        .arg(&ours_cli)
        .arg(&db));
    assert!(ok, "our restore through litestream.yml: {err}");
    assert_eq!(dump(&ours_cli), want);

    // The other way: the official binary replicates, we restore.
    let db2 = dir.join("official-src.db");
    let path2 = unique("theirs");
    let mut w2 = Writer::spawn(&db2, 5000);
    w2.cmd("mixed 5 10");
    let cfg2 = env.official_config(&dir, &db2, &path2);
    let mut child = official_cmd(&bin)
        .arg("replicate")
        .arg("-config")
        .arg(&cfg2)
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("official.log")).unwrap())
        .spawn()
        .unwrap();
    let c2 = env.client(&path2);
    assert!(
        wait_until(Duration::from_secs(20), || !c2
            .ltx_files(0, Txid::ZERO, false)
            .unwrap_or_default()
            .is_empty()),
        "the official binary wrote nothing: {}",
        std::fs::read_to_string(dir.join("official.log")).unwrap_or_default()
    );
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
