//! [`Db`]: the description of one database to replicate — its path, where its local state
//! lives, its options and its replicas — as a user hands it to [`Store::new`](super::Store::new).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::db::{default_meta_path, DbOptions};
use crate::ltx::PageEncoding;
use crate::replica::Replica;

/// A SQLite database to replicate, with its options and replicas. Hand it to
/// [`Store::new`](crate::Store::new).
///
/// ```no_run
/// use litestream::{Db, Replica};
/// let db = Db::new("/data/app.db")
///     .monitor_interval(std::time::Duration::from_millis(500))
///     .replica(Replica::new(litestream::client::from_url("file:///backups/app")?));
/// # Ok::<(), litestream::Error>(())
/// ```
#[derive(Debug)]
pub struct Db {
    pub(crate) path: PathBuf,
    pub(crate) meta_path: Option<PathBuf>,
    pub(crate) opts: DbOptions,
    pub(crate) replicas: Vec<Replica>,
}

impl Db {
    /// A database at `path` with Litestream's defaults: monitor every 1 s, PASSIVE
    /// checkpoint at 1000 WAL pages or every minute, emergency truncation at 121359 pages,
    /// busy timeout 1 s, at most 64 MiB of WAL per L0 file.
    pub fn new(path: impl Into<PathBuf>) -> Db {
        Db {
            path: path.into(),
            meta_path: None,
            opts: DbOptions::default(),
            replicas: Vec::new(),
        }
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How often the WAL is checked for changes (default 1 s). Zero watches it instead
    /// (Linux inotify, `monitor-interval: 0` in `litestream.yml`): each commit is synced
    /// as it lands and an idle database is not polled; elsewhere zero polls every 10 ms.
    pub fn monitor_interval(mut self, d: Duration) -> Self {
        self.opts.monitor_interval = d;
        self
    }

    /// Time-based PASSIVE checkpoint interval (default 1 min; zero disables).
    pub fn checkpoint_interval(mut self, d: Duration) -> Self {
        self.opts.checkpoint_interval = d;
        self
    }

    /// WAL size in pages that triggers a PASSIVE checkpoint (default 1000).
    pub fn min_checkpoint_pages(mut self, n: u32) -> Self {
        self.opts.min_checkpoint_pages = n.max(1);
        self
    }

    /// WAL file size in pages that triggers an emergency truncation (a full checkpoint,
    /// then a WAL restart that shrinks the file; default
    /// 121359, about 500 MB with 4 KiB pages); `None` disables it.
    pub fn truncate_pages(mut self, n: Option<u32>) -> Self {
        self.opts.truncate_pages = n;
        self
    }

    /// Busy timeout of litestream's own connections (default 1 s).
    pub fn busy_timeout(mut self, d: Duration) -> Self {
        self.opts.busy_timeout = d;
        self
    }

    /// Most WAL bytes copied into one L0 file (default 64 MiB; 0 = no limit).
    pub fn max_sync_wal_bytes(mut self, n: u64) -> Self {
        self.opts.max_sync_wal_bytes = n;
        self
    }

    /// Where local state lives (default `<dir>/.<name>-litestream`).
    pub fn meta_path(mut self, p: impl Into<PathBuf>) -> Self {
        self.meta_path = Some(p.into());
        self
    }

    /// Page encoding of the LTX files written (default: legacy LZ4 frames, readable by
    /// every Litestream v0.5.x).
    pub fn page_encoding(mut self, e: PageEncoding) -> Self {
        self.opts.encoding = e;
        self
    }

    /// Adds a replica.
    pub fn replica(mut self, r: Replica) -> Self {
        self.replicas.push(r);
        self
    }

    /// The local state directory for this database.
    pub(crate) fn resolved_meta_path(&self) -> PathBuf {
        self.meta_path
            .clone()
            .unwrap_or_else(|| default_meta_path(&self.path))
    }
}
