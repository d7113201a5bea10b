//! Secrets never appear in logs or errors: every backend's failure paths (wrong key,
//! wrong password, 403, unreachable server, bad configuration) run with secrets made up
//! for the test, with every log line captured (a test logger at trace level for the
//! library; stderr at debug level for the CLI), and no secret may appear anywhere.
//!
//! One exception, outside this crate: the HTTP library `ureq` logs each request's URI at
//! debug level and its raw bytes at trace level, which shows an Azure SAS token (it is
//! part of the URI) and a session token header. Its lines are captured apart: at info
//! and above they must be clean too; the CLI's logger drops them.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use litestream::restore::{restore, RestoreOptions};
use litestream::{CompactionLevels, Db, Replica, ReplicaClient, Store, Txid};

/// Every log line of this process but `ureq`'s debug and trace lines.
static LOG: Mutex<String> = Mutex::new(String::new());
/// `ureq`'s debug and trace lines.
static UREQ_DEBUG: Mutex<String> = Mutex::new(String::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        let line = format!("{} {}: {}\n", r.level(), r.target(), r.args());
        let log = if r.target().starts_with("ureq") && r.level() >= log::Level::Debug {
            &UREQ_DEBUG
        } else {
            &LOG
        };
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_str(&line);
    }
    fn flush(&self) {}
}

fn capture() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        static CAPTURE: Capture = Capture;
        log::set_logger(&CAPTURE).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// Secrets made up for this test; each must never be seen.
const S3_SECRET: &str = "s3SECRETzz9QwErTy7";
const S3_TOKEN: &str = "s3TOKENzz9SessionTok";
const ABS_KEY: &str = "YWJzU0VDUkVUenoja2V5LWZvci10aGUtdGVzdA=="; // base64
const SAS_SIG: &str = "sasSIGzz9Signature";
const DAV_PASS: &str = "davPASSzz9word";
const NATS_PASS: &str = "natsPASSzz9word";
const ALL: [&str; 6] = [S3_SECRET, S3_TOKEN, ABS_KEY, SAS_SIG, DAV_PASS, NATS_PASS];

fn assert_clean(what: &str, text: &str) {
    for s in ALL {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(s)).collect();
        assert!(
            lines.is_empty(),
            "{what}: a secret appears in:\n{}",
            lines.join("\n")
        );
    }
}

/// Runs a failing operation: its error must be clean; returns the error text.
fn fails<T: std::fmt::Debug>(what: &str, r: litestream::Result<T>) -> String {
    let e = r.expect_err(&format!("{what}: succeeded"));
    let text = format!("{e} / {e:?}");
    assert_clean(what, &text);
    eprintln!("{what}: {e}");
    text
}

/// Restores through `client` (fails) and replicates to it for a while (fails and logs,
/// retrying), checking every error and the log.
fn exercise(what: &str, client: Arc<dyn ReplicaClient>) -> u32 {
    capture();
    let dir = TempDir::new("secrets");
    fails(
        &format!("{what}: list"),
        client.ltx_files(0, Txid::ZERO, false),
    );
    fails(
        &format!("{what}: open"),
        client
            .open_ltx_file(0, Txid(1), Txid(1), 0, None)
            .map(|_| ()),
    );
    fails(
        &format!("{what}: restore"),
        restore(client.as_ref(), &RestoreOptions::new(dir.join("out.db"))),
    );
    let db = dir.join("app.db");
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    create_schema(&conn);
    workload_step(&mut conn, &mut Rng::new(1), 0);
    let mut store = Store::new(
        vec![Db::new(&db)
            .monitor_interval(Duration::from_millis(50))
            .replica(Replica::new(client).sync_interval(Duration::from_millis(50)))],
        CompactionLevels::default(),
    )
    .unwrap()
    .shutdown_timeout(Duration::from_millis(500));
    store.open().unwrap();
    let t = store.sync(&db).unwrap();
    fails(
        &format!("{what}: replicate"),
        store.wait_replicated(&db, Some(t), Duration::from_secs(2)),
    );
    let report = store.close().unwrap();
    assert_clean(what, &format!("{report:?} {:?}", store.status()));
    let log = LOG.lock().unwrap().clone();
    assert_clean(&format!("{what}: log"), &log);
    1
}

#[test]
fn s3_wrong_secret_and_token() {
    use litestream::client::s3::{Credentials, S3Client, S3Config};
    let (Some(endpoint), Some(bucket), Some(ak)) = (
        peer_env("LITESTREAM_TEST_S3_ENDPOINT"),
        peer_env("LITESTREAM_TEST_S3_BUCKET"),
        peer_env("LITESTREAM_TEST_S3_ACCESS_KEY"),
    ) else {
        return;
    };
    for token in [None, Some(S3_TOKEN.to_string())] {
        let mut c = S3Config::from_url(&format!(
            "s3://{bucket}/secrets?endpoint={endpoint}&forcePathStyle=true&region=us-east-1"
        ))
        .unwrap();
        c.credentials = Some(Credentials {
            access_key_id: ak.clone(),
            secret_access_key: S3_SECRET.into(),
            session_token: token,
        });
        exercise("s3 wrong secret", Arc::new(S3Client::new(c).unwrap()));
    }
}

