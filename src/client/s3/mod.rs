//! The `s3` backend (also `oss://` and `gs://` through their S3-compatible APIs): plain
//! HTTP requests over `ureq`, signed by the hand-written SigV4 signer in its `sigv4` module.
//!
//! Object keys are exactly Litestream's: `<path>/<%04x level>/<min>-<max>.ltx` for S3 and
//! OSS, `<path>/ltx/<level>/<min>-<max>.ltx` for GCS, with the header timestamp in the
//! `litestream-timestamp` user metadata.
//!
//! Here: the client and its `ReplicaClient` methods. `request` signs, sends and retries;
//! `objects` puts, lists, heads and deletes single objects; `multipart` uploads big files
//! and leaves no upload behind; `config`, `credentials` and `sigv4` are what they say.

mod config;
mod credentials;
mod multipart;
mod objects;
mod request;
pub(crate) mod sigv4;

use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub use config::{Flavor, S3Config};
pub use multipart::MultipartUpload;
use request::Call;
pub use sigv4::Credentials;

use super::key::{self, Layout};
use super::{check_object_path, http, read_header, retry, FileInfo, ObjectInfo, ReplicaClient};
use crate::error::{Error, Result};
use crate::ltx::Txid;
use crate::wire::xml;

/// A replica in an S3-compatible bucket.
pub struct S3Client {
    cfg: S3Config,
    agent: ureq::Agent,
    creds: Mutex<Option<credentials::Resolved>>,
    region: Mutex<Option<String>>,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("kind", &self.cfg.flavor.kind())
            .field("bucket", &self.cfg.bucket)
            .field("path", &self.cfg.path)
            .field("endpoint", &self.cfg.endpoint)
            .finish_non_exhaustive()
    }
}

impl S3Client {
    /// A client for `cfg`. No request is made until the first operation.
    pub fn new(cfg: S3Config) -> Result<S3Client> {
        if cfg.bucket.is_empty() {
            return Err(Error::Invalid("s3: bucket required".into()));
        }
        let agent = http::agent(cfg.skip_verify)?;
        Ok(S3Client {
            region: Mutex::new(cfg.region.clone()),
            cfg,
            agent,
            creds: Mutex::new(None),
        })
    }

    /// A client from an `s3://`, `oss://` or `gs://` URL.
    pub fn from_url(url: &str) -> Result<S3Client> {
        S3Client::new(S3Config::from_url(url)?)
    }

    /// The configuration.
    pub fn config(&self) -> &S3Config {
        &self.cfg
    }

