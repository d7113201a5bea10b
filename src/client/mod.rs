//! Replica clients: where LTX files are stored.
//!
//! Every backend implements [`ReplicaClient`]. A replica is a set of LTX files, one
//! namespace per level (0 = one file per sync, 1..=8 = compactions, 9 = snapshots); there
//! is no manifest. [`from_url`] builds a client from a replica URL; [`ClientConfig`] is the
//! one factory behind it. Each backend but `file` is a cargo feature.
//!
//! A room per backend (`file`, `s3/`, `gcs/`, `azure/` for `abs://`, `webdav`, `nats/`,
//! `sftp`), and what they share: `key` (where `(level, min, max)` is stored, and back),
//! `retry` (the one retry policy: attempts, back-off, what is transient), `http` (the
//! `ureq` agent, one request exchange, answers read whole, OAuth token cache), `config`
//! (the one factory: a URL into a backend's configuration), `tls` (rustls set-up, CA
//! bundles) and `metered` (counting each operation for the metrics).

#[cfg(feature = "azure")]
mod azure;
mod config;
mod file;
#[cfg(feature = "gcs")]
mod gcs;
#[cfg_attr(
    not(any(feature = "s3", feature = "gcs", feature = "azure", feature = "webdav")),
    allow(dead_code)
)]
mod http;
mod key;
mod metered;
#[cfg(feature = "nats")]
mod nats;
mod retry;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "sftp")]
mod sftp;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "webdav")]
mod webdav;

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::time::SystemTime;

#[cfg(feature = "azure")]
pub use azure::{AbsClient, AbsConfig};
pub(crate) use config::not_built;
pub use config::{from_url, ClientConfig};
pub use file::FileClient;
#[cfg(feature = "gcs")]
pub use gcs::{GcsClient, GcsConfig};
pub(crate) use http::get_status;
pub(crate) use metered::metered;
pub use metered::{operation_stats, OpStats, DURATION_BUCKETS};
#[cfg(all(fuzzing, feature = "nats"))]
pub(crate) use nats::fuzz as nats_fuzz;
#[cfg(feature = "nats")]
pub use nats::{NatsClient, NatsConfig};
#[cfg(feature = "sftp")]
pub use sftp::{SftpClient, SftpConfig};
#[cfg(feature = "webdav")]
pub use webdav::{WebDavClient, WebDavConfig};

use crate::error::{Error, Result};
use crate::ltx::Txid;

/// The level that holds full snapshots.
pub const SNAPSHOT_LEVEL: u8 = 9;

/// One LTX file on a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// Level (0..=9).
    pub level: u8,
    /// First TXID in the file.
    pub min_txid: Txid,
    /// Last TXID in the file.
    pub max_txid: Txid,
    /// Size in bytes.
    pub size: u64,
    /// When the file was created (its header timestamp, where the backend stores it).
    pub created_at: SystemTime,
}

impl FileInfo {
    /// The file `min-max` of `level`, `size` bytes, created at `created_at`.
    pub fn new(
        level: u8,
        min_txid: Txid,
        max_txid: Txid,
        size: u64,
        created_at: SystemTime,
    ) -> Self {
        FileInfo {
            level,
            min_txid,
            max_txid,
            size,
            created_at,
        }
    }

    /// `%016x-%016x.ltx`.
    pub fn name(&self) -> String {
        crate::ltx::file_name(self.min_txid, self.max_txid)
    }
}

impl fmt::Display for FileInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "level {} {}", self.level, self.name())
    }
}

/// An object of a replica named by its path, for what is not an LTX file: the
/// `generations/` tree Litestream v0.3 wrote (see `restore::v3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The path relative to the replica's root, `/`-separated (`generations/<id>/...`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was last written (file mtime, S3 `LastModified`).
    pub modified: SystemTime,
}

/// The error of a backend that cannot read objects by path.
fn objects_unsupported(kind: &str) -> Error {
    Error::Unsupported(format!(
        "{kind}: this backend cannot read Litestream v0.3 backups (generations/); Litestream v0.3 never wrote to it. Copy the generations/ tree to a directory and restore from that (file://)"
    ))
}

