//! Secrets never appear in logs or errors: every backend's failure paths (wrong key,
//! wrong password, 403, unreachable server, bad configuration) run with secrets made up
//! for the test, with every log line captured, and no secret may appear anywhere.
//!
//! The library runs under a test logger that is what a user who turns on debug logging
//! everywhere would have: debug for every crate (the HTTP library `ureq` and `rustls`
//! too), trace for ours. `ureq` hides request paths and queries at debug level, so the
//! Azure SAS token in a URI must not show. At trace level `ureq` logs whole URIs and raw
//! request lines (a SAS token, a session-token header): `LSRS_SECRETS_TRACE=1` turns
//! third-party trace on and counts those lines apart (outside our code; see
//! RELIABILITY.md). The CLI runs at `LOG_LEVEL=debug` and `trace` and `-log-level trace`:
//! its logger passes other crates' lines at warn and above only, so nothing may show.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use litestream::restore::{restore, RestoreOptions};
use litestream::{CompactionLevels, Db, Replica, ReplicaClient, Store, Txid};

/// Every log line of this process (but, with `LSRS_SECRETS_TRACE`, other crates' debug
/// and trace lines).
static LOG: Mutex<String> = Mutex::new(String::new());
/// Other crates' debug and trace lines with `LSRS_SECRETS_TRACE`.
static THIRD_PARTY_TRACE: Mutex<String> = Mutex::new(String::new());

fn ours(target: &str) -> bool {
    target.starts_with("litestream")
}

fn third_party_trace() -> bool {
    std::env::var_os("LSRS_SECRETS_TRACE").is_some()
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        ours(m.target()) || m.level() <= log::Level::Debug || third_party_trace()
    }
    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = format!("{} {}: {}\n", r.level(), r.target(), r.args());
        let log = if third_party_trace() && !ours(r.target()) && r.level() >= log::Level::Debug {
            &THIRD_PARTY_TRACE
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
            .replica(Replica::new(client.clone()).sync_interval(Duration::from_millis(50)))],
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
    assert_clean(&format!("{what}: client"), &format!("{client:?}"));
    let log = LOG.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_clean(&format!("{what}: log"), &log);
    let third = THIRD_PARTY_TRACE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let leaks = ALL
        .iter()
        .map(|s| third.lines().filter(|l| l.contains(s)).count())
        .sum::<usize>();
    eprintln!(
        "FIGURE secrets {what}: {} log lines clean; {} other-crate trace lines, {leaks} with a secret",
        log.lines().count(),
        third.lines().count()
    );
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

