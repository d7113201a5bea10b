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

/// The shortest `poll_interval` taken.
const MIN_POLL: std::time::Duration = std::time::Duration::from_millis(10);
/// The longest `poll_interval` or `miss_timeout` taken.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// The largest `read_ahead` taken.
const MAX_READ_AHEAD: u64 = 64 << 20;

/// One replica's reader, once opened; its own lock is held while it opens, so that only
/// opens of that replica wait for it.
type Slot = Arc<Mutex<Weak<ReplicaReader>>>;

fn readers() -> &'static Mutex<HashMap<Key, Slot>> {
    static READERS: OnceLock<Mutex<HashMap<Key, Slot>>> = OnceLock::new();
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
        // Bounded both ways: 1ns turned the poller into a LIST storm, and a huge one
        // overflowed the freshness and back-off arithmetic.
        o.poll_interval = crate::time::parse_duration(&v)
            .filter(|d| (MIN_POLL..=MAX_WAIT).contains(d))
            .ok_or_else(|| {
                bad(
                    "poll_interval",
                    &v,
                    "a duration from 10ms to 24h, such as 1s",
                )
            })?;
    }
    if let Some(v) = setting(p, "cache_size", "LITESTREAM_CACHE_SIZE") {
        o.cache_size = crate::wire::parse_size(&v)
            .ok_or_else(|| bad("cache_size", &v, "a size such as 64MiB"))?
            as usize;
    }
    if let Some(v) = setting(p, "read_ahead", "LITESTREAM_READ_AHEAD") {
        o.read_ahead = crate::wire::parse_size(&v)
            .filter(|n| *n <= MAX_READ_AHEAD)
            .ok_or_else(|| bad("read_ahead", &v, "a size up to 64MiB, such as 256KiB"))?;
    }
    if let Some(v) = setting(p, "miss_timeout", "LITESTREAM_MISS_TIMEOUT") {
        o.miss_timeout = crate::time::parse_duration(&v)
            .filter(|d| !d.is_zero() && *d <= MAX_WAIT)
            .ok_or_else(|| bad("miss_timeout", &v, "a duration up to 24h, such as 10s"))?;
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
    // The table is locked only to find the replica's slot: opening a replica (a listing
    // and reads, retried for many seconds against one that does not answer) must not hold
    // up the opens of every other replica in the process.
    let slot = {
        let mut map = readers().lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| {
            Arc::strong_count(s) > 1 || s.try_lock().map_or(true, |w| w.strong_count() > 0)
        });
        map.entry(key).or_default().clone()
    };
    let mut reader = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = reader.upgrade() {
        return Ok(r);
    }
    let client = crate::client::from_url(&url)?;
    let r = ReplicaReader::open(client, o)?;
    *reader = Arc::downgrade(&r);
    Ok(r)
}

/// Registers a VFS named `name` configured per database by [`resolve`] (the loadable
/// extension registers `litestream` this way).
pub fn register_configurable(name: &str) -> Result<()> {
    super::register_with(name, resolve)
}

#[cfg(all(test, feature = "webdav"))]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::client::{FileClient, ReplicaClient};
    use crate::ltx::{Encoder, Header, PageEncoding, Txid, HEADER_FLAG_NO_CHECKSUM};

    /// Opening a replica that does not answer (a server that accepts and never replies)
    /// holds up no open of another replica: the table of readers was locked for the whole
    /// open, so every database of the process waited for it.
    #[test]
    fn a_replica_that_does_not_answer_holds_up_no_other_open() {
        let dir = std::env::temp_dir().join(format!("lsrs-vfs-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let h = Header {
            flags: HEADER_FLAG_NO_CHECKSUM,
            page_size: 4096,
            commit: 1,
            min_txid: Txid(1),
            max_txid: Txid(1),
            timestamp: 1_700_000_000_000,
            ..Header::default()
        };
        let ltx = dir.join("snap.ltx");
        let mut e = Encoder::new(
            std::fs::File::create(&ltx).unwrap(),
            &h,
            PageEncoding::Frame,
        )
        .unwrap();
        let mut page = vec![0u8; 4096];
        page[..16].copy_from_slice(b"SQLite format 3\0");
        page[16..18].copy_from_slice(&16u16.to_be_bytes());
        e.write_page(1, &page).unwrap();
        e.finish().unwrap();
        let root = dir.join("replica");
        FileClient::new(&root)
            .write_ltx_file(9, Txid(1), Txid(1), &std::fs::File::open(&ltx).unwrap())
            .unwrap();
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a_url = format!("file://{}", root.display());
        let b_url = format!(
            "webdav://127.0.0.1:{}/db",
            silent.local_addr().unwrap().port()
        );
        let open = |url: String| {
            let get = move |k: &str| (k == "replica_url").then(|| url.clone());
            resolve(&UriParams { get: &get })
        };
        let a = open(a_url.clone()).unwrap();
        let b = std::thread::spawn(move || open(b_url).map(|_| ()));
        // B's open is under way (its connection accepted by the kernel, never answered).
        std::thread::sleep(Duration::from_millis(300));
        assert!(!b.is_finished(), "the silent replica answered");
        let started = Instant::now();
        let again = open(a_url).unwrap();
        assert!(Arc::ptr_eq(&a, &again), "the open replica was opened again");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "an open of an open replica waited {:?} for another replica's open",
            started.elapsed()
        );
        drop(silent);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