#[test]
fn azure_wrong_key_and_wrong_sas() {
    use litestream::client::{AbsClient, AbsConfig};
    let (Some(endpoint), Some(account)) = (
        peer_env("LITESTREAM_TEST_ABS_ENDPOINT"),
        peer_env("LITESTREAM_TEST_ABS_ACCOUNT"),
    ) else {
        return;
    };
    let config = |key: &str, sas: Option<String>| AbsConfig {
        account_name: account.clone(),
        account_key: key.into(),
        sas_token: sas,
        container: "lsbkt".into(),
        path: "secrets".into(),
        endpoint: Some(endpoint.clone()),
        block_size: 4 << 20,
        page_size: 5000,
    };
    exercise(
        "azure wrong key",
        Arc::new(AbsClient::new(config(ABS_KEY, None)).unwrap()),
    );
    let sas = format!("sv=2021-08-06&ss=b&srt=sco&sp=rl&se=2099-01-01T00:00:00Z&sig={SAS_SIG}");
    exercise(
        "azure wrong sas",
        Arc::new(AbsClient::new(config("", Some(sas))).unwrap()),
    );
}

#[test]
fn webdav_wrong_password() {
    use litestream::client::WebDavClient;
    let (Some(addr), Some(user)) = (
        peer_env("LITESTREAM_TEST_WEBDAV_ADDR"),
        peer_env("LITESTREAM_TEST_WEBDAV_USER"),
    ) else {
        return;
    };
    // (An unreachable server: the CLI test below; here its retries would take minutes.)
    let url = format!("webdav://{user}:{DAV_PASS}@{addr}/secrets");
    exercise("webdav", Arc::new(WebDavClient::from_url(&url).unwrap()));
}

#[test]
fn nats_wrong_password() {
    use litestream::client::NatsClient;
    let (Some(addr), Some(user)) = (
        peer_env("LITESTREAM_TEST_NATS_ADDR"),
        peer_env("LITESTREAM_TEST_NATS_USER"),
    ) else {
        return;
    };
    let url = format!("nats://{user}:{NATS_PASS}@{addr}/secrets");
    match NatsClient::from_url(&url) {
        Ok(c) => {
            exercise("nats wrong password", Arc::new(c));
        }
        Err(e) => assert_clean("nats from_url", &format!("{e} {e:?}")),
    }
}

/// The CLI: bad configurations and failing backends, all output at debug level.
#[test]
fn cli_bad_configs_and_failures() {
    let dir = TempDir::new("secrets-cli");
    let db = dir.join("app.db");
    let s3 = peer_env("LITESTREAM_TEST_S3_ENDPOINT").unwrap_or_else(|| "http://127.0.0.1:9".into());
    let configs = [
        // A YAML syntax error on the secret's own line.
        format!("dbs:\n  - path: {}\n    replica:\n      type: s3\n      bucket: b\n      secret-access-key: \"{S3_SECRET}\n", db.display()),
        // A secret of the wrong type.
        format!("access-key-id: AK\nsecret-access-key: [{S3_SECRET}]\ndbs:\n  - path: {}\n    replica:\n      url: s3://b/p\n", db.display()),
        // An unknown key beside a secret.
        format!("dbs:\n  - path: {}\n    replica:\n      type: abs\n      account-name: a\n      account-key: {ABS_KEY}\n      bucket: c\n      bogus: 1\n", db.display()),
        // A wrong secret against the real server.
        format!("access-key-id: AK\nsecret-access-key: {S3_SECRET}\ndbs:\n  - path: {}\n    replica:\n      url: s3://lsbkt/secrets?endpoint={s3}&forcePathStyle=true&region=us-east-1\n", db.display()),
        // Passwords in URLs of unreachable servers.
        format!("dbs:\n  - path: {}\n    replica:\n      url: webdav://u:{DAV_PASS}@127.0.0.1:9/x\n", db.display()),
        format!("dbs:\n  - path: {}\n    replica:\n      url: nats://u:{NATS_PASS}@127.0.0.1:9/x\n", db.display()),
        format!("dbs:\n  - path: {}\n    replica:\n      url: abs://acct@ctr/b\n      sas-token: \"?sv=2021-08-06&sig={SAS_SIG}\"\n      endpoint: http://127.0.0.1:9/acct\n", db.display()),
    ];
    for (i, cfg) in configs.iter().enumerate() {
        let path = dir.join(format!("c{i}.yml"));
        std::fs::write(&path, cfg).unwrap();
        let out = dir.join(format!("out{i}.db"));
        for args in [
            vec![
                "restore".into(),
                "-config".into(),
                path.display().to_string(),
                "-o".into(),
                out.display().to_string(),
                db.display().to_string(),
            ],
            vec![
                "ltx".into(),
                "-config".into(),
                path.display().to_string(),
                db.display().to_string(),
            ],
        ] {
            let (ok, stdout, stderr) = run(std::process::Command::new(our_bin())
                .args(&args)
                .env("LOG_LEVEL", "debug")
                .env_remove("LITESTREAM_ACCESS_KEY_ID")
                .env_remove("AWS_ACCESS_KEY_ID"));
            assert!(!ok, "config {i} {args:?} succeeded");
            assert_clean(
                &format!("cli config {i} {}", args[0]),
                &format!("{stdout}\n{stderr}"),
            );
            eprintln!(
                "cli config {i} {}: {}",
                args[0],
                stderr.lines().last().unwrap_or("")
            );
        }
    }
}
