//! The control socket's routes on a running store (paths as the config's).

use std::sync::Arc;

use super::*;
use crate::client::FileClient;
use crate::{CompactionLevels, Store};

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let p =
            std::env::temp_dir().join(format!("lsrs-ctl-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running store replicating `dir/a.db` to `dir/rep`, and the handlers' context with
/// `home` as `~`.
fn running(dir: &Path, home: &Path) -> (Store, Ctx) {
    let db = dir.join("a.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE t (v); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(c);
    let replica = Replica::new(Arc::new(FileClient::new(dir.join("rep"))));
    let mut store = Store::new(
        vec![Db::new(&db).replica(replica)],
        CompactionLevels::default(),
    )
    .unwrap();
    store.open().unwrap();
    let ctx = Ctx {
        store: store.handle(),
        started: SystemTime::now(),
        pid: 1,
        home: Some(home.to_path_buf()),
    };
    (store, ctx)
}

fn get(target: &str) -> Request {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Request {
        method: "GET".into(),
        path: path.into(),
        query: query.into(),
        body: String::new(),
    }
}

fn post(path: &str, body: String) -> Request {
    Request {
        method: "POST".into(),
        path: path.into(),
        query: String::new(),
        body,
    }
}

/// Fails without the fix: `..`, a `sqlite://` prefix and a bare `~` were not resolved, so
/// each named no database (404).
#[test]
fn request_paths_name_databases_as_the_config_does() {
    let s = Scratch::new("paths");
    let (mut store, ctx) = running(&s.0, &s.0);
    let d = s.0.display();
    for target in [
        format!("/txid?path={d}/sub/../a.db"),
        format!("/txid?path={d}/./a.db"),
        "/txid?path=sqlite://~/a.db".to_string(),
        format!("/txid?path=sqlite3://{d}/a.db"),
    ] {
        let r = route(&get(&target), &ctx);
        assert_eq!(r.status, 200, "{target}: {}", r.body);
    }
    let r = route(
        &post("/sync", format!("{{\"path\":\"{d}/x/../a.db\"}}")),
        &ctx,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // A bare `~`: with the database's own path as the home directory.
    let home_is_db = Ctx {
        home: Some(s.0.join("a.db")),
        store: ctx.store.clone(),
        started: ctx.started,
        pid: ctx.pid,
    };
    let r = route(&get("/txid?path=~"), &home_is_db);
    assert_eq!(r.status, 200, "{}", r.body);
    let no_home = Ctx {
        home: None,
        ..home_is_db
    };
    let r = route(&get("/txid?path=~/a.db"), &no_home);
    assert_eq!(r.status, 400, "{}", r.body);
    store.close().unwrap();
}
