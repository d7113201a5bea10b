//! # litestream
//!
//! Continuous replication of SQLite databases to files and object stores, in your Rust
//! program, byte-compatible with [Litestream](https://litestream.io) v0.5: a replica written
//! here restores with the official `litestream restore`, and the other way round.
//!
//! The pieces, each in its own module:
//!
//! * [`ltx`] — the LTX file format (encoder, decoder, compactor);
//! * [`client`] — where LTX files are stored ([`ReplicaClient`], [`FileClient`], ...);
//! * [`restore`] — turning a replica back into a database.
//!
//! Restoring the latest state of a file replica:
//!
//! ```no_run
//! use litestream::restore::{restore, RestoreOptions};
//!
//! let client = litestream::client::from_url("file:///var/backups/app.db")?;
//! let report = restore(client.as_ref(), &RestoreOptions::new("/tmp/app.db"))?;
//! println!("restored to transaction {}", report.txid);
//! # Ok::<(), litestream::Error>(())
//! ```

pub mod client;
mod compaction;
mod db;
mod error;
pub mod ltx;
mod pool;
mod replica;
pub mod restore;
mod sqlite;
mod store;
mod time;
mod timer;
mod url;
mod wal;

#[cfg(feature = "cli")]
pub mod cli;

pub use client::{FileClient, FileInfo, ReplicaClient};
pub use compaction::{CompactionLevel, CompactionLevels};
pub use db::Db;
pub use error::{Error, Result};
pub use ltx::Txid;
pub use replica::Replica;
pub use sqlite::sqlite_version;
pub use store::{CloseReport, DbStatus, ReplicaStatus, Store};
pub use time::{format_rfc3339, parse_rfc3339};
pub use url::is_url;