/// The CLI: bad configurations and failing backends (unreachable ones retry for a while,
/// so every configuration runs in its own thread), all output at debug and trace level.
#[test]
fn cli_bad_configs_and_failures() {
    let dir = TempDir::new("secrets-cli");
    let db = dir.join("app.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    create_schema(&conn);
    drop(conn);
    let s3 = peer_env("LITESTREAM_TEST_S3_ENDPOINT").unwrap_or_else(|| "http://127.0.0.1:9".into());
    let abs = peer_env("LITESTREAM_TEST_ABS_ENDPOINT")
        .unwrap_or_else(|| "http://127.0.0.1:9/devstoreaccount1".into());
    let abs_account =
        peer_env("LITESTREAM_TEST_ABS_ACCOUNT").unwrap_or_else(|| "devstoreaccount1".into());
    let db_line = format!("dbs:\n  - path: {}\n", db.display());
    let s3_replica = format!("    replica:\n      url: s3://lsbkt/secrets?endpoint={s3}&forcePathStyle=true&region=us-east-1\n");
    let no_env: &[(&str, &str)] = &[];
    let configs: Vec<(String, &[(&str, &str)])> = vec![
        // A YAML syntax error on the secret's own line.
        (format!("{db_line}    replica:\n      type: s3\n      bucket: b\n      secret-access-key: \"{S3_SECRET}\n"), no_env),
        // A secret of the wrong type.
        (format!("access-key-id: AK\nsecret-access-key: [{S3_SECRET}]\n{db_line}    replica:\n      url: s3://b/p\n"), no_env),
        // An unknown key beside a secret.
        (format!("{db_line}    replica:\n      type: abs\n      account-name: a\n      account-key: {ABS_KEY}\n      bucket: c\n      bogus: 1\n"), no_env),
        // A wrong secret against the real server.
        (format!("access-key-id: AK\nsecret-access-key: {S3_SECRET}\n{db_line}{s3_replica}"), no_env),
        // A wrong secret and a session token from the environment, against the real server.
        (format!("{db_line}{s3_replica}"), &[("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", S3_SECRET), ("AWS_SESSION_TOKEN", S3_TOKEN)]),
        // Passwords in URLs of unreachable servers.
        (format!("{db_line}    replica:\n      url: webdav://u:{DAV_PASS}@127.0.0.1:9/x\n"), no_env),
        (format!("{db_line}    replica:\n      url: nats://u:{NATS_PASS}@127.0.0.1:9/x\n"), no_env),
        // A SAS token, for an unreachable server and for the real one (it refuses it: the
        // requests, with the token in their URIs, reach the server and are logged).
        (format!("{db_line}    replica:\n      url: abs://acct@ctr/b\n      sas-token: \"?sv=2021-08-06&sig={SAS_SIG}\"\n      endpoint: http://127.0.0.1:9/acct\n"), no_env),
        (format!("{db_line}    replica:\n      url: abs://{abs_account}@lsbkt/secrets\n      sas-token: \"?sv=2021-08-06&ss=b&srt=sco&sp=rl&se=2099-01-01T00:00:00Z&sig={SAS_SIG}\"\n      endpoint: {abs}\n"), no_env),
    ];
    std::thread::scope(|scope| {
        for (i, (cfg, env)) in configs.iter().enumerate() {
            let (dir, db) = (&dir, &db);
            scope.spawn(move || cli_config(dir, db, i, cfg, env));
        }
    });
}

/// Runs `restore` and `ltx` (at `LOG_LEVEL` debug and trace) and, when it reaches a
/// server, a short `replicate -log-level trace` with configuration `i`; all must fail
/// (`replicate`: its changes were not replicated) without a secret in their output.
fn cli_config(dir: &TempDir, db: &std::path::Path, i: usize, cfg: &str, env: &[(&str, &str)]) {
    let path = dir.join(format!("c{i}.yml"));
    // Replicating (configurations that parse and reach a server) logs upload failures;
    // it gives up on them a second after its subprocess exits.
    let replicates = cfg.contains("lsbkt");
    let cfg = if replicates {
        format!("shutdown-sync-timeout: 1s\n{cfg}")
    } else {
        cfg.to_string()
    };
    std::fs::write(&path, cfg).unwrap();
    let out = dir.join(format!("out{i}.db"));
    let (config, db) = (path.display().to_string(), db.display().to_string());
    let out = out.display().to_string();
    let mut runs: Vec<(&str, Vec<&str>)> = vec![
        (
            "debug",
            vec!["restore", "-config", &config, "-o", &out, &db],
        ),
        ("trace", vec!["ltx", "-config", &config, &db]),
    ];
    if replicates {
        runs.push((
            "info",
            vec![
                "replicate",
                "-config",
                &config,
                "-log-level",
                "trace",
                "-exec",
                "sleep 2",
            ],
        ));
    }
    for (level, args) in runs {
        let mut cmd = std::process::Command::new(our_bin());
        cmd.args(&args)
            .env("LOG_LEVEL", level)
            .env_remove("LITESTREAM_ACCESS_KEY_ID")
            .env_remove("AWS_ACCESS_KEY_ID");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (ok, stdout, stderr) = run(&mut cmd);
        let what = format!("cli config {i} {}", args[0]);
        assert!(!ok, "{what}: succeeded\n{stderr}");
        assert_clean(&what, &format!("{stdout}\n{stderr}"));
        eprintln!(
            "{what}: {} lines; last: {}",
            stderr.lines().count(),
            stderr.lines().last().unwrap_or("")
        );
    }
}
