//! The `s3` backend (also `oss://` and `gs://` through their S3-compatible APIs): plain
//! HTTP requests over `ureq`, signed by the hand-written SigV4 signer in its `sigv4` module.
//!
//! Object keys are exactly Litestream's: `<path>/<%04x level>/<min>-<max>.ltx` for S3 and
//! OSS, `<path>/ltx/<level>/<min>-<max>.ltx` for GCS, with the header timestamp in the
//! `litestream-timestamp` user metadata.

mod config;
mod credentials;
pub(crate) mod sigv4;

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) use config::normalize_endpoint;
pub use config::{parse_size, Flavor, S3Config};
pub use sigv4::Credentials;

use super::{read_header, FileInfo, ReplicaClient};
use crate::error::{Error, Result};
use crate::ltx::{self, Txid};
use crate::wire::{base64, md5, uri, xml};

use crate::client::http::MAX_ATTEMPTS;
const DELETE_BATCH: usize = 1000;

/// An HTTP response read into memory.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request about to be signed and sent.
struct Call<'a> {
    op: &'static str,
    method: &'static str,
    /// Object key, or None for the bucket itself.
    key: Option<&'a str>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: &'a [u8],
}

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

/// Formats like Go's RFC3339Nano for the timestamp metadata.
fn timestamp_meta(ms: i64) -> String {
    crate::time::format_rfc3339(crate::time::from_millis(ms))
}

impl S3Client {
    /// A client for `cfg`. No request is made until the first operation.
    pub fn new(cfg: S3Config) -> Result<S3Client> {
        if cfg.bucket.is_empty() {
            return Err(Error::Invalid("s3: bucket required".into()));
        }
        let agent = crate::client::http::agent(cfg.skip_verify);
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
            key: None,
            query: Vec::new(),
            headers: Vec::new(),
            body: body.as_bytes(),
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

    /// Directory prefix of a level, with trailing slash.
    fn level_prefix(&self, level: u8) -> String {
        match self.cfg.flavor {
            Flavor::S3 | Flavor::Oss => format!("{}/{:04x}/", self.cfg.path, level),
            Flavor::Gcs => crate::url::object_prefix(&format!("{}/ltx/{level}", self.cfg.path)),
        }
    }

    fn key(&self, level: u8, min: Txid, max: Txid) -> String {
        format!("{}{}", self.level_prefix(level), ltx::file_name(min, max))
    }

    /// Prefix of everything this replica stores.
    fn root_prefix(&self) -> String {
        match self.cfg.flavor {
            Flavor::S3 | Flavor::Oss => format!("{}/", self.cfg.path),
            Flavor::Gcs => crate::url::object_prefix(&self.cfg.path),
        }
    }

    fn credentials(&self) -> Result<credentials::Resolved> {
        let mut g = self
            .creds
            .lock()
            .map_err(|_| Error::State("s3 credentials lock poisoned".into()))?;
        if let Some(r) = g.as_ref() {
            if !r.stale() {
                return Ok(r.clone());
            }
        }
        let r = credentials::resolve(self.cfg.credentials.as_ref())?;
        *g = Some(r.clone());
        Ok(r)
    }

    fn region(&self) -> Result<String> {
        if let Some(r) = self.region.lock().ok().and_then(|g| g.clone()) {
            return Ok(r);
        }
        let region = if self.cfg.endpoint.is_some() {
            "us-east-1".to_string()
        } else {
            self.lookup_region()?
        };
        if let Ok(mut g) = self.region.lock() {
            *g = Some(region.clone());
        }
        Ok(region)
    }

    /// GetBucketLocation against us-east-1 (AWS only).
    fn lookup_region(&self) -> Result<String> {
        if let Ok(mut g) = self.region.lock() {
            *g = Some("us-east-1".into());
        }
        let resp = self.send(&Call {
            op: "GetBucketLocation",
            method: "GET",
            key: None,
            query: vec![("location".into(), String::new())],
            headers: Vec::new(),
            body: &[],
        });
        if let Ok(mut g) = self.region.lock() {
            *g = None;
        }
        let resp = resp?;
        let body = String::from_utf8_lossy(&resp.body);
        Ok(xml::text(&body, "LocationConstraint")
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "us-east-1".into()))
    }

