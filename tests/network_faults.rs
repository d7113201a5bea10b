//! Replication under write load through a loopback proxy that breaks requests on purpose,
//! in front of every HTTP backend's test server (S3: SeaweedFS, Azure: Azurite, GCS:
//! fake-gcs-server, WebDAV: WsgiDAV): connections reset mid-request and mid-answer,
//! hang-ups, 500/503/429 answers, stalls and slow drips. Every confirmation must hold,
//! the store must catch up once the faults stop, the replica must restore equal (with
//! ours; for S3 with the official binary too) and S3 must hold no multipart upload left
//! behind.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fault_proxy::{Fault, FaultProxy};
use common::*;
use litestream::restore::{restore, RestoreOptions};
use litestream::{CompactionLevels, Db, Replica, ReplicaClient, Store};
use rusqlite::Connection;

/// The proxy's fault plan: random faults while on, counted by kind.
struct Plan {
    on: AtomicBool,
    rng: Mutex<Rng>,
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl Plan {
    fn new(seed: u64) -> Arc<Plan> {
        Arc::new(Plan {
            on: AtomicBool::new(true),
            rng: Mutex::new(Rng::new(seed)),
            counts: Mutex::new(BTreeMap::new()),
        })
    }

    fn pick(&self) -> Fault {
        if !self.on.load(Ordering::SeqCst) {
            return Fault::Pass;
        }
        let (fault, name) = match self.rng.lock().unwrap().below(100) {
            0..=3 => (Fault::ResetRequest, "reset mid-request"),
            4..=7 => (Fault::CutAnswer, "answer cut mid-body"),
            8..=10 => (Fault::HangUp, "hang-up before forwarding"),
            11..=14 => (Fault::Status(503), "503"),
            15..=16 => (Fault::Status(500), "500"),
            17..=19 => (Fault::Status(429), "429"),
            20..=21 => (Fault::Stall(Duration::from_millis(1500)), "stall 1.5 s"),
            22..=25 => (Fault::Drip, "slow drip"),
            _ => return Fault::Pass,
        };
        *self.counts.lock().unwrap().entry(name).or_default() += 1;
        fault
    }

    fn proxy(self: &Arc<Plan>, upstream: &str) -> FaultProxy {
        let plan = self.clone();
        FaultProxy::start(upstream, move |_, _| plan.pick())
    }
}

/// Writes under faults, confirming every ten transactions, then stops the faults and
/// checks the store catches up, closes complete, and `direct` restores equal.
fn survive(
    name: &str,
    through: Arc<dyn ReplicaClient>,
    direct: &dyn ReplicaClient,
    plan: &Plan,
) -> String {
    let dir = TempDir::new(name);
    let db = dir.join("app.db");
    let mut conn = Connection::open(&db).unwrap();
    create_schema(&conn);
    let ms = Duration::from_millis;
    let mut store = Store::new(
        vec![Db::new(&db)
            .monitor_interval(ms(50))
            .replica(Replica::new(through).sync_interval(ms(50)))],
        CompactionLevels::from_intervals(&[ms(500), ms(1000)]).unwrap(),
    )
    .unwrap()
    .snapshot_interval(ms(1000))
    .snapshot_retention(ms(2000))
    .l0_retention(ms(300))
    .l0_retention_check_interval(ms(300));
    store.open().unwrap();
    let mut rng = Rng::new(3);
    // `LITESTREAM_NETFAULT_STEPS` transactions under faults (default 60).
    let steps: u64 = std::env::var("LITESTREAM_NETFAULT_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    for step in 0..steps {
        if step % 200 == 30 && name.starts_with("s3") {
            big_transaction(&mut conn, &mut rng); // a multipart upload
        }
        workload_step(&mut conn, &mut rng, step);
        if step % 10 == 9 {
            let t = store.sync(&db).unwrap();
            store
                .wait_replicated(&db, Some(t), Duration::from_secs(120))
                .unwrap_or_else(|e| panic!("{name}: step {step} under faults: {e}"));
        }
        std::thread::sleep(ms(20));
    }
    // The faults stop; a few more writes; the store catches up by itself.
    plan.on.store(false, Ordering::SeqCst);
    for step in steps..steps + 10 {
        workload_step(&mut conn, &mut rng, step);
    }
    let want = dump_conn(&conn);
    let t = store.sync(&db).unwrap();
    store
        .wait_replicated(&db, Some(t), Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{name}: after the faults stopped: {e}"));
    let report = store.close().unwrap();
    assert!(report.is_complete(), "{name}: {:?}", report.missing());
    let out = dir.join("restored.db");
    restore(direct, &RestoreOptions::new(&out)).unwrap_or_else(|e| panic!("{name}: restore: {e}"));
    assert_eq!(integrity(&out), "ok");
    assert!(
        dump(&out) == want,
        "{name}: the restore differs from the database"
    );
    let counts = plan.counts.lock().unwrap().clone();
    let total: u64 = counts.values().sum();
    assert!(
        total >= 5,
        "{name}: too few faults injected to mean anything: {counts:?}"
    );
    eprintln!("FIGURE network_faults {name}: {total} faults {counts:?}, 0 transactions lost");
    want
}

#[test]
fn s3_through_faults() {
    use litestream::client::s3::S3Client;
    let Some(env) = common::s3::s3_env() else {
        return;
    };
    let path = unique("netfault");
    let config = |endpoint: &str| {
        let mut c = env.config_at(&path, endpoint);
        c.part_size = 5 << 20;
        c
    };
    let direct = S3Client::new(config(&env.endpoint)).unwrap();
    direct.create_bucket().unwrap();
    let plan = Plan::new(14);
    let proxy = plan.proxy(&env.endpoint);
    let through = Arc::new(S3Client::new(config(&proxy.url)).unwrap());
    let want = survive("s3", through, &direct, &plan);
    let left = direct.multipart_uploads(&format!("{path}/")).unwrap();
    assert!(left.is_empty(), "multipart uploads left behind: {left:?}");
    if let Some(bin) = official_bin() {
        let dir = TempDir::new("s3-netfault-official");
        let out = dir.join("official.db");
        let (ok, _, err) = run(env
            .official(&bin)
            .args(["restore", "-integrity-check", "full", "-o"])
            .arg(&out)
            .arg(env.url(&path)));
        assert!(ok, "official restore: {err}");
        assert!(dump(&out) == want, "the official restore differs");
    }
}

#[test]
fn azure_through_faults() {
    use litestream::client::{AbsClient, AbsConfig};
    let (Some(endpoint), Some(account), Some(key)) = (
        peer_env("LITESTREAM_TEST_ABS_ENDPOINT"),
        peer_env("LITESTREAM_TEST_ABS_ACCOUNT"),
        peer_env("LITESTREAM_TEST_ABS_KEY"),
    ) else {
        return;
    };
    let path = unique("netfault");
    let config = |endpoint: String| AbsConfig {
        account_name: account.clone(),
        account_key: key.clone(),
        sas_token: None,
        container: "lsbkt".into(),
        path: path.clone(),
        endpoint: Some(endpoint),
        block_size: 1 << 20,
        page_size: 5000,
    };
    let direct = AbsClient::new(config(endpoint.clone())).unwrap();
    direct.create_container().unwrap();
    let (origin, account_path) = split_origin(&endpoint);
    let plan = Plan::new(15);
    let proxy = plan.proxy(&origin);
    let through = Arc::new(AbsClient::new(config(format!("{}{account_path}", proxy.url))).unwrap());
    survive("azure", through, &direct, &plan);
}

#[test]
fn gcs_through_faults() {
    use litestream::client::{GcsClient, GcsConfig};
    let Some(host) = peer_env("LITESTREAM_TEST_GCS_HOST") else {
        return;
    };
    let path = unique("netfault");
    let config = |endpoint: String| {
        let mut c = GcsConfig::from_url(&format!("gs://lsbkt/{path}")).unwrap();
        c.endpoint = Some(endpoint);
        c
    };
    let direct = GcsClient::new(config(format!("http://{host}"))).unwrap();
    direct.create_bucket("test").unwrap();
    let plan = Plan::new(16);
    let proxy = plan.proxy(&format!("http://{host}"));
    let through = Arc::new(GcsClient::new(config(proxy.url.clone())).unwrap());
    survive("gcs", through, &direct, &plan);
}

#[test]
fn webdav_through_faults() {
    use litestream::client::WebDavClient;
    let (Some(addr), Some(user), Some(pass)) = (
        peer_env("LITESTREAM_TEST_WEBDAV_ADDR"),
        peer_env("LITESTREAM_TEST_WEBDAV_USER"),
        peer_env("LITESTREAM_TEST_WEBDAV_PASS"),
    ) else {
        return;
    };
    let path = unique("netfault");
    let direct = WebDavClient::from_url(&format!("webdav://{user}:{pass}@{addr}/{path}")).unwrap();
    let plan = Plan::new(17);
    let proxy = plan.proxy(&format!("http://{addr}"));
    let proxy_addr = proxy.url.trim_start_matches("http://").to_string();
    let through = Arc::new(
        WebDavClient::from_url(&format!("webdav://{user}:{pass}@{proxy_addr}/{path}")).unwrap(),
    );
    survive("webdav", through, &direct, &plan);
}

/// `http://host:port/account` → (`http://host:port`, `/account`).
fn split_origin(endpoint: &str) -> (String, String) {
    let rest = endpoint.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = if path.is_empty() {
        String::new()
    } else {
        format!("/{path}")
    };
    (format!("http://{host}"), path)
}