/// Rejects a path that could leave the replica's root.
pub(crate) fn check_object_path(path: &str) -> Result<()> {
    if path.starts_with('/') || path.split('/').any(|c| c == ".." || c == ".") {
        return Err(Error::Invalid(format!(
            "object path {path:?} must be relative to the replica root, without . or .. parts"
        )));
    }
    Ok(())
}

/// A place that stores LTX files: a directory, a bucket, a server.
///
/// Implementations must be safe to call from several threads at once.
pub trait ReplicaClient: Send + Sync + fmt::Debug {
    /// Short backend name: `"file"`, `"s3"`, ...
    fn kind(&self) -> &'static str;

    /// Lists the files of `level` whose min TXID is `>= seek`, ordered by (min, max).
    /// A level that does not exist yet is empty. With `accurate_timestamps`, `created_at`
    /// must be the header timestamp even where that costs extra requests.
    fn ltx_files(&self, level: u8, seek: Txid, accurate_timestamps: bool) -> Result<Vec<FileInfo>>;

    /// Lists the files of every level (0..=9) in one recursive listing (paginated where
    /// the store pages), ordered by (level, min, max): the same files, sizes and times as
    /// `ltx_files(level, Txid::ZERO, accurate_timestamps)` for each level. `Ok(None)`
    /// (the default) means the backend cannot: the caller lists each level instead.
    fn all_ltx_files(&self, accurate_timestamps: bool) -> Result<Option<Vec<FileInfo>>> {
        let _ = accurate_timestamps;
        Ok(None)
    }

    /// Opens bytes `[offset, offset + len)` of a file (`len == None`: to the end).
    /// A missing file is [`Error::NotFound`].
    fn open_ltx_file(
        &self,
        level: u8,
        min: Txid,
        max: Txid,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Box<dyn Read + Send>>;

    /// Stores the complete LTX file `src` (read from its start) atomically, so no partial
    /// object is ever visible, recording its header timestamp as the creation time.
    fn write_ltx_file(&self, level: u8, min: Txid, max: Txid, src: &File) -> Result<FileInfo>;

    /// Stores a copy of the existing file `src` at `level` (the same TXID range) without
    /// its bytes passing through this process: S3 `CopyObject`, Azure Copy Blob, GCS
    /// rewrite, WebDAV `COPY`, a hard link for files. Compaction uses it when a level
    /// passes a single file up, so a large snapshot is shipped once. `Ok(None)` means the
    /// backend cannot (the default): the caller then downloads and uploads the bytes.
    fn copy_ltx_file(&self, src: &FileInfo, level: u8) -> Result<Option<FileInfo>> {
        let _ = (src, level);
        Ok(None)
    }

    /// Deletes files; files already gone are not an error.
    fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()>;

    /// Deletes everything this replica stores.
    fn delete_all(&self) -> Result<()>;

    /// Lists every object whose path (relative to the replica's root) starts with the
    /// directory `prefix` (ending in `/`), at any depth, in no particular order. For
    /// Litestream v0.3 backups; a backend that cannot says [`Error::Unsupported`].
    fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let _ = prefix;
        Err(objects_unsupported(self.kind()))
    }

    /// Opens the object at `path` (relative to the replica's root) from its start. A
    /// missing object is [`Error::NotFound`]; a backend that cannot read objects by path
    /// says [`Error::Unsupported`].
    fn open_object(&self, path: &str) -> Result<Box<dyn Read + Send>> {
        let _ = path;
        Err(objects_unsupported(self.kind()))
    }
}

