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
            sas_token: None,
            container: CONTAINER.into(),
            path: path.into(),
            endpoint: Some(self.endpoint.clone()),
            block_size: 4 << 20,
            page_size: 5000,
        }
    }

    /// An account SAS for the blob service (Microsoft's string-to-sign for versions
    /// 2020-12-06 and later), signed here with the account key.
    fn account_sas(&self, permissions: &str) -> String {
        use hmac::{KeyInit, Mac};
        let (version, expiry) = ("2021-08-06", "2099-01-01T00:00:00Z");
        let to_sign = format!(
            "{}\n{permissions}\nb\nsco\n\n{expiry}\n\nhttps,http\n{version}\n\n",
            self.account
        );
        let key = decode_base64(&self.key);
        let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).unwrap();
        m.update(to_sign.as_bytes());
        let sig = encode_base64(&m.finalize().into_bytes());
        let sig: String = sig
            .chars()
            .map(|c| match c {
                '+' => "%2B".to_string(),
                '/' => "%2F".to_string(),
                '=' => "%3D".to_string(),
                c => c.to_string(),
            })
            .collect();
        format!("?sv={version}&ss=b&srt=sco&sp={permissions}&se={expiry}&spr=https,http&sig={sig}")
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
    eprintln!("wrong key: {e}");
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = s.bytes().filter(|&c| c != b'=').map(val).collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &d)| n | (d as u32) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

fn encode_base64(b: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &x)| n | (x as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A shared access signature instead of the key: the token rides in the query string;
/// one without delete permission is a clear 403 that names the account and the SAS.
#[test]
fn sas_token_instead_of_the_key() {
    let Some(env) = env() else { return };
    assert_eq!(decode_base64(&encode_base64(b"abcde")), b"abcde");
    assert_eq!(encode_base64(&decode_base64(&env.key)), env.key);
    let dir = TempDir::new("abs-sas");
    env.client("sas-setup");
    let path = unique("sas");
    let mut cfg = env.config(&path);
    cfg.account_key = String::new();
    cfg.sas_token = Some(env.account_sas("rwdlac"));
    let c = AbsClient::new(cfg.clone()).unwrap();
    for i in 1..=3u64 {
        c.write_ltx_file(
            0,
            Txid(i),
            Txid(i),
            &File::open(random_ltx(&dir, i, i, 2)).unwrap(),
        )
        .unwrap();
    }
    let files = c.ltx_files(0, Txid::ZERO, false).unwrap();
    assert_eq!(files.len(), 3);
    let mut b = Vec::new();
    c.open_ltx_file(0, Txid(2), Txid(2), 8, Some(4))
        .unwrap()
        .read_to_end(&mut b)
        .unwrap();
    assert_eq!(b, 4096u32.to_be_bytes());

    // Azurite checks the signature: a token with another expiry but the same sig fails.
    let forged = env.account_sas("rl").replace("se=2099", "se=2098");
    cfg.sas_token = Some(forged);
    let e = AbsClient::new(cfg.clone())
        .unwrap()
        .ltx_files(0, Txid::ZERO, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("403"), "{e}");

    cfg.sas_token = Some(env.account_sas("rl"));
    let read_only = AbsClient::new(cfg).unwrap();
    assert_eq!(read_only.ltx_files(0, Txid::ZERO, false).unwrap().len(), 3);
    let e = read_only.delete_ltx_files(&files).unwrap_err().to_string();
    assert!(e.contains("403"), "{e}");
    assert!(e.contains("devstoreaccount1") && e.contains("SAS"), "{e}");
    assert!(!e.contains("sig="), "{e}");
    eprintln!("read-only SAS delete: {e}");

    c.delete_all().unwrap();
    assert!(c.ltx_files(0, Txid::ZERO, false).unwrap().is_empty());
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
    let restore_cfg = |db: &Path| env.official_config(&dir, db, &path);
    let (db, want) = replicate_and_restore_both_ways(
        &dir,
        Interop {
            ours: Arc::new(env.client(&path)),
            theirs: Arc::new(env.client(&path2)),
            official_restore: &|db, out| official_restore_by_config(&restore_cfg(db), db, out),
            official_replicate: &|db| {
                official_replicate_by_config(&env.official_config(&dir, db, &path2))
            },
        },
    );
    // Our command reads the same litestream.yml keys as the official binary.
    assert_our_restore_by_config(&restore_cfg(&db), &db, &dir.join("ours-cli.db"), &want);
}

/// `sas-token` in litestream.yml means the same to both binaries: the official one
/// replicates with it and ours restores through the same file, and the other way round.
#[test]
fn sas_token_config_shared_with_the_official_binary() {
    let Some(env) = env() else { return };
    let Some(bin) = official_bin() else { return };
    env.client("sas-setup");
    let dir = TempDir::new("abs-sas-cfg");
    let sas = env.account_sas("rwdlac");
    let sas = sas.trim_start_matches('?');
    for (who, replicator) in [("theirs", &bin), ("ours", &our_bin())] {
        let db = dir.join(format!("{who}.db"));
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t(x INTEGER PRIMARY KEY, y TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO t SELECT i, hex(randomblob(60)) FROM n;",
        )
        .unwrap();
        drop(c);
        let cfg = dir.join(format!("{who}.yml"));
        std::fs::write(
            &cfg,
            format!(
                "dbs:\n  - path: {}\n    replicas:\n      - type: abs\n        account-name: {}\n        sas-token: \"{sas}\"\n        bucket: {CONTAINER}\n        path: {}\n        endpoint: {}\n",
                db.display(),
                env.account,
                unique(&format!("sas-{who}")),
                env.endpoint
            ),
        )
        .unwrap();
        let (ok, _, err) = run(official_cmd(replicator)
            .args(["replicate", "-once", "-config"])
            .arg(&cfg));
        assert!(ok, "{who} replicate -once with a SAS: {err}");
        // After replication: the official binary adds its _litestream_* tables.
        let want = dump(&db);
        let restorer = if who == "ours" { &bin } else { &our_bin() };
        let out = dir.join(format!("{who}-restored.db"));
        let (ok, _, err) = run(official_cmd(restorer)
            .args(["restore", "-config"])
            .arg(&cfg)
            .arg("-o")
            .arg(&out)
            .arg(&db));
        assert!(ok, "restore of {who} replica with a SAS: {err}");
        assert!(dump(&out) == want, "restore of the {who} replica differs");
    }
}

#[test]
fn first_replication_ships_the_database_once() {
    let Some(env) = env() else { return };
    let client = env.client(&unique("ship-once"));
    common::counting::assert_first_replication_ships_once("abs-ship-once", Arc::new(client));
}
