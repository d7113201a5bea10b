//! The S3 client when the server (SeaweedFS on 127.0.0.1) is killed mid-upload and
//! restarted. Alone in its own test binary: cargo runs test binaries one at a time, so no
//! other test (tests/s3.rs and the rest) is talking to the server while it is down.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::s3::s3_env;
use common::*;
use litestream::restore::{restore, IntegrityCheck, RestoreOptions};
use litestream::{CompactionLevels, Db, Replica, Store};

#[test]
fn server_killed_mid_upload_then_back_loses_nothing() {
    let Some(env) = s3_env() else { return };
    let (Some(pidfile), Some(restart)) = (
        peer_env("LITESTREAM_TEST_S3_PIDFILE"),
        peer_env("LITESTREAM_TEST_S3_RESTART"),
    ) else {
        return;
    };
    let dir = TempDir::new("s3-fault");
    let db = dir.join("app.db");
    let client = Arc::new(env.client(&unique("fault")));
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
    // Kill the server while a large upload is going on.
    w.cmd("big 2");
    store.sync(&db).unwrap();
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    let _ = Command::new("kill").args(["-KILL", &pid]).status();
    for i in 0..5 {
        w.cmd(&format!("mixed {} 5", 10 + i));
        std::thread::sleep(Duration::from_millis(300));
    }
    let status = store.status();
    eprintln!("while the server is down: {:?}", status[0].replicas[0]);
    let (ok, _, err) = run(Command::new("bash").arg("-c").arg(&restart));
    assert!(ok, "restart failed: {err}");
    w.cmd("mixed 20 5");
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
