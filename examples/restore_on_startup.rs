//! Restore-on-start-up: when the database file is missing (a fresh machine, a new
//! container), restore it from the replica first; a replica with nothing in it yet means
//! "start fresh". Then replicate as usual.
//!
//! ```text
//! cargo run --example restore_on_startup -- /tmp/app.db file:///tmp/app-replica
//! # run it again after `rm /tmp/app.db*`: the rows come back
//! ```

use std::path::PathBuf;
use std::time::Duration;

use litestream::restore::restore_if_not_exists;
use litestream::{CompactionLevels, Db, Replica, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let db_path = PathBuf::from(args.next().unwrap_or_else(|| "restore-example.db".into()));
    let url = args.next().unwrap_or_else(|| {
        let abs = std::env::current_dir()
            .unwrap_or_default()
            .join("restore-example-replica");
        format!("file://{}", abs.display())
    });
    let replica = Replica::from_url(&url)?;

    match restore_if_not_exists(replica.client().as_ref(), &db_path)? {
        Some(r) => println!(
            "restored {} to transaction {} from {url}",
            db_path.display(),
            r.txid
        ),
        None if db_path.exists() => println!("{} exists, using it", db_path.display()),
        None => println!("no backup at {url} yet, starting fresh"),
    }

    let conn = rusqlite::Connection::open(&db_path)?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.execute_batch("CREATE TABLE IF NOT EXISTS boots(id INTEGER PRIMARY KEY, at TEXT)")?;

    let mut store = Store::new(
        vec![Db::new(&db_path).replica(replica)],
        CompactionLevels::default(),
    )?;
    store.open()?;
    conn.execute("INSERT INTO boots(at) VALUES (datetime('now'))", [])?;
    let boots: i64 = conn.query_row("SELECT count(*) FROM boots", [], |r| r.get(0))?;
    println!("this is boot number {boots}");
    let txid = store.sync(&db_path)?;
    store.wait_replicated(&db_path, Some(txid), Duration::from_secs(30))?;
    let report = store.close()?;
    println!(
        "replicated up to {txid}; complete: {}",
        report.is_complete()
    );
    Ok(())
}
