//! The configurable VFS (the loadable extension's `litestream`): each database's replica
//! and options come from its URI parameters, which win, else from the environment the
//! official extension reads. Databases with the same settings share one reader.
//!
//! | URI parameter | Environment | Meaning |
//! |---|---|---|
//! | `replica_url` | `LITESTREAM_REPLICA_URL` | the replica (any backend URL; credentials as the CLI reads them) |
//! | `poll_interval` | `LITESTREAM_POLL_INTERVAL` | how often to look for new transactions (`1s`) |
//! | `cache_size` | `LITESTREAM_CACHE_SIZE` | bytes of the shared page cache (`8MiB`) |
//! | `read_ahead` | `LITESTREAM_READ_AHEAD` | bytes read on a cache miss that continues a sequential read (`256KiB`; elsewhere a miss reads its page alone) |
//! | `cache_dir` | `LITESTREAM_CACHE_DIR` | a directory for the cache on disk (none); each replica gets its own subdirectory, named by a hash of its URL |
//! | `miss_timeout` | `LITESTREAM_MISS_TIMEOUT` | how long a miss waits for the replica before `SQLITE_IOERR` (`10s`) |

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::{ReaderOptions, ReplicaReader, UriParams};
use crate::error::{Error, Result};

type Key = (String, u128, usize, u64, Option<std::path::PathBuf>, u128);

fn readers() -> &'static Mutex<HashMap<Key, Weak<ReplicaReader>>> {
    static READERS: OnceLock<Mutex<HashMap<Key, Weak<ReplicaReader>>>> = OnceLock::new();
    READERS.get_or_init(Default::default)
}

/// The value of a setting: the URI parameter, else the environment variable.
fn setting(p: &UriParams<'_>, param: &str, env: &str) -> Option<String> {
    p.get(param)
        .or_else(|| std::env::var(env).ok())
        .filter(|v| !v.trim().is_empty())
}

/// The options a database's URI and the environment ask for.
pub fn options_from(p: &UriParams<'_>) -> Result<(String, ReaderOptions)> {
    let url = setting(p, "replica_url", "LITESTREAM_REPLICA_URL").ok_or_else(|| {
        Error::Invalid(
            "litestream vfs: no replica: add replica_url=URL to the database URI \
             (file:app.db?vfs=litestream&replica_url=s3://bucket/app.db) or set LITESTREAM_REPLICA_URL"
                .into(),
        )
    })?;
    let mut o = ReaderOptions::default();
    let bad = |what: &str, v: &str, want: &str| {
        Error::Invalid(format!("litestream vfs: invalid {what} {v:?}: want {want}"))
    };
    if let Some(v) = setting(p, "poll_interval", "LITESTREAM_POLL_INTERVAL") {
        o.poll_interval = crate::time::parse_duration(&v)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| bad("poll_interval", &v, "a duration such as 1s or 500ms"))?;
    }
    if let Some(v) = setting(p, "cache_size", "LITESTREAM_CACHE_SIZE") {
        o.cache_size = crate::wire::parse_size(&v)
            .ok_or_else(|| bad("cache_size", &v, "a size such as 64MiB"))?
            as usize;
    }
    if let Some(v) = setting(p, "read_ahead", "LITESTREAM_READ_AHEAD") {
        o.read_ahead = crate::wire::parse_size(&v)
            .ok_or_else(|| bad("read_ahead", &v, "a size such as 256KiB"))?;
    }
    if let Some(v) = setting(p, "miss_timeout", "LITESTREAM_MISS_TIMEOUT") {
        o.miss_timeout = crate::time::parse_duration(&v)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| bad("miss_timeout", &v, "a duration such as 10s or 500ms"))?;
    }
    if let Some(v) = setting(p, "cache_dir", "LITESTREAM_CACHE_DIR") {
        use sha2::{Digest, Sha256};
        let id = crate::wire::hex(&Sha256::digest(url.as_bytes())[..8]);
        o.cache_dir = Some(std::path::Path::new(&v).join(id));
    }
    Ok((url, o))
}

/// The reader for a database being opened: shared with every open database of the same
/// replica and options, opened if there is none.
pub fn resolve(p: &UriParams<'_>) -> Result<Arc<ReplicaReader>> {
    let (url, o) = options_from(p)?;
    let key = (
        url.clone(),
        o.poll_interval.as_nanos(),
        o.cache_size,
        o.read_ahead,
        o.cache_dir.clone(),
        o.miss_timeout.as_nanos(),
    );
    let mut map = readers().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = map.get(&key).and_then(Weak::upgrade) {
        return Ok(r);
    }
    let client = crate::client::from_url(&url)?;
    let r = ReplicaReader::open(client, o)?;
    map.retain(|_, w| w.strong_count() > 0);
    map.insert(key, Arc::downgrade(&r));
    Ok(r)
}

/// Registers a VFS named `name` configured per database by [`resolve`] (the loadable
/// extension registers `litestream` this way).
pub fn register_configurable(name: &str) -> Result<()> {
    super::register_with(name, resolve)
}