/// Lists every level of the replica: in one recursive listing where the backend can
/// ([`ReplicaClient::all_ltx_files`]), else level by level. `on_list` is called once per
/// listing request made.
pub(crate) fn list_all(
    client: &dyn ReplicaClient,
    accurate: bool,
    on_list: &dyn Fn(),
) -> Result<Vec<FileInfo>> {
    on_list();
    if let Some(all) = client.all_ltx_files(accurate)? {
        return Ok(all);
    }
    let mut all = client.ltx_files(0, Txid::ZERO, accurate)?;
    for level in 1..=SNAPSHOT_LEVEL {
        on_list();
        all.extend(client.ltx_files(level, Txid::ZERO, accurate)?);
    }
    Ok(all)
}

/// Reads the 100-byte LTX header at the start of `f`.
pub(crate) fn read_header(f: &File) -> Result<crate::ltx::Header> {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; crate::ltx::HEADER_SIZE];
    f.read_exact_at(&mut b, 0)
        .map_err(|e| Error::io("read ltx header of upload", e))?;
    crate::ltx::Header::from_bytes(&b)
}

/// A reader over a replica file that reopens at the current offset when the stream breaks,
/// for long restores and compactions over networks. It follows the `retry` policy: up to
/// `retry::MAX_ATTEMPTS` tries in a row without a byte of progress, with its back-off in
/// between. Opening goes through the client, whose requests already retry, so a failed
/// open is reported as it is.
pub(crate) struct ResumableReader<'a> {
    client: &'a dyn ReplicaClient,
    info: FileInfo,
    offset: u64,
    /// Where a ranged read ends (exclusive); `None`: at the end of the file.
    end: Option<u64>,
    inner: Option<Box<dyn Read + Send>>,
    /// Failed reads since the last progress.
    failures: u32,
}

impl<'a> ResumableReader<'a> {
    pub(crate) fn new(client: &'a dyn ReplicaClient, info: FileInfo) -> Self {
        ResumableReader {
            client,
            info,
            offset: 0,
            end: None,
            inner: None,
            failures: 0,
        }
    }

    /// A reader of bytes `[offset, offset + len)` of the file only; a stream that ends
    /// before `offset + len` counts as broken and is reopened.
    pub(crate) fn range(
        client: &'a dyn ReplicaClient,
        info: FileInfo,
        offset: u64,
        len: u64,
    ) -> Self {
        ResumableReader {
            offset,
            end: Some(offset + len),
            ..ResumableReader::new(client, info)
        }
    }
}

impl Read for ResumableReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.end.is_some_and(|e| e <= self.offset) {
                // One more read lets the HTTP body see its own end, which hands its
                // connection back to the pool (a range left unfinished closes it, and
                // every range of a restore paid for a new connection).
                if let Some(mut r) = self.inner.take() {
                    let _ = r.read(&mut [0u8; 1]);
                }
                return Ok(0);
            }
            let r = match self.inner.as_mut() {
                Some(r) => r,
                None => self.inner.insert(
                    self.client
                        .open_ltx_file(
                            self.info.level,
                            self.info.min_txid,
                            self.info.max_txid,
                            self.offset,
                            self.end.map(|e| e - self.offset),
                        )
                        .map_err(io::Error::other)?,
                ),
            };
            let left = self.end.map(|e| e - self.offset);
            let want = left.map_or(buf.len(), |l| buf.len().min(l as usize));
            let got = match (r.read(&mut buf[..want]), left) {
                (Ok(0), Some(l)) if want > 0 => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the stream ended {l} bytes early"),
                )),
                (r, _) => r,
            };
            match got {
                Ok(n) => {
                    self.offset += n as u64;
                    if n > 0 {
                        self.failures = 0;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A stream that broke or ended early (`UnexpectedEof`: the answer was cut
                // off) resumes where it stopped; damaged data does not.
                Err(e)
                    if self.failures + 1 < retry::MAX_ATTEMPTS
                        && e.kind() != io::ErrorKind::InvalidData =>
                {
                    self.failures += 1;
                    log::warn!(
                        "read of {} failed at offset {}: {e}; reopening",
                        self.info,
                        self.offset
                    );
                    self.inner = None;
                    retry::backoff(self.failures);
                }
                Err(e) => return Err(e),
            }
        }
    }
}
