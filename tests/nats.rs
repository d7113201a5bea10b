//! The NATS JetStream object store client against nats-server on 127.0.0.1, and interop
//! with the official Litestream through it.

mod common;

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use common::*;
use litestream::client::{NatsClient, NatsConfig};
use litestream::restore::{restore, IntegrityCheck, RestoreOptions};
use litestream::{CompactionLevels, Db, Error, Replica, ReplicaClient, Store, Txid};

/// The server restart test holds this exclusively; every other test shares it.
static SERVER: RwLock<()> = RwLock::new(());

struct Env {
    addr: String,
    user: String,
    pass: String,
}

fn env() -> Option<Env> {
    Some(Env {
        addr: peer_env("LITESTREAM_TEST_NATS_ADDR")?,
        user: peer_env("LITESTREAM_TEST_NATS_USER")?,
        pass: peer_env("LITESTREAM_TEST_NATS_PASS")?,
    })
}

impl Env {
    fn url(&self, bucket: &str) -> String {
        format!("nats://{}:{}@{}/{bucket}", self.user, self.pass, self.addr)
    }

    /// A client on a new bucket (created, as an operator would before using Litestream).
    fn client(&self, bucket: &str) -> NatsClient {
        let c = NatsClient::from_url(&self.url(bucket)).unwrap();
        c.create_bucket().unwrap();
        c
    }

    fn official_config(&self, dir: &TempDir, db: &Path, bucket: &str) -> std::path::PathBuf {
        self.official_config_with(dir, db, bucket, "")
    }

    /// A litestream.yml for `db` on `bucket`, with `extra` replica keys (indented lines).
    fn official_config_with(
        &self,
        dir: &TempDir,
        db: &Path,
        bucket: &str,
        extra: &str,
    ) -> std::path::PathBuf {
        let cfg = dir.join(format!("{bucket}.yml"));
        std::fs::write(
            &cfg,
            format!(
                "dbs:\n  - path: {}\n    replicas:\n      - url: nats://{}/{bucket}\n        username: {}\n        password: {}\n        sync-interval: 100ms\n{extra}",
                db.display(),
                self.addr,
                self.user,
                self.pass
            ),
        )
        .unwrap();
        cfg
    }
}

/// The error of a client that cannot connect (its first listing), as text.
fn refusal_of(c: &NatsClient) -> String {
    c.ltx_files(0, Txid::ZERO, false).unwrap_err().to_string()
}

fn refusal(cfg: NatsConfig) -> String {
    refusal_of(&NatsClient::new(cfg))
}

fn bucket(name: &str) -> String {
    unique(name).replace('.', "-")
}

#[test]
fn wrong_password_is_a_clear_error() {
    let Some(env) = env() else { return };
    let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
    let mut c = NatsConfig::from_url(&env.url("denied")).unwrap();
    c.password = Some("nope".into());
    let e = refusal(c);
    assert!(e.contains("Authorization Violation"), "{e}");
    assert!(e.contains("user \"lsuser\""), "{e}");
    assert!(!e.contains("nope"), "{e}");
}

