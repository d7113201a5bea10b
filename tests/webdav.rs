//! The WebDAV client against WsgiDAV (on gunicorn) on 127.0.0.1, and interop with the
//! official Litestream through it.

mod common;

use std::fs::File;
use std::io::Read;
use std::sync::Arc;

use common::*;
use litestream::client::{WebDavClient, WebDavConfig};
use litestream::{Error, ReplicaClient, Txid};

struct Env {
    addr: String,
    user: String,
    pass: String,
}

fn env() -> Option<Env> {
    Some(Env {
        addr: peer_env("LITESTREAM_TEST_WEBDAV_ADDR")?,
        user: peer_env("LITESTREAM_TEST_WEBDAV_USER")?,
        pass: peer_env("LITESTREAM_TEST_WEBDAV_PASS")?,
    })
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("webdav://{}:{}@{}/{path}", self.user, self.pass, self.addr)
    }

    fn client(&self, path: &str) -> WebDavClient {
        WebDavClient::from_url(&self.url(path)).unwrap()
    }
}

#[test]
fn wrong_password_is_a_clear_error() {
    let Some(env) = env() else { return };
    let mut c = WebDavConfig::from_url(&env.url("denied")).unwrap();
    c.password = Some("nope".into());
    let e = WebDavClient::new(c)
        .unwrap()
        .ltx_files(0, Txid::ZERO, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("401"), "{e}");
    assert!(e.contains("user \"lsuser\""), "{e}");
}

#[test]
fn files_list_read_and_delete() {
    let Some(env) = env() else { return };
    let dir = TempDir::new("webdav-files");
    let c = env.client(&unique("files"));
    assert!(c.ltx_files(1, Txid::ZERO, false).unwrap().is_empty());
    for i in 1..=12u64 {
        c.write_ltx_file(
            1,
            Txid(i),
            Txid(i),
            &File::open(random_ltx(&dir, i, i, 1)).unwrap(),
        )
        .unwrap();
    }
    // Written twice (a retried upload): replaced, not an error.
    c.write_ltx_file(
        1,
        Txid(3),
        Txid(3),
        &File::open(random_ltx(&dir, 3, 3, 1)).unwrap(),
    )
    .unwrap();
    let all = c.ltx_files(1, Txid::ZERO, false).unwrap();
    assert_eq!(all.len(), 12);
    assert!(all.windows(2).all(|w| w[0].min_txid < w[1].min_txid));
    let from = c.ltx_files(1, Txid(10), true).unwrap();
    assert_eq!(from.len(), 3);
    // Accurate timestamps come from the LTX header.
    assert_eq!(
        from[0].created_at,
        litestream::parse_rfc3339("2023-11-14T22:13:20.010Z").unwrap()
    );
    let mut b = Vec::new();
    c.open_ltx_file(1, Txid(7), Txid(7), 8, Some(4))
        .unwrap()
        .read_to_end(&mut b)
        .unwrap();
    assert_eq!(b, 4096u32.to_be_bytes());
    // A multi-megabyte file streams up and back whole.
    let big = random_ltx(&dir, 20, 30, 1700);
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
    assert_eq!(c.ltx_files(1, Txid::ZERO, false).unwrap().len(), 8);
    assert!(matches!(
        c.open_ltx_file(1, Txid(2), Txid(2), 0, None).err(),
        Some(Error::NotFound { .. })
    ));
    c.delete_all().unwrap();
    assert!(c.ltx_files(1, Txid::ZERO, false).unwrap().is_empty());
    assert!(c.ltx_files(0, Txid::ZERO, false).unwrap().is_empty());
}

#[test]
fn replicate_over_webdav_and_restore_both_ways() {
    let Some(env) = env() else { return };
    let dir = TempDir::new("webdav-replicate");
    let (path, path2) = (unique("ours"), unique("theirs"));
    replicate_and_restore_both_ways(
        &dir,
        Interop {
            ours: Arc::new(env.client(&path)),
            theirs: Arc::new(env.client(&path2)),
            official_restore: &|_, out| official_restore_by_url(&env.url(&path), out),
            official_replicate: &|db| official_replicate_by_url(db, &env.url(&path2)),
        },
    );
}

#[test]
fn first_replication_ships_the_database_once() {
    let Some(env) = env() else { return };
    let client = env.client(&unique("ship-once"));
    common::counting::assert_first_replication_ships_once("webdav-ship-once", Arc::new(client));
}
