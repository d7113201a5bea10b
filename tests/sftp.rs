//! The SFTP client (cargo feature `sftp`) against Debian's OpenSSH sshd on 127.0.0.1, and
//! interop with the official Litestream through it.
#![cfg(feature = "sftp")]

mod common;

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use common::*;
use litestream::client::{SftpClient, SftpConfig};
use litestream::ltx::{Encoder, Header, PageEncoding, HEADER_FLAG_NO_CHECKSUM};
use litestream::{Error, ReplicaClient, Txid};

struct Env {
    host: String,
    port: u16,
    user: String,
    pass: String,
    key: String,
    host_key: String,
    root: String,
}

fn env() -> Option<Env> {
    let addr = peer_env("LITESTREAM_TEST_SFTP_ADDR")?;
    let (host, port) = addr.rsplit_once(':')?;
    Some(Env {
        host: host.into(),
        port: port.parse().ok()?,
        user: peer_env("LITESTREAM_TEST_SFTP_USER")?,
        pass: peer_env("LITESTREAM_TEST_SFTP_PASS")?,
        key: peer_env("LITESTREAM_TEST_SFTP_KEY")?,
        host_key: peer_env("LITESTREAM_TEST_SFTP_HOST_KEY")?,
        root: peer_env("LITESTREAM_TEST_SFTP_ROOT")?,
    })
}

impl Env {
    fn config(&self, path: &str) -> SftpConfig {
        SftpConfig {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            password: None,
            key_path: Some(self.key.clone().into()),
            host_key: Some(self.host_key.clone()),
            path: format!("{}/{path}", self.root),
        }
    }

    /// A litestream.yml for the official binary (the key cannot go in a URL).
    fn official_config(&self, dir: &TempDir, db: &Path, path: &str) -> std::path::PathBuf {
        let cfg = dir.join(format!("{path}.yml"));
        std::fs::write(
            &cfg,
            format!(
                "dbs:\n  - path: {}\n    replicas:\n      - url: sftp://{}@{}:{}{}/{path}\n        key-path: {}\n        host-key: \"{}\"\n        sync-interval: 100ms\n",
                db.display(),
                self.user,
                self.host,
                self.port,
                self.root,
                self.key,
                self.host_key
            ),
        )
        .unwrap();
        cfg
    }
}

fn ltx_file(dir: &TempDir, min: u64, max: u64) -> std::path::PathBuf {
    let h = Header {
        flags: HEADER_FLAG_NO_CHECKSUM,
        page_size: 512,
        commit: 1,
        min_txid: Txid(min),
        max_txid: Txid(max),
        timestamp: 1_700_000_000_000 + min as i64 * 1000,
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
fn wrong_password_and_wrong_host_key_are_clear_errors() {
    let Some(env) = env() else { return };
    let mut c = env.config("denied");
    c.key_path = None;
    c.password = Some("not-the-password".into());
    let e = SftpClient::new(c)
        .unwrap()
        .ltx_files(0, Txid::ZERO, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("refused user \"lsftp\" with a password"), "{e}");
    let mut c = env.config("denied");
    c.host_key = Some(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPretendPretendPretendPretendPretendPretend".into(),
    );
    let e = SftpClient::new(c)
        .unwrap()
        .ltx_files(0, Txid::ZERO, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not match the configured host-key"), "{e}");
    // The password works too, through a URL.
    let c = litestream::client::from_url(&format!(
        "sftp://{}:{}@{}:{}{}/pw",
        env.user, env.pass, env.host, env.port, env.root
    ))
    .unwrap();
    assert!(c.ltx_files(0, Txid::ZERO, false).unwrap().is_empty());
}

#[test]
fn files_list_read_and_delete() {
    let Some(env) = env() else { return };
    let dir = TempDir::new("sftp-files");
    let c = SftpClient::new(env.config(&unique("files"))).unwrap();
    assert!(c.ltx_files(1, Txid::ZERO, false).unwrap().is_empty());
    for i in 1..=12u64 {
        c.write_ltx_file(
            1,
            Txid(i),
            Txid(i),
            &File::open(ltx_file(&dir, i, i)).unwrap(),
        )
        .unwrap();
    }
    // Written twice (a retried upload): replaced, not an error.
    c.write_ltx_file(
        1,
        Txid(3),
        Txid(3),
        &File::open(ltx_file(&dir, 3, 3)).unwrap(),
    )
    .unwrap();
    let all = c.ltx_files(1, Txid::ZERO, false).unwrap();
    assert_eq!(all.len(), 12);
    assert!(all.windows(2).all(|w| w[0].min_txid < w[1].min_txid));
    let from = c.ltx_files(1, Txid(10), false).unwrap();
    assert_eq!(from.len(), 3);
    // The modification time carries the header timestamp (seconds).
    assert_eq!(
        from[0].created_at,
        litestream::parse_rfc3339("2023-11-14T22:13:30Z").unwrap()
    );
    let mut b = Vec::new();
    c.open_ltx_file(1, Txid(7), Txid(7), 8, Some(4))
        .unwrap()
        .read_to_end(&mut b)
        .unwrap();
    assert_eq!(b, 512u32.to_be_bytes());
    c.delete_ltx_files(&all[..4]).unwrap();
    c.delete_ltx_files(&all[..4]).unwrap();
    assert_eq!(c.ltx_files(1, Txid::ZERO, false).unwrap().len(), 8);
    assert!(matches!(
        c.open_ltx_file(1, Txid(2), Txid(2), 0, None).err(),
        Some(Error::NotFound { .. })
    ));
    c.delete_all().unwrap();
    assert!(c.ltx_files(1, Txid::ZERO, false).unwrap().is_empty());
}

#[test]
fn replicate_over_sftp_and_restore_both_ways() {
    let Some(env) = env() else { return };
    let dir = TempDir::new("sftp-replicate");
    let (path, path2) = (unique("ours"), unique("theirs"));
    replicate_and_restore_both_ways(
        &dir,
        Interop {
            ours: Arc::new(SftpClient::new(env.config(&path)).unwrap()),
            theirs: Arc::new(SftpClient::new(env.config(&path2)).unwrap()),
            // A password in the URL, as a user restoring by hand would.
            official_restore: &|_, out| {
                let url = format!(
                    "sftp://{}:{}@{}:{}{}/{path}",
                    env.user, env.pass, env.host, env.port, env.root
                );
                official_restore_by_url(&url, out)
            },
            // A key and the host key: only a config can carry them.
            official_replicate: &|db| {
                official_replicate_by_config(&env.official_config(&dir, db, &path2))
            },
        },
    );
}
