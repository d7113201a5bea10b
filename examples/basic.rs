//! The basic embedded setup: your application's own SQLite connection, with a litestream
//! `Store` replicating the database to a replica in the same process. Then it restores the
//! replica to a new file and checks it equals the database.
//!
//! ```text
//! cargo run --release --example basic                   # file replica in ./litestream-example
//! cargo run --release --example basic -- DIR [URL]       # any replica URL
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use litestream::restore::{restore, IntegrityCheck, RestoreOptions};
use litestream::{CompactionLevels, Db, Replica, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "litestream-example".into()));
    std::fs::create_dir_all(&dir)?;
    let db_path = dir.join("app.db");
    let url = args.next().unwrap_or_else(|| {
        format!(
            "file://{}",
            std::fs::canonicalize(&dir)
                .unwrap_or(dir.clone())
                .join("replica")
                .display()
        )
    });
    println!("database {}  ->  replica {url}", db_path.display());

    // The application's connection, as it would open it anyway (WAL mode is required).
    let conn = rusqlite::Connection::open(&db_path)?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS visits(id INTEGER PRIMARY KEY, at TEXT, note TEXT)",
    )?;

    // Replication beside it: one thread watches the WAL, a pool uploads, one thread compacts.
    let db = Db::new(&db_path).replica(Replica::from_url(&url)?);
    let mut store = Store::new(vec![db], CompactionLevels::default())?;
    store.open()?;

    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(5) {
        conn.execute(
            "INSERT INTO visits(at, note) VALUES (datetime('now'), ?1)",
            [format!("visit {n}: {}", "x".repeat(200))],
        )?;
        n += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    // Make sure the last write is on the replica before we go on.
    let txid = store.sync(&db_path)?;
    store.wait_replicated(&db_path, Some(txid), Duration::from_secs(30))?;
    println!("wrote {n} rows; transaction {txid} is on the replica");
    let report = store.close()?;
    assert!(
        report.is_complete(),
        "not replicated: {:?}",
        report.missing()
    );

    // Restore the replica next to it and compare.
    let out = dir.join(format!("restored-{}.db", std::process::id()));
    let client = litestream::client::from_url(&url)?;
    let r = restore(
        client.as_ref(),
        &RestoreOptions::new(&out).integrity_check(IntegrityCheck::Full),
    )?;
    let restored = rusqlite::Connection::open(&out)?;
    let count = |c: &rusqlite::Connection| -> rusqlite::Result<i64> {
        c.query_row("SELECT count(*) FROM visits", [], |r| r.get(0))
    };
    let (want, got) = (count(&conn)?, count(&restored)?);
    println!(
        "restored {} files up to transaction {} into {}: {got} rows (source has {want}), integrity ok",
        r.files.len(),
        r.txid,
        out.display()
    );
    if want != got {
        return Err(format!("restored {got} rows, want {want}").into());
    }
    std::fs::remove_file(&out)?;
    Ok(())
}
