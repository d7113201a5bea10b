//! The Azure Blob client against Azurite on 127.0.0.1 (SharedKey signatures checked), and
//! interop with the official Litestream through it.

mod common;

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use common::*;
use litestream::client::{AbsClient, AbsConfig};
use litestream::{Error, ReplicaClient, Txid};

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
            &File::open(random_ltx(&dir, i, i, 1)).unwrap(),
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
    let big = random_ltx(&dir, 20, 30, 900);
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
    let (path, path2) = (unique("ours"), unique("theirs"));
    let bin = official_bin();
    let restore_cfg = |db: &Path| env.official_config(&dir, db, &path);
    let (db, want) = replicate_and_restore_both_ways(
        &dir,
        Interop {
            ours: Arc::new(env.client(&path)),
            theirs: Arc::new(env.client(&path2)),
            official_restore: &|db, out| {
                let mut c = official_cmd(bin.as_deref().unwrap());
                c.args(["restore", "-integrity-check", "full", "-config"])
                    .arg(restore_cfg(db))
                    .arg("-o")
                    .arg(out)
                    .arg(db);
                c
            },
            official_replicate: &|db| {
                let mut c = official_cmd(bin.as_deref().unwrap());
                c.args(["replicate", "-config"])
                    .arg(env.official_config(&dir, db, &path2));
                c
            },
        },
    );
    // Our command reads the same litestream.yml keys as the official binary.
    let out = dir.join("ours-cli.db");
    let (ok, _, err) = run(std::process::Command::new(our_bin())
        .args(["restore", "-config"])
        .arg(restore_cfg(&db))
        .arg("-o")
        .arg(&out)
        .arg(&db));
    assert!(ok, "our restore through litestream.yml: {err}");
    assert_eq!(dump(&out), want);
}