/// An NKey user (`seed` in litestream.yml): the server's nonce is signed with the seed's
/// Ed25519 key and the server checks it against the public key it knows. A valid seed of
/// a key the server does not know is refused, naming that public key.
#[test]
fn nkey_seed_authenticates_and_an_unknown_key_is_refused() {
    let Some(env) = env() else { return };
    let Some(seed) = peer_env("LITESTREAM_TEST_NATS_SEED") else {
        return;
    };
    let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("nats-nkey");
    let mut cfg = NatsConfig::from_url(&format!("nats://{}/{}", env.addr, bucket("nkey"))).unwrap();
    cfg.seed = Some(seed);
    let c = NatsClient::new(cfg.clone());
    c.create_bucket().unwrap();
    let f = random_ltx(&dir, 1, 4, 3);
    c.write_ltx_file(0, Txid(1), Txid(4), &File::open(&f).unwrap())
        .unwrap();
    assert_eq!(c.ltx_files(0, Txid::ZERO, false).unwrap().len(), 1);
    let mut got = Vec::new();
    c.open_ltx_file(0, Txid(1), Txid(4), 0, None)
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert_eq!(got, std::fs::read(&f).unwrap());

    // A well-formed seed (from the nats crate's tests) that this server does not know.
    cfg.seed = Some("SUANQDPB2RUOE4ETUA26CNX7FUKE5ZZKFCQIIW63OX225F2CO7UEXTM7ZY".into());
    let e = refusal(cfg.clone());
    assert!(e.contains("Authorization Violation"), "{e}");
    assert!(
        e.contains("nkey UAMMBNV2EYR65NYZZ7IAK5SIR5ODNTTERJOBOF4KJLMWI45YOXOSWULM"),
        "{e}"
    );
    assert!(!e.contains("SUANQ"), "the seed must never be printed: {e}");
    // A damaged seed never reaches the server.
    cfg.seed =
        Some("SUANQDPB2RUOE4ETUA26CNX7FUKE5ZZKFCQIIW63OX225F2CO7UEXTM7ZY".replace("FUKE", "FUKF"));
    let e = refusal(cfg);
    assert!(e.contains("checksum"), "{e}");
}

/// TLS, which the server offers and the config asks for: with the server's CA our client
/// and the official binary replicate and restore each other's replicas through the same
/// litestream.yml (`tls: true`, `root-cas`); without that CA the certificate is refused,
/// with a hint.
#[test]
fn tls_with_the_servers_ca_both_ways_and_refused_without_it() {
    let Some(env) = env() else { return };
    let Some(ca) = peer_env("LITESTREAM_TEST_NATS_CA") else {
        return;
    };
    let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
    let tls = |b: &str, with_ca: bool| {
        let mut c = NatsConfig::from_url(&env.url(b)).unwrap();
        c.tls = true;
        if with_ca {
            c.root_cas = vec![ca.clone().into()];
        }
        NatsClient::new(c)
    };
    let e = refusal_of(&tls(&bucket("tls-no-ca"), false));
    assert!(e.contains("certificate") && e.contains("root-cas"), "{e}");

    let dir = TempDir::new("nats-tls");
    let (ours, theirs) = (bucket("tls-ours"), bucket("tls-theirs"));
    let (a, b) = (tls(&ours, true), tls(&theirs, true));
    a.create_bucket().unwrap();
    b.create_bucket().unwrap();
    let extra = format!("        tls: true\n        root-cas:\n          - {ca}\n");
    let cfg = |db: &Path, bkt: &str| env.official_config_with(&dir, db, bkt, &extra);
    let (db, want) = replicate_and_restore_both_ways(
        &dir,
        Interop {
            ours: Arc::new(a),
            theirs: Arc::new(b),
            official_restore: &|db, out| official_restore_by_config(&cfg(db, &ours), db, out),
            official_replicate: &|db| official_replicate_by_config(&cfg(db, &theirs)),
        },
    );
    assert_our_restore_by_config(&cfg(&db, &ours), &db, &dir.join("ours-cli.db"), &want);
}

#[test]
fn missing_bucket_is_a_clear_error() {
    let Some(env) = env() else { return };
    let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
    let c = NatsClient::from_url(&env.url(&bucket("absent"))).unwrap();
    let e = c.ltx_files(0, Txid::ZERO, false).unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    let e = e.to_string();
    assert!(e.contains("does not create it"), "{e}");
}