    /// Creates the bucket if it does not exist. Replication never creates buckets (as in
    /// Litestream); this is for setting up a store and for tests.
    pub fn create_bucket(&self) -> Result<()> {
        let body = match self.region()?.as_str() {
            "us-east-1" | "auto" => String::new(),
            r => format!("<CreateBucketConfiguration><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>", xml::escape(r)),
        };
        match self.send(&Call {
            op: "CreateBucket",
            method: "PUT",
            body: body.as_bytes(),
            ..Call::default()
        }) {
            Ok(_) => Ok(()),
            Err(Error::Backend { code, .. })
                if code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn kind_str(&self) -> &'static str {
        self.cfg.flavor.kind()
    }

    /// Litestream's key layout for this flavor.
    fn layout(&self) -> Layout {
        match self.cfg.flavor {
            Flavor::S3 | Flavor::Oss => Layout::Hex,
            Flavor::Gcs => Layout::Ltx,
        }
    }

    /// The key of the LTX file `(level, min, max)`.
    fn key(&self, level: u8, min: Txid, max: Txid) -> String {
        key::ltx_key(&self.cfg.path, level, min, max, self.layout())
    }
}

impl S3Client {
    /// Sets each file's time to its header timestamp (object metadata), several HEADs at
    /// once.
    fn head_timestamps(&self, files: &mut [FileInfo]) -> Result<()> {
        let times = parallel(files.len(), 8, |i| {
            let f = &files[i];
            self.head_timestamp(&self.key(f.level, f.min_txid, f.max_txid))
        })?;
        for (f, t) in files.iter_mut().zip(times) {
            if let Some(t) = t {
                f.created_at = t;
            }
        }
        Ok(())
    }
}

/// Runs `task(i)` for every `i` in `0..n` on up to `threads` threads: the results in
/// order, or the first error (the other threads then take no more work).
fn parallel<T: Send>(
    n: usize,
    threads: usize,
    task: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                if failed.lock().map(|f| f.is_some()).unwrap_or(true) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return;
                }
                match task(i) {
                    Ok(v) => {
                        if let Ok(mut r) = results.lock() {
                            r[i] = Some(v);
                        }
                    }
                    Err(e) => {
                        if let Ok(mut f) = failed.lock() {
                            f.get_or_insert(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().ok().flatten() {
        return Err(e);
    }
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.ok_or_else(|| Error::State("s3: a parallel request lost its result".into())))
        .collect()
}

impl ReplicaClient for S3Client {
    fn kind(&self) -> &'static str {
        self.kind_str()
    }

    fn ltx_files(&self, level: u8, seek: Txid, accurate: bool) -> Result<Vec<FileInfo>> {
        let prefix = key::level_prefix(&self.cfg.path, level, self.layout());
        // Keys sort as their TXIDs: start after every file starting before `seek`.
        let start_after =
            (seek.0 > 1).then(|| format!("{prefix}{}-ffffffffffffffff.ltx", Txid(seek.0 - 1)));
        let mut out = key::ltx_files_among(
            &self.cfg.path,
            self.layout(),
            self.list(&prefix, start_after)?,
            |l, min| l == level && min >= seek,
        );
        if accurate {
            self.head_timestamps(&mut out)?;
        }
        Ok(out)
    }

    fn all_ltx_files(&self, accurate: bool) -> Result<Option<Vec<FileInfo>>> {
        // One listing of the prefix every level shares (S3 pages it inside `list`).
        let prefix = key::levels_prefix(&self.cfg.path, self.layout());
        let mut out = key::ltx_files_among(
            &self.cfg.path,
            self.layout(),
            self.list(&prefix, None)?,
            |_, _| true,
        );
        if accurate {
            self.head_timestamps(&mut out)?;
        }
        Ok(Some(out))
    }

    fn open_ltx_file(
        &self,
        level: u8,
        min: Txid,
        max: Txid,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Box<dyn Read + Send>> {
        let key = self.key(level, min, max);
        if len == Some(0) {
            return Ok(Box::new(std::io::empty()));
        }
        let mut headers = self.sse_headers(false);
        headers.extend(http::range(offset, len).map(|r| ("range".to_string(), r)));
        // Object files are small compared to memory in the common case, but a snapshot
        // can be large: stream the body instead of buffering it.
        retry::run(self.kind_str(), "GetObject", |_| {
            self.open_stream(&key, &headers, offset)
        })
    }

    fn write_ltx_file(&self, level: u8, min: Txid, max: Txid, src: &File) -> Result<FileInfo> {
        let header = read_header(src)?;
        let size = src
            .metadata()
            .map_err(|e| Error::io("stat upload source", e))?
            .len();
        let key = self.key(level, min, max);
        if size >= self.cfg.part_size.max(1) {
            self.multipart(&key, src, size, header.timestamp)?;
        } else {
            self.put_object(&key, src, size, header.timestamp)?;
        }
        Ok(FileInfo::new(
            level,
            min,
            max,
            size,
            crate::time::from_millis(header.timestamp),
        ))
    }

    fn copy_ltx_file(&self, src: &FileInfo, level: u8) -> Result<Option<FileInfo>> {
        let from = self.key(src.level, src.min_txid, src.max_txid);
        let to = self.key(level, src.min_txid, src.max_txid);
        if !self.copy_object(&from, &to, src.size)? {
            return Ok(None);
        }
        Ok(Some(FileInfo {
            level,
            ..src.clone()
        }))
    }

    fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        let keys: Vec<String> = files
            .iter()
            .map(|f| self.key(f.level, f.min_txid, f.max_txid))
            .collect();
        self.delete_keys(&keys)
    }

    fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        check_object_path(prefix.trim_end_matches('/'))?;
        // Litestream v0.3 put its tree under the path cleaned as Go's `path.Join`.
        let root = key::root(&self.cfg.path, Layout::Ltx);
        let mut out = Vec::new();
        for (key, size, modified) in self.list(&format!("{root}{prefix}"), None)? {
            if let Some(path) = key.strip_prefix(&root) {
                out.push(ObjectInfo {
                    path: path.to_string(),
                    size,
                    modified,
                });
            }
        }
        Ok(out)
    }

    fn open_object(&self, path: &str) -> Result<Box<dyn Read + Send>> {
        check_object_path(path)?;
        let key = format!("{}{path}", key::root(&self.cfg.path, Layout::Ltx));
        let headers = self.sse_headers(false);
        retry::run(self.kind_str(), "GetObject", |_| {
            self.open_stream(&key, &headers, 0)
        })
    }

    fn delete_all(&self) -> Result<()> {
        let keys: Vec<String> = self
            .list(&key::root(&self.cfg.path, self.layout()), None)?
            .into_iter()
            .map(|(k, _, _)| k)
            .collect();
        self.delete_keys(&keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::http::stand_in::{Reply, Server};

    /// A client of bucket `bkt`, path `db`, at a stand-in server (path style, static keys).
    fn client_at(server: &Server) -> S3Client {
        let mut cfg = S3Config::from_url(&format!(
            "s3://bkt/db?endpoint={}&forcePathStyle=true&region=us-east-1",
            server.url
        ))
        .unwrap();
        cfg.credentials = Some(Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
            session_token: None,
        });
        S3Client::new(cfg).unwrap()
    }

    /// A listing answered `200 OK` with its length, then cut off mid-body (a proxy that
    /// drops the connection): the request is retried by itself and succeeds; the server
    /// sees it twice.
    #[test]
    fn a_listing_cut_off_mid_body_is_retried_per_request() {
        let listing = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult>\
            <IsTruncated>false</IsTruncated><Contents>\
            <Key>db/0000/0000000000000001-0000000000000002.ltx</Key><Size>7</Size>\
            <LastModified>2026-01-02T03:04:05Z</LastModified></Contents></ListBucketResult>";
        let s = Server::cut_once("200 OK", listing);
        let files = client_at(&s).ltx_files(0, Txid::ZERO, false).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!((files[0].min_txid, files[0].max_txid), (Txid(1), Txid(2)));
        assert_eq!(files[0].size, 7);
        let seen = s.requests();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(
            seen.iter().all(|r| r
                .line
                .starts_with("GET /bkt?list-type=2&prefix=db%2F0000%2F")),
            "{seen:?}"
        );
    }

    /// A download cut off mid-body is resumed where it stopped by `ResumableReader`: the
    /// second request asks for the rest with a range.
    #[test]
    fn a_download_cut_off_mid_body_resumes_at_its_offset() {
        let content = "0123456789abcdefghij";
        let s = Server::start_with(Box::new(move |req| {
            match req.headers.get("range").map(String::as_str) {
                None => Reply::new("200 OK", content).cut_after(8),
                Some("bytes=8-") => Reply::new("206 Partial Content", &content[8..]),
                Some(r) => Reply::new("416 Range Not Satisfiable", r.to_string()),
            }
        }));
        let c = client_at(&s);
        let info = FileInfo::new(
            0,
            Txid(1),
            Txid(1),
            content.len() as u64,
            std::time::UNIX_EPOCH,
        );
        let mut got = String::new();
        crate::client::ResumableReader::new(&c, info)
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got, content);
        let seen = s.requests();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(
            seen[1].headers.get("range").map(String::as_str),
            Some("bytes=8-")
        );
    }
}
