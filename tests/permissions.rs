//! Files we create are never readable by more users than the database: the local state
//! directory (its L0 files and snapshots hold the database's pages) is narrowed to who
//! may read the database.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use litestream::{CompactionLevels, Db, FileClient, Replica, Store};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Replicates a database with mode `db_mode`; returns the local state directory's mode.
fn meta_mode_for(db_mode: u32) -> u32 {
    let dir = TempDir::new("perms");
    let db = dir.join("app.db");
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    create_schema(&conn);
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(db_mode)).unwrap();
    workload_step(&mut conn, &mut Rng::new(1), 0);
    let replica = Replica::new(Arc::new(FileClient::new(dir.join("replica"))));
    let mut store = Store::new(
        vec![Db::new(&db)
            .monitor_interval(Duration::from_millis(20))
            .replica(replica)],
        CompactionLevels::default(),
    )
    .unwrap();
    store.open().unwrap();
    let t = store.sync(&db).unwrap();
    store
        .wait_replicated(&db, Some(t), Duration::from_secs(30))
        .unwrap();
    assert!(store.close().unwrap().is_complete());
    let meta = meta_l0_dir(&db)
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    mode(&meta)
}

#[test]
fn the_local_state_is_no_wider_than_the_database() {
    // A private database: the local state is private, whatever the umask gave it.
    assert_eq!(
        meta_mode_for(0o600) & 0o077,
        0,
        "local state of a 0600 database"
    );
    // Group-readable: the group may enter, others may not.
    let m = meta_mode_for(0o640);
    assert_eq!(m & 0o007, 0, "local state of a 0640 database: {m:o}");
}
