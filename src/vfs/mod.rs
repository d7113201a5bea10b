//! Read replicas: a read-only SQLite VFS that serves a database straight from a replica
//! (any [`ReplicaClient`]), following new transactions as they arrive.
//!
//! ```no_run
//! use std::sync::Arc;
//! use litestream::vfs::{self, ReaderOptions, ReplicaReader};
//!
//! let client = litestream::client::from_url("s3://bucket/app.db")?;
//! let reader = ReplicaReader::open(client, ReaderOptions::default())?;
//! vfs::register("app-replica", reader)?;
//! // Then, with rusqlite:
//! //   Connection::open_with_flags_and_vfs("app.db", OpenFlags::SQLITE_OPEN_READ_ONLY, "app-replica")
//! # Ok::<(), litestream::Error>(())
//! ```
//!
//! Pieces: `reader` (the state one replica shares across every connection of the process:
//! newest TXID, page map, file table, page cache, poller), `pagemap` (16 bytes a page,
//! copy-on-write), `cache` (bounded page cache), `disk` (the cache on disk, `cache_dir`),
//! `config` (URI parameters and environment for the loadable extension), `conn` (one open
//! database: snapshot pinning, reads, PRAGMAs) and `ffi` (the C tables and callbacks; the
//! only `unsafe`). `reader/` holds what a plan costs (`plan`) and serving without the
//! replica (`offline`).
//!
//! How it behaves: a database is presented as a rollback-journal database, so SQLite
//! never looks for `-wal`/`-shm`; each read transaction sees one TXID (taken when SQLite
//! acquires its SHARED lock); page 1 carries a change counter derived from the TXID, so
//! SQLite keeps its page cache while nothing changes. Writes fail with `SQLITE_READONLY`.
//! `PRAGMA litestream_txid`, `litestream_lag` and `litestream_time` (set it to an
//! RFC 3339 time to see the database as `restore -timestamp` would rebuild it; set it to
//! `latest` to come back) work on every connection; [`register_functions`] adds the SQL
//! functions `litestream_txid()`, `litestream_lag()` and `litestream_time()`.

mod cache;
mod config;
mod conn;
mod disk;
#[allow(unsafe_code)] // the SQLite VFS C interface
mod ffi;
mod pagemap;
mod reader;

use std::sync::Arc;
use std::time::Duration;

pub use config::{options_from, register_configurable, resolve};
pub use ffi::register_functions;
pub use reader::{ReaderStats, ReplicaReader};

use crate::client::ReplicaClient;
use crate::error::Result;

/// How a [`ReplicaReader`] reads its replica.
#[derive(Clone, Debug)]
pub struct ReaderOptions {
    /// How often the poller looks for new transactions while connections read (1 s).
    pub poll_interval: Duration,
    /// The longest the poller waits when no connection has read for minutes (30 s); the
    /// first read transaction after such a pause wakes the poller and waits for its poll
    /// (at most one poll interval).
    pub max_idle_poll_interval: Duration,
    /// Bytes of decoded pages the shared cache holds, for every connection of the reader
    /// (8 MiB: ten connections of a 1 GiB database, each with SQLite's own 2 MB page
    /// cache in front of it, stay under 64 MiB in all; the official extension keeps
    /// 10 MB per connection).
    pub cache_size: usize,
    /// Bytes read from an LTX file on a cache miss that continues a sequential read (a
    /// scan): the missed page and the pages after it (256 KiB). A miss elsewhere reads its
    /// page alone.
    pub read_ahead: u64,
    /// A directory of this replica's own where the reader keeps what it learnt (each LTX
    /// file's page index, the byte ranges read on misses, when the replica last
    /// answered), so a process restarted while the replica is unreachable opens at the
    /// last cached state. `None` (the default): nothing on disk.
    pub cache_dir: Option<std::path::PathBuf>,
    /// The longest a page the cache does not hold waits for the replica before the read
    /// fails with an I/O error (`SQLITE_IOERR`); also how long an open with a cache on
    /// disk waits before it serves the cached state (10 s).
    pub miss_timeout: Duration,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            poll_interval: Duration::from_secs(1),
            max_idle_poll_interval: Duration::from_secs(30),
            cache_size: 8 << 20,
            read_ahead: 256 << 10,
            cache_dir: None,
            miss_timeout: Duration::from_secs(10),
        }
    }
}

/// The URI parameters of a database being opened (`file:app.db?vfs=x&replica_url=...`).
pub struct UriParams<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl UriParams<'_> {
    /// The value of parameter `key`, if the URI has it.
    pub fn get(&self, key: &str) -> Option<String> {
        (self.get)(key)
    }
}

impl std::fmt::Debug for UriParams<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UriParams")
    }
}

/// Registers a VFS named `name` in this process's SQLite that serves every database
/// opened with it from `reader`. Fails if a VFS of that name exists.
pub fn register(name: &str, reader: Arc<ReplicaReader>) -> Result<()> {
    ffi::register(name, Box::new(move |_: &UriParams<'_>| Ok(reader.clone())))
}

/// Registers a VFS named `name` that chooses the replica of each database it opens from
/// its URI parameters (`resolve` may return one shared reader for many databases).
pub fn register_with(
    name: &str,
    resolve: impl Fn(&UriParams<'_>) -> Result<Arc<ReplicaReader>> + Send + Sync + 'static,
) -> Result<()> {
    ffi::register(name, Box::new(resolve))
}

/// Opens `client` with default options and registers it as VFS `name`: the short form of
/// [`ReplicaReader::open`] + [`register`].
pub fn register_client(name: &str, client: Arc<dyn ReplicaClient>) -> Result<Arc<ReplicaReader>> {
    let reader = ReplicaReader::open(client, ReaderOptions::default())?;
    register(name, reader.clone())?;
    Ok(reader)
}