    /// Scheme, host (authority) and path for a request.
    fn target(&self, key: Option<&str>, region: &str) -> (String, String, String) {
        let (scheme, authority, path_style) = match &self.cfg.endpoint {
            Some(e) => {
                let (scheme, rest) = e.split_once("://").unwrap_or(("https", e.as_str()));
                let authority = rest.split('/').next().unwrap_or(rest).to_string();
                (scheme.to_string(), authority, self.cfg.force_path_style)
            }
            None => {
                let host = if region == "us-east-1" {
                    "s3.amazonaws.com".to_string()
                } else {
                    format!("s3.{region}.amazonaws.com")
                };
                // Bucket names with dots break virtual-host TLS; use the path then.
                (
                    "https".to_string(),
                    host,
                    self.cfg.force_path_style || self.cfg.bucket.contains('.'),
                )
            }
        };
        let encoded_key = key.map(|k| uri::encode(k, true)).unwrap_or_default();
        if path_style {
            let path = match key {
                Some(_) => format!("/{}/{encoded_key}", self.cfg.bucket),
                None => format!("/{}", self.cfg.bucket),
            };
            (scheme, authority, path)
        } else {
            (
                scheme,
                format!("{}.{authority}", self.cfg.bucket),
                format!("/{encoded_key}"),
            )
        }
    }

    fn target_name(&self, key: Option<&str>) -> String {
        match key {
            Some(k) => format!("{}/{k}", self.cfg.bucket),
            None => self.cfg.bucket.clone(),
        }
    }

