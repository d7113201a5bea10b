//! The control socket's routes on a running store (paths as the config's, timeouts that
//! cannot overflow) and its socket's mode from the moment it appears.

use std::sync::Arc;

use super::*;
use crate::client::FileClient;
use crate::sys::Inotify;
use crate::{CompactionLevels, Store};

use crate::durable::Scratch;

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

/// Fails without the fix: a timeout of u64::MAX seconds overflowed `Instant + timeout` in
/// the store's wait and panicked the connection's thread.
#[test]
fn a_huge_timeout_is_clamped() {
    let s = Scratch::new("timeout");
    let (mut store, ctx) = running(&s.0, &s.0);
    let body = format!(
        "{{\"path\":\"{}\",\"timeout\":{}}}",
        s.0.join("a.db").display(),
        u64::MAX
    );
    let r = route(&post("/stop", body.clone()), &ctx);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"stopped\""), "{}", r.body);
    let r = route(&post("/unregister", body), &ctx);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json::parse(&format!("{{\"timeout\":{}}}", u64::MAX)).unwrap();
    assert_eq!(timeout(&v, 30), Duration::from_secs(MAX_TIMEOUT));
    store.close().unwrap();
}

/// Fails without the fix: the socket was bound at its path (IN_CREATE) and chmodded there
/// after (IN_ATTRIB), so a client could connect in between and find the umask's mode. Now
/// it arrives only by a rename, its mode set.
#[test]
fn the_socket_appears_with_its_mode() {
    let s = Scratch::new("sock");
    let path = s.0.join("ls.sock");
    // A stale socket from a killed daemon is replaced.
    drop(UnixListener::bind(&path).unwrap());
    let ino = Inotify::new().unwrap();
    ino.watch(
        &s.0,
        Inotify::CREATE | Inotify::ATTRIB | Inotify::MOVED_TO | Inotify::DELETE,
    )
    .unwrap();
    let store = Store::new(Vec::new(), CompactionLevels::default()).unwrap();
    let cfg = SocketConfig {
        enabled: true,
        path: path.clone(),
        permissions: 0o640,
    };
    let server = serve(&cfg, store.handle()).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640);
    let mut events = Vec::new();
    while ino.wait(Duration::from_millis(200), |_, mask, name| {
        events.push((mask, String::from_utf8_lossy(name).into_owned()))
    }) {}
    let on_final: Vec<u32> = events
        .iter()
        .filter(|(_, n)| n == "ls.sock")
        .map(|(m, _)| *m)
        .collect();
    // Linked into place with its mode set: the name appears once and is never chmodded.
    assert!(
        on_final.iter().all(|m| m & Inotify::ATTRIB == 0),
        "the socket's mode was changed at its path: {events:?}"
    );
    assert!(
        on_final
            .iter()
            .any(|m| m & (Inotify::CREATE | Inotify::MOVED_TO) != 0),
        "{events:?}"
    );
    assert!(UnixStream::connect(&path).is_ok());
    // Another daemon listening there is not displaced.
    assert!(serve(&cfg, store.handle()).is_err());
    drop(server);
    assert!(!path.exists());
    let left: Vec<_> = std::fs::read_dir(&s.0).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Two daemons starting at once both find the path free: the second to place its socket
/// gets "address in use" instead of silently taking the path from the first.
#[test]
fn a_socket_placed_meanwhile_is_never_replaced() {
    let s = Scratch::new("sock-race");
    let path = s.0.join("ls.sock");
    let first = UnixListener::bind(&path).unwrap();
    let e = bind_with_mode(&path, 0o600).unwrap_err();
    assert!(e.to_string().contains("in use"), "{e}");
    let _c = UnixStream::connect(&path).unwrap();
    assert!(first.accept().is_ok(), "the first daemon lost its socket");
    let left: Vec<_> = std::fs::read_dir(&s.0)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("ls.sock")]);
}