#[test]
fn files_list_read_and_delete() {
    let Some(env) = env() else { return };
    let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("nats-files");
    let c = env.client(&bucket("files"));
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
    // Written twice (a retried upload): replaced, not an error, and not listed twice.
    c.write_ltx_file(
        1,
        Txid(3),
        Txid(3),
        &File::open(random_ltx(&dir, 3, 3, 1)).unwrap(),
    )
    .unwrap();
    c.write_ltx_file(
        0,
        Txid(7),
        Txid(7),
        &File::open(random_ltx(&dir, 7, 7, 1)).unwrap(),
    )
    .unwrap();
    let all = c.ltx_files(1, Txid::ZERO, false).unwrap();
    assert_eq!(all.len(), 12);
    assert!(all.windows(2).all(|w| w[0].min_txid < w[1].min_txid));
    assert_eq!(c.ltx_files(0, Txid::ZERO, false).unwrap().len(), 1);
    let from = c.ltx_files(1, Txid(10), true).unwrap();
    assert_eq!(from.len(), 3);
    // Timestamps come from the LTX header, through the Litestream-Timestamp header.
    let ts = litestream::parse_rfc3339("2023-11-14T22:13:20.010Z").unwrap();
    assert_eq!(from[0].created_at, ts);

    // A file of several chunks, read whole and from an offset.
    let big = random_ltx(&dir, 20, 20, 700);
    let want = std::fs::read(&big).unwrap();
    assert!(want.len() > 5 * 128 * 1024);
    let info = c
        .write_ltx_file(1, Txid(20), Txid(20), &File::open(&big).unwrap())
        .unwrap();
    assert_eq!(info.size, want.len() as u64);
    let mut got = Vec::new();
    c.open_ltx_file(1, Txid(20), Txid(20), 0, None)
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert!(got == want, "whole object differs");
    let mut part = Vec::new();
    c.open_ltx_file(1, Txid(20), Txid(20), 300_000, Some(1000))
        .unwrap()
        .read_to_end(&mut part)
        .unwrap();
    assert!(part == want[300_000..301_000], "ranged read differs");

    c.delete_ltx_files(&all[..2]).unwrap();
    // Deleting what is gone is fine.
    c.delete_ltx_files(&all[..2]).unwrap();
    assert_eq!(c.ltx_files(1, Txid::ZERO, false).unwrap().len(), 11);
    assert!(matches!(
        c.open_ltx_file(1, Txid(1), Txid(1), 0, None).err(),
        Some(Error::NotFound { .. })
    ));
    c.delete_all().unwrap();
    assert!(c.ltx_files(1, Txid::ZERO, false).unwrap().is_empty());
    assert!(c.ltx_files(0, Txid::ZERO, false).unwrap().is_empty());
}

#[test]
fn replicate_to_nats_and_restore_both_ways() {
    let Some(env) = env() else { return };
    let _shared = SERVER.read().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("nats-replicate");
    let (ours, theirs) = (bucket("ours"), bucket("theirs"));
    let restore_cfg = |db: &Path| env.official_config(&dir, db, &ours);
    let (db, want) = replicate_and_restore_both_ways(
        &dir,
        Interop {
            ours: Arc::new(env.client(&ours)),
            theirs: Arc::new(env.client(&theirs)),
            official_restore: &|db, out| official_restore_by_config(&restore_cfg(db), db, out),
            official_replicate: &|db| {
                official_replicate_by_config(&env.official_config(&dir, db, &theirs))
            },
        },
    );
    // Our command reads the same litestream.yml keys as the official binary.
    assert_our_restore_by_config(&restore_cfg(&db), &db, &dir.join("ours-cli.db"), &want);
}

/// The server is killed with SIGKILL while the store replicates, and comes back with its
/// data: the client reconnects, the replica catches up and restores equal.
#[test]
fn server_killed_and_restarted_replica_catches_up() {
    let Some(env) = env() else { return };
    let (Some(restart), Some(pidfile)) = (
        peer_env("LITESTREAM_TEST_NATS_RESTART"),
        peer_env("LITESTREAM_TEST_NATS_PIDFILE"),
    ) else {
        return;
    };
    let _exclusive = SERVER.write().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("nats-fault");
    let db = dir.join("app.db");
    let client = Arc::new(env.client(&bucket("fault")));
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
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    let _ = Command::new("kill").args(["-KILL", &pid]).status();
    for i in 0..5 {
        w.cmd(&format!("mixed {} 5", 10 + i));
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, _, err) = run(Command::new("bash").arg("-c").arg(&restart));
    assert!(ok, "restart failed: {err}");
    w.cmd("big 2");
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