    /// Signs and sends a request, retrying transient failures with capped exponential
    /// backoff and jitter; reads the whole response.
    fn send(&self, call: &Call<'_>) -> Result<Response> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send_once(call) {
                Ok(r) => return Ok(r),
                Err(e) if e.is_transient() && attempt < MAX_ATTEMPTS => {
                    log::debug!(
                        "{}: {} attempt {attempt} failed: {e}; retrying",
                        self.kind_str(),
                        call.op
                    );
                    crate::client::http::backoff(attempt);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn send_once(&self, call: &Call<'_>) -> Result<Response> {
        let resolved = self.credentials()?;
        let region = self.region()?;
        let (scheme, host, path) = self.target(call.key, &region);
        let mut headers = call.headers.clone();
        headers.extend(self.cfg.extra_headers.iter().cloned());
        headers.push(("host".into(), host.clone()));
        let payload = if self.cfg.sign_payload || call.method == "POST" {
            sigv4::Payload::Signed(call.body)
        } else {
            sigv4::Payload::Unsigned
        };
        let signed = sigv4::sign(
            &sigv4::Request {
                method: call.method,
                path: &path,
                query: &call.query,
                headers: &headers,
                payload,
            },
            &resolved.creds,
            &region,
            "s3",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        );
        let query = sigv4::canonical_query(&call.query);
        let url = if query.is_empty() {
            format!("{scheme}://{host}{path}")
        } else {
            format!("{scheme}://{host}{path}?{query}")
        };
        let target = self.target_name(call.key);
        let transport = |e: ureq::Error| Error::Backend {
            backend: self.kind_str(),
            op: call.op,
            target: target.clone(),
            status: None,
            code: String::new(),
            message: format!("request to {scheme}://{host} failed: {e}"),
        };
        let all = headers
            .iter()
            .chain(signed.headers.iter())
            .filter(|(k, _)| k != "host");
        let result = match call.method {
            "GET" | "HEAD" | "DELETE" => {
                let mut req = match call.method {
                    "GET" => self.agent.get(&url),
                    "HEAD" => self.agent.head(&url),
                    _ => self.agent.delete(&url),
                };
                for (k, v) in all {
                    req = req.header(k.as_str(), v.as_str());
                }
                req.call()
            }
            _ => {
                let mut req = match call.method {
                    "PUT" => self.agent.put(&url),
                    _ => self.agent.post(&url),
                };
                for (k, v) in all {
                    req = req.header(k.as_str(), v.as_str());
                }
                req.send(call.body)
            }
        };
        let mut resp = result.map_err(transport)?;
        let status = resp.status().as_u16();
        let resp_headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let mut body = Vec::new();
        if call.method != "HEAD" {
            resp.body_mut()
                .as_reader()
                .read_to_end(&mut body)
                .map_err(|e| Error::Backend {
                    backend: self.kind_str(),
                    op: call.op,
                    target: target.clone(),
                    status: Some(status),
                    code: String::new(),
                    message: format!("reading the response failed: {e}"),
                })?;
        }
        let r = Response {
            status,
            headers: resp_headers,
            body,
        };
        if (200..300).contains(&status) {
            return Ok(r);
        }
        Err(self.error(call.op, &target, &r, &resolved))
    }

    fn error(
        &self,
        op: &'static str,
        target: &str,
        r: &Response,
        creds: &credentials::Resolved,
    ) -> Error {
        let text = String::from_utf8_lossy(&r.body);
        let code = xml::text(&text, "Code").unwrap_or_default();
        let mut message = xml::text(&text, "Message").unwrap_or_default();
        if r.status == 404 && (code.is_empty() || code == "NoSuchKey") && op != "ListObjectsV2" {
            return Error::NotFound {
                backend: self.kind_str(),
                target: target.to_string(),
            };
        }
        if r.status == 403 || code == "SignatureDoesNotMatch" || code == "InvalidAccessKeyId" {
            message = format!(
                "{message}{}authentication failed with credentials from {} (access key {}); check the key, the secret and the region",
                if message.is_empty() { "" } else { "; " },
                creds.source,
                creds.creds.access_key_id
            );
        }
        if code == "NoSuchBucket" {
            message = format!(
                "{message}; the bucket {} does not exist (litestream never creates buckets)",
                self.cfg.bucket
            );
        }
        Error::Backend {
            backend: self.kind_str(),
            op,
            target: target.to_string(),
            status: Some(r.status),
            code,
            message,
        }
    }

    /// Headers for server-side encryption (`for_write` adds SSE-KMS, which reads omit).
    fn sse_headers(&self, for_write: bool) -> Vec<(String, String)> {
        let mut h = Vec::new();
        if let Some(key) = &self.cfg.sse_customer_key {
            let raw = base64::decode(key).unwrap_or_default();
            h.push((
                "x-amz-server-side-encryption-customer-algorithm".into(),
                "AES256".into(),
            ));
            h.push((
                "x-amz-server-side-encryption-customer-key".into(),
                key.clone(),
            ));
            h.push((
                "x-amz-server-side-encryption-customer-key-md5".into(),
                base64::encode(&md5::digest(&raw)),
            ));
        }
        if for_write {
            if let Some(id) = &self.cfg.sse_kms_key_id {
                h.push(("x-amz-server-side-encryption".into(), "aws:kms".into()));
                h.push((
                    "x-amz-server-side-encryption-aws-kms-key-id".into(),
                    id.clone(),
                ));
            }
        }
        h
    }

    fn put_headers(&self, timestamp_ms: i64) -> Vec<(String, String)> {
        let mut h = vec![(
            "x-amz-meta-litestream-timestamp".to_string(),
            timestamp_meta(timestamp_ms),
        )];
        if let Some(sc) = &self.cfg.storage_class {
            h.push(("x-amz-storage-class".into(), sc.clone()));
        }
        h.extend(self.sse_headers(true));
        h
    }

    fn put_object(&self, key: &str, body: &[u8], timestamp_ms: i64) -> Result<()> {
        let r = self.send(&Call {
            op: "PutObject",
            method: "PUT",
            key: Some(key),
            query: Vec::new(),
            headers: self.put_headers(timestamp_ms),
            body,
        })?;
        if r.header("etag").is_none() {
            return Err(Error::Backend {
                backend: self.kind_str(),
                op: "PutObject",
                target: self.target_name(Some(key)),
                status: Some(r.status),
                code: String::new(),
                message: "the response carried no ETag".into(),
            });
        }
        Ok(())
    }

    fn multipart(&self, key: &str, src: &File, size: u64, timestamp_ms: i64) -> Result<()> {
        let created = self.send(&Call {
            op: "CreateMultipartUpload",
            method: "POST",
            key: Some(key),
            query: vec![("uploads".into(), String::new())],
            headers: self.put_headers(timestamp_ms),
            body: &[],
        })?;
        let text = String::from_utf8_lossy(&created.body).into_owned();
        let upload_id = xml::text(&text, "UploadId").ok_or_else(|| Error::Backend {
            backend: self.kind_str(),
            op: "CreateMultipartUpload",
            target: self.target_name(Some(key)),
            status: Some(created.status),
            code: String::new(),
            message: "no UploadId in the response".into(),
        })?;
        let result = self.upload_parts(key, &upload_id, src, size);
        let result = result.and_then(|etags| {
            let mut doc = String::from("<CompleteMultipartUpload>");
            for (i, etag) in etags.iter().enumerate() {
                doc.push_str(&format!(
                    "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                    i + 1,
                    xml::escape(etag)
                ));
            }
            doc.push_str("</CompleteMultipartUpload>");
            let r = self.send(&Call {
                op: "CompleteMultipartUpload",
                method: "POST",
                key: Some(key),
                query: vec![("uploadId".into(), upload_id.clone())],
                headers: Vec::new(),
                body: doc.as_bytes(),
            })?;
            // S3 can answer 200 with an error document.
            let text = String::from_utf8_lossy(&r.body);
            if !xml::elements(&text, "Error").is_empty() {
                return Err(Error::Backend {
                    backend: self.kind_str(),
                    op: "CompleteMultipartUpload",
                    target: self.target_name(Some(key)),
                    status: Some(r.status),
                    code: xml::text(&text, "Code").unwrap_or_default(),
                    message: xml::text(&text, "Message").unwrap_or_default(),
                });
            }
            Ok(())
        });
        if result.is_err() {
            let _ = self.send(&Call {
                op: "AbortMultipartUpload",
                method: "DELETE",
                key: Some(key),
                query: vec![("uploadId".into(), upload_id)],
                headers: Vec::new(),
                body: &[],
            });
        }
        result
    }

    /// Uploads the parts with up to `concurrency` threads; returns the ETags in order.
    fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        src: &File,
        size: u64,
    ) -> Result<Vec<String>> {
        let part = self.cfg.part_size.max(1);
        let n = size.div_ceil(part) as usize;
        let etags: Mutex<Vec<Option<String>>> = Mutex::new(vec![None; n]);
        let next = AtomicUsize::new(0);
        let failed: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..self.cfg.concurrency.clamp(1, n.max(1)) {
                s.spawn(|| loop {
                    if failed.lock().map(|f| f.is_some()).unwrap_or(true) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        return;
                    }
                    let off = i as u64 * part;
                    let len = part.min(size - off) as usize;
                    let mut buf = vec![0u8; len];
                    let r = src
                        .read_exact_at(&mut buf, off)
                        .map_err(|e| Error::io("read upload part", e))
                        .and_then(|()| {
                            let mut h = Vec::new();
                            if self.cfg.sse_customer_key.is_some() {
                                h = self.sse_headers(false);
                            }
                            self.send(&Call {
                                op: "UploadPart",
                                method: "PUT",
                                key: Some(key),
                                query: vec![
                                    ("partNumber".into(), (i + 1).to_string()),
                                    ("uploadId".into(), upload_id.to_string()),
                                ],
                                headers: h,
                                body: &buf,
                            })
                        });
                    match r {
                        Ok(resp) => {
                            let etag = resp.header("etag").unwrap_or("").to_string();
                            if let Ok(mut e) = etags.lock() {
                                e[i] = Some(etag);
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
        let etags = etags.into_inner().unwrap_or_default();
        etags
            .into_iter()
            .map(|e| e.ok_or_else(|| Error::State("multipart upload lost a part".into())))
            .collect()
    }

    /// Every key under `prefix`, with size and last-modified time.
    fn list(
        &self,
        prefix: &str,
        start_after: Option<String>,
    ) -> Result<Vec<(String, u64, SystemTime)>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("list-type".to_string(), "2".to_string()),
                ("prefix".to_string(), prefix.to_string()),
            ];
            match &token {
                Some(t) => query.push(("continuation-token".into(), t.clone())),
                None => {
                    if let Some(s) = &start_after {
                        query.push(("start-after".into(), s.clone()));
                    }
                }
            }
            let r = self.send(&Call {
                op: "ListObjectsV2",
                method: "GET",
                key: None,
                query,
                headers: Vec::new(),
                body: &[],
            })?;
            let text = String::from_utf8_lossy(&r.body).into_owned();
            for c in xml::elements(&text, "Contents") {
                let Some(key) = xml::text(c, "Key") else {
                    continue;
                };
                let size = xml::text(c, "Size")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let modified = xml::text(c, "LastModified")
                    .and_then(|t| crate::time::parse_rfc3339(&t).ok())
                    .unwrap_or(UNIX_EPOCH);
                out.push((key, size, modified));
            }
            let truncated = xml::text(&text, "IsTruncated").is_some_and(|t| t == "true");
            token = xml::text(&text, "NextContinuationToken");
            if !truncated || token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Reads the `litestream-timestamp` metadata of an object.
    fn head_timestamp(&self, key: &str) -> Result<Option<SystemTime>> {
        let r = self.send(&Call {
            op: "HeadObject",
            method: "HEAD",
            key: Some(key),
            query: Vec::new(),
            headers: self.sse_headers(false),
            body: &[],
        })?;
        Ok(r.header("x-amz-meta-litestream-timestamp")
            .and_then(|t| crate::time::parse_rfc3339(t).ok()))
    }

    fn delete_keys(&self, keys: &[String]) -> Result<()> {
        for batch in keys.chunks(DELETE_BATCH) {
            let mut doc = String::from("<Delete><Quiet>true</Quiet>");
            for k in batch {
                doc.push_str(&format!("<Object><Key>{}</Key></Object>", xml::escape(k)));
            }
            doc.push_str("</Delete>");
            let mut headers = Vec::new();
            if self.cfg.require_content_md5 {
                headers.push((
                    "content-md5".to_string(),
                    base64::encode(&md5::digest(doc.as_bytes())),
                ));
            }
            let r = self.send(&Call {
                op: "DeleteObjects",
                method: "POST",
                key: None,
                query: vec![("delete".into(), String::new())],
                headers,
                body: doc.as_bytes(),
            })?;
            let text = String::from_utf8_lossy(&r.body);
            let errors: Vec<String> = xml::elements(&text, "Error")
                .iter()
                .filter(|e| xml::text(e, "Code").as_deref() != Some("NoSuchKey"))
                .map(|e| {
                    format!(
                        "{}: {}",
                        xml::text(e, "Key").unwrap_or_default(),
                        xml::text(e, "Message").unwrap_or_default()
                    )
                })
                .collect();
            if !errors.is_empty() {
                return Err(Error::Backend {
                    backend: self.kind_str(),
                    op: "DeleteObjects",
                    target: self.cfg.bucket.clone(),
                    status: Some(r.status),
                    code: "DeleteFailed".into(),
                    message: errors.join("; "),
                });
            }
        }
        Ok(())
    }
}

/// An object body streamed from a GET.
struct ObjectReader {
    inner: Box<dyn Read + Send>,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl ReplicaClient for S3Client {
    fn kind(&self) -> &'static str {
        self.kind_str()
    }

    fn ltx_files(&self, level: u8, seek: Txid, accurate: bool) -> Result<Vec<FileInfo>> {
        let prefix = self.level_prefix(level);
        // Keys sort as their TXIDs: start after every file starting before `seek`.
        let start_after =
            (seek.0 > 1).then(|| format!("{prefix}{}-ffffffffffffffff.ltx", Txid(seek.0 - 1)));
        let mut out: Vec<FileInfo> = Vec::new();
        for (key, size, modified) in self.list(&prefix, start_after)? {
            let Some(name) = key.strip_prefix(&prefix) else {
                continue;
            };
            let Some((min, max)) = ltx::parse_file_name(name) else {
                continue;
            };
            if min < seek {
                continue;
            }
            out.push(FileInfo {
                level,
                min_txid: min,
                max_txid: max,
                size,
                created_at: modified,
            });
        }
        if accurate && !out.is_empty() {
            // Header timestamps from metadata, several HEADs at once.
            let next = AtomicUsize::new(0);
            let times: Mutex<Vec<Option<SystemTime>>> = Mutex::new(vec![None; out.len()]);
            let failed: Mutex<Option<Error>> = Mutex::new(None);
            std::thread::scope(|s| {
                for _ in 0..8.min(out.len()) {
                    s.spawn(|| loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= out.len() {
                            return;
                        }
                        let f = &out[i];
                        match self.head_timestamp(&self.key(level, f.min_txid, f.max_txid)) {
                            Ok(t) => {
                                if let Ok(mut v) = times.lock() {
                                    v[i] = t;
                                }
                            }
                            Err(e) => {
                                if let Ok(mut g) = failed.lock() {
                                    g.get_or_insert(e);
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
            for (f, t) in out.iter_mut().zip(times.into_inner().unwrap_or_default()) {
                if let Some(t) = t {
                    f.created_at = t;
                }
            }
        }
        out.sort_by_key(|f| (f.min_txid, f.max_txid));
        Ok(out)
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
        match len {
            Some(n) => headers.push(("range".into(), format!("bytes={offset}-{}", offset + n - 1))),
            None if offset > 0 => headers.push(("range".into(), format!("bytes={offset}-"))),
            None => {}
        }
        // Object files are small compared to memory in the common case, but a snapshot
        // can be large: stream the body instead of buffering it.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.open_stream(&key, &headers) {
                Ok(r) => return Ok(r),
                Err(e) if e.is_transient() && attempt < MAX_ATTEMPTS => {
                    crate::client::http::backoff(attempt);
                }
                Err(e) => return Err(e),
            }
        }
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
            let mut body = vec![0u8; size as usize];
            src.read_exact_at(&mut body, 0)
                .map_err(|e| Error::io("read upload source", e))?;
            self.put_object(&key, &body, header.timestamp)?;
        }
        Ok(FileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size,
            created_at: crate::time::from_millis(header.timestamp),
        })
    }

    fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        let keys: Vec<String> = files
            .iter()
            .map(|f| self.key(f.level, f.min_txid, f.max_txid))
            .collect();
        self.delete_keys(&keys)
    }

    fn delete_all(&self) -> Result<()> {
        let keys: Vec<String> = self
            .list(&self.root_prefix(), None)?
            .into_iter()
            .map(|(k, _, _)| k)
            .collect();
        self.delete_keys(&keys)
    }
}

impl S3Client {
    fn open_stream(&self, key: &str, headers: &[(String, String)]) -> Result<Box<dyn Read + Send>> {
        let resolved = self.credentials()?;
        let region = self.region()?;
        let (scheme, host, path) = self.target(Some(key), &region);
        let mut hs = headers.to_vec();
        hs.extend(self.cfg.extra_headers.iter().cloned());
        hs.push(("host".into(), host.clone()));
        let signed = sigv4::sign(
            &sigv4::Request {
                method: "GET",
                path: &path,
                query: &[],
                headers: &hs,
                payload: sigv4::Payload::Signed(&[]),
            },
            &resolved.creds,
            &region,
            "s3",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        );
        let url = format!("{scheme}://{host}{path}");
        let mut req = self.agent.get(&url);
        for (k, v) in hs
            .iter()
            .chain(signed.headers.iter())
            .filter(|(k, _)| k != "host")
        {
            req = req.header(k.as_str(), v.as_str());
        }
        let target = self.target_name(Some(key));
        let resp = req.call().map_err(|e| Error::Backend {
            backend: self.kind_str(),
            op: "GetObject",
            target: target.clone(),
            status: None,
            code: String::new(),
            message: format!("request to {scheme}://{host} failed: {e}"),
        })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let mut body = Vec::new();
            let headers: Vec<(String, String)> = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            let _ = resp
                .into_body()
                .into_reader()
                .take(1 << 20)
                .read_to_end(&mut body);
            return Err(self.error(
                "GetObject",
                &target,
                &Response {
                    status,
                    headers,
                    body,
                },
                &resolved,
            ));
        }
        Ok(Box::new(ObjectReader {
            inner: Box::new(resp.into_body().into_reader()),
        }))
    }
}
