//! The WebDAV client against WsgiDAV (on gunicorn) on 127.0.0.1, and interop with the
//! official Litestream through it.

mod common;

use std::fs::File;
use std::io::Read;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use litestream::client::{WebDavClient, WebDavConfig};
use litestream::ltx::{Encoder, Header, PageEncoding, HEADER_FLAG_NO_CHECKSUM};
use litestream::restore::{restore, IntegrityCheck, RestoreOptions};
use litestream::{CompactionLevels, Db, Error, Replica, ReplicaClient, Store, Txid};

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
            &File::open(ltx_file(&dir, i, i, 1)).unwrap(),
        )
        .unwrap();
    }
    // Written twice (a retried upload): replaced, not an error.
    c.write_ltx_file(
        1,
        Txid(3),
        Txid(3),
        &File::open(ltx_file(&dir, 3, 3, 1)).unwrap(),
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
    let big = ltx_file(&dir, 20, 30, 1700);
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
    let (ok, _, err) = run(official_cmd(&bin)
        .args(["restore", "-integrity-check", "full", "-o"])
        .arg(&theirs)
        .arg(env.url(&path)));
    assert!(ok, "official restore from our WebDAV replica: {err}");
    assert_eq!(dump(&theirs), want);

    // The other way: the official binary replicates, we restore.
    let db2 = dir.join("official-src.db");
    let path2 = unique("theirs");
    let mut w2 = Writer::spawn(&db2, 5000);
    w2.cmd("mixed 5 10");
    let mut child = official_cmd(&bin)
        .arg("replicate")
        .arg(&db2)
        .arg(env.url(&path2))
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
