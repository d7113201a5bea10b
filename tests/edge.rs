//! The edge build — `cargo build --profile edge --no-default-features --features cli,s3`,
//! made by `.ci/edge.sh` and named by `LITESTREAM_TEST_EDGE_BIN` — replicates through a
//! litestream.yml to S3 over HTTPS (the server's certificate verified against the test
//! CA), and the official binary restores that replica equal.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use litestream::client::s3::{Credentials, S3Client, S3Config};
use litestream::{ReplicaClient, Txid};

/// A litestream.yml replicating `db` to `path` in the bucket over HTTPS.
fn config(db: &Path, path: &str, endpoint: &str, bucket: &str, ak: &str, sk: &str) -> String {
    format!(
        "dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      type: s3\n      \
         bucket: {bucket}\n      path: {path}\n      endpoint: {endpoint}\n      region: us-east-1\n      \
         force-path-style: true\n      access-key-id: {ak}\n      secret-access-key: {sk}\n      \
         sync-interval: 100ms\n",
        db.display()
    )
}

#[test]
fn edge_binary_replicates_to_s3_over_https_and_the_official_binary_restores_it() {
    let Some(edge) = peer_env("LITESTREAM_TEST_EDGE_BIN") else {
        return;
    };
    let (Some(https), Some(http), Some(ca), Some(bucket), Some(ak), Some(sk)) = (
        peer_env("LITESTREAM_TEST_S3_HTTPS_ENDPOINT"),
        peer_env("LITESTREAM_TEST_S3_ENDPOINT"),
        peer_env("LITESTREAM_TEST_CA"),
        peer_env("LITESTREAM_TEST_S3_BUCKET"),
        peer_env("LITESTREAM_TEST_S3_ACCESS_KEY"),
        peer_env("LITESTREAM_TEST_S3_SECRET_KEY"),
    ) else {
        return;
    };
    let Some(official) = official_bin() else {
        return;
    };
    let dir = TempDir::new("edge");
    let db = dir.join("app.db");
    let path = unique("edge");
    // Our library's client over plain HTTP watches the replica the edge binary writes.
    let mut c = S3Config::from_url(&format!(
        "s3://{bucket}/{path}?endpoint={http}&forcePathStyle=true&region=us-east-1"
    ))
    .unwrap();
    c.credentials = Some(Credentials {
        access_key_id: ak.clone(),
        secret_access_key: sk.clone(),
        session_token: None,
    });
    let watcher = S3Client::new(c).unwrap();
    watcher.create_bucket().unwrap();
    let cfg = dir.join("litestream.yml");
    std::fs::write(&cfg, config(&db, &path, &https, &bucket, &ak, &sk)).unwrap();

    // With the system's roots only, the test CA's certificate is not trusted: a clear
    // refusal, at once (not retried as a network fault).
    // The edge binary's restore of `db` with `config` to `out`, trusting the system's
    // roots and `ca_bundle` (AWS_CA_BUNDLE) if given.
    let edge_restore = |config: &Path, out: &Path, ca_bundle: Option<&str>| {
        let mut cmd = Command::new(&edge);
        cmd.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
        if let Some(b) = ca_bundle {
            cmd.env("AWS_CA_BUNDLE", b);
        }
        run(cmd
            .args(["restore", "-config"])
            .arg(config)
            .arg("-o")
            .arg(out)
            .arg(&db))
    };
    let started = std::time::Instant::now();
    let (ok, _, err) = edge_restore(&cfg, &dir.join("untrusted.db"), None);
    assert!(!ok, "an untrusted certificate was accepted");
    assert!(
        err.contains("SSL_CERT_FILE") && err.to_lowercase().contains("certificate"),
        "the refusal names the certificate and what to do: {err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "an untrusted certificate was retried like a network fault"
    );

    let mut w = Writer::spawn(&db, 5000);
    w.cmd("mixed 1 10");
    let log = dir.join("edge.log");
    let mut child = Command::new(&edge)
        .env("SSL_CERT_FILE", &ca)
        .args(["replicate", "-config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    w.cmd("big 2");
    w.cmd("mixed 3 20");
    let local = || Txid(max_txid_in(&meta_l0_dir(&db)));
    let remote = || {
        watcher
            .ltx_files(0, Txid::ZERO, false)
            .map(|v| v.iter().map(|f| f.max_txid).max().unwrap_or_default())
            .unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(60), || local() > Txid::ZERO
            && remote() >= local()),
        "the edge binary did not upload everything: local {} remote {}: {}",
        local(),
        remote(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    drop(w);
    let want = dump(&db);
    assert!(
        terminate(&mut child, Duration::from_secs(30)),
        "the edge binary did not exit cleanly: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let out = dir.join("official.db");
    let (ok, _, err) = run(official_cmd(&official)
        .env("SSL_CERT_FILE", &ca)
        .args(["restore", "-integrity-check", "full", "-config"])
        .arg(&cfg)
        .arg("-o")
        .arg(&out)
        .arg(&db));
    assert!(ok, "official restore of the edge binary's replica: {err}");
    assert_eq!(dump(&out), want, "official restore of the edge replica");

    // The AWS SDKs' AWS_CA_BUNDLE is trusted as well (added to the roots).
    let out = dir.join("aws-ca-bundle.db");
    let (ok, _, err) = edge_restore(&cfg, &out, Some(&ca));
    assert!(ok, "restore with AWS_CA_BUNDLE: {err}");
    assert_eq!(dump(&out), want, "restore with AWS_CA_BUNDLE");

    // skip-verify: never implied (above, no CA: refused), and it warns when set.
    let insecure = dir.join("insecure.yml");
    std::fs::write(
        &insecure,
        config(&db, &path, &https, &bucket, &ak, &sk) + "      skip-verify: true\n",
    )
    .unwrap();
    let out = dir.join("skip-verify.db");
    let (ok, _, err) = edge_restore(&insecure, &out, None);
    assert!(ok, "restore with skip-verify: {err}");
    assert_eq!(dump(&out), want, "restore with skip-verify");
    assert!(
        err.contains("TLS certificate verification is off (skip-verify)"),
        "skip-verify did not warn: {err}"
    );
}
