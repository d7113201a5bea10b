//! The `gs` backend through Google Cloud Storage's JSON API, as Litestream does: objects
//! `<path>/ltx/<level>/<min>-<max>.ltx` with the header timestamp in the
//! `litestream-timestamp` metadata, uploads in one multipart request (objects appear
//! whole or not at all), ranged media downloads, paged listings.
//!
//! Authentication, first match wins: no token against an emulator
//! (`STORAGE_EMULATOR_HOST`, as Google's libraries), an access token given in the
//! configuration or `GOOGLE_OAUTH_ACCESS_TOKEN`, Application Default Credentials of type
//! `service_account` (a key file: a JWT assertion signed RS256 with its private key is
//! exchanged for access tokens, scope `devstorage.read_write`) or `authorized_user` (the
//! refresh token is exchanged), from `GOOGLE_APPLICATION_CREDENTIALS` or gcloud's
//! well-known file, then the metadata server (`GCE_METADATA_HOST`, default
//! `metadata.google.internal`). HMAC keys go through the S3-compatible XML API instead
//! (`type: gs` with `access-key-id`). The credentials live in the `auth` module.

mod auth;

use std::fs::File;
use std::io::Read;
use std::time::UNIX_EPOCH;

use super::http::{self, Answer, Body, TokenCache};
use super::key::{self, Layout};
use super::{check_object_path, read_header, retry, FileInfo, ObjectInfo, ReplicaClient};
use crate::error::{Error, Result};
use crate::ltx::Txid;
use crate::wire::json::{self, Value};
use crate::wire::uri;
use auth::Auth;

const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

/// Where a `gs://` replica lives and how to reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcsConfig {
    /// Bucket name.
    pub bucket: String,
    /// Path inside the bucket (no leading slash).
    pub path: String,
    /// API base URL; default `https://storage.googleapis.com`, or `http://$STORAGE_EMULATOR_HOST`.
    pub endpoint: Option<String>,
    /// A fixed OAuth access token (otherwise the sources in the module docs).
    pub access_token: Option<String>,
    /// Objects per listing page (at most 1000; default 1000).
    pub page_size: u32,
}

impl GcsConfig {
    /// Parses `gs://BUCKET/PATH[?endpoint=URL]`.
    pub fn from_url(url: &str) -> Result<GcsConfig> {
        Self::from_parsed(url, crate::url::ReplicaUrl::parse(url)?)
    }

    /// [`GcsConfig::from_url`] for a URL already parsed (the client factory parses it once).
    pub(crate) fn from_parsed(url: &str, u: crate::url::ReplicaUrl) -> Result<GcsConfig> {
        if u.scheme != "gs" {
            return Err(Error::InvalidUrl {
                url: url.into(),
                reason: "not a gs:// url".into(),
            });
        }
        if u.host.is_empty() {
            return Err(Error::InvalidUrl {
                url: url.into(),
                reason: "gs url needs a bucket: gs://BUCKET/PATH".into(),
            });
        }
        let mut c = GcsConfig {
            bucket: u.host.clone(),
            path: u.path.trim_matches('/').to_string(),
            page_size: 1000,
            ..GcsConfig::default()
        };
        if let Some(e) = u.query("endpoint") {
            c.endpoint = Some(crate::url::normalize_endpoint(e));
        }
        Ok(c)
    }
}

/// A replica in a Google Cloud Storage bucket (JSON API).
pub struct GcsClient {
    cfg: GcsConfig,
    base: String,
    agent: ureq::Agent,
    auth: Auth,
    token: TokenCache,
}

impl std::fmt::Debug for GcsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsClient")
            .field("bucket", &self.cfg.bucket)
            .field("path", &self.cfg.path)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl GcsClient {
    /// A client for `cfg`. Credentials are looked up now; no request is made until the
    /// first operation.
    pub fn new(mut cfg: GcsConfig) -> Result<GcsClient> {
        if cfg.bucket.is_empty() {
            return Err(Error::Invalid("gs: bucket required".into()));
        }
        if cfg.page_size == 0 || cfg.page_size > 1000 {
            cfg.page_size = 1000;
        }
        let emulator = auth::env("STORAGE_EMULATOR_HOST");
        let base = match (&cfg.endpoint, &emulator) {
            (Some(e), _) => e.trim_end_matches('/').to_string(),
            (None, Some(h)) if h.contains("://") => h.trim_end_matches('/').to_string(),
            (None, Some(h)) => format!("http://{}", h.trim_end_matches('/')),
            (None, None) => DEFAULT_ENDPOINT.to_string(),
        };
        let auth = Auth::discover(&cfg, &base, emulator.is_some())?;
        let agent = http::agent(false)?;
        Ok(GcsClient {
            cfg,
            base,
            agent,
            auth,
            token: TokenCache::new(60, 10),
        })
    }

    /// A client from a `gs://` URL.
    pub fn from_url(url: &str) -> Result<GcsClient> {
        GcsClient::new(GcsConfig::from_url(url)?)
    }

    /// The configuration.
    pub fn config(&self) -> &GcsConfig {
        &self.cfg
    }

    /// Creates the bucket if it does not exist (for tests and tooling; replication never
    /// creates buckets, as Litestream).
    pub fn create_bucket(&self, project: &str) -> Result<()> {
        let url = format!(
            "{}/storage/v1/b?project={}",
            self.base,
            uri::encode(project, false)
        );
        let body = format!("{{\"name\":{}}}", json::quote(&self.cfg.bucket));
        match self.request(
            "CreateBucket",
            "POST",
            &url,
            &[],
            Body::Bytes(body.as_bytes()),
        ) {
            Ok(_) => Ok(()),
            Err(Error::Backend {
                status: Some(409), ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The LTX files under `prefix` that `keep(level, min)` accepts, sorted by (level,
    /// min, max).
    fn list_ltx(&self, prefix: &str, keep: impl Fn(u8, Txid) -> bool) -> Result<Vec<FileInfo>> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (items, next) = self.list_page(prefix, token.as_deref())?;
            for it in &items {
                let Some(key) = it.get("name").and_then(Value::as_str) else {
                    continue;
                };
                // The header timestamp is in the metadata (free in the listing).
                let created_at = it
                    .get("metadata")
                    .and_then(|m| m.get("litestream-timestamp"))
                    .and_then(Value::as_str)
                    .or_else(|| it.get("timeCreated").and_then(Value::as_str))
                    .and_then(|t| crate::time::parse_rfc3339(t).ok())
                    .unwrap_or(UNIX_EPOCH);
                let size = it.get("size").and_then(Value::as_u64).unwrap_or(0);
                objects.push((key.to_string(), size, created_at));
            }
            match next {
                Some(t) if token.as_deref() != Some(t.as_str()) => token = Some(t),
                _ => break,
            }
        }
        Ok(key::ltx_files_among(
            &self.cfg.path,
            Layout::Ltx,
            objects,
            keep,
        ))
    }

    /// The key (object name) of the LTX file `(level, min, max)`.
    fn key(&self, level: u8, min: Txid, max: Txid) -> String {
        key::ltx_key(&self.cfg.path, level, min, max, Layout::Ltx)
    }

    /// The JSON API URL of the object `key`.
    fn object_url(&self, key: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.base,
            uri::encode(&self.cfg.bucket, false),
            uri::encode(key, false)
        )
    }

    /// An access token for the Authorization header, cached until shortly before expiry.
    fn bearer(&self) -> Result<Option<String>> {
        match &self.auth {
            Auth::None => Ok(None),
            Auth::Static(t) => Ok(Some(t.clone())),
            _ => self
                .token
                .get(&self.agent, "gs", &self.auth.name(), || {
                    self.auth.token_request()
                })
                .map(Some),
        }
    }

    /// Sends a request and reads its whole answer, retrying transient failures (the
    /// `retry` policy); the body of a 2xx answer.
    fn request(
        &self,
        op: &'static str,
        method: &'static str,
        url: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<Vec<u8>> {
        retry::run("gs", op, |_| {
            let resp = self.send(op, method, url, headers, body)?;
            Ok(Answer::read(resp, "gs", op, &self.target(url))?.body)
        })
    }

    /// How errors name the object (or bucket) of a request URL.
    fn target(&self, url: &str) -> String {
        format!("gs://{}/{}", self.cfg.bucket, target_of(url, &self.base))
    }

    /// One attempt: a 2xx answer (its body unread), else the error the answer says.
    fn send(
        &self,
        op: &'static str,
        method: &'static str,
        url: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let bearer = self.bearer()?;
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let all = headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(auth.as_deref().map(|a| ("authorization", a)));
        let resp = http::exchange(&self.agent, method, url, all, body).map_err(|e| {
            http::failed(
                "gs",
                op,
                url.to_string(),
                format!("request failed: {e}"),
                &e,
            )
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let answer = Answer::read(resp, "gs", op, &self.target(url))?;
        let (status, text) = (answer.status, answer.text());
        let doc = json::parse(&text).ok();
        let err = doc.as_ref().and_then(|d| d.get("error"));
        let message = err
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| text.trim().chars().take(300).collect());
        let code = err
            .and_then(|e| e.get("errors"))
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|e| e.get("reason"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let message = match status {
            401 | 403 => format!("{message} (credentials: {})", self.auth.name()),
            _ => message,
        };
        Err(Error::Backend {
            backend: "gs",
            op,
            target: self.target(url),
            status: Some(status),
            code,
            message,
        })
    }

    /// One page of a listing: (objects, next page token).
    fn list_page(&self, prefix: &str, token: Option<&str>) -> Result<(Vec<Value>, Option<String>)> {
        let mut url = format!(
            "{}/storage/v1/b/{}/o?prefix={}&maxResults={}",
            self.base,
            uri::encode(&self.cfg.bucket, false),
            uri::encode(prefix, false),
            self.cfg.page_size
        );
        if let Some(t) = token {
            url.push_str(&format!("&pageToken={}", uri::encode(t, false)));
        }
        let body = self.request("list", "GET", &url, &[], Body::Empty)?;
        let text = String::from_utf8_lossy(&body);
        let doc = json::parse(&text).map_err(|e| Error::Backend {
            backend: "gs",
            op: "list",
            target: format!("gs://{}/{prefix}", self.cfg.bucket),
            status: Some(200),
            code: String::new(),
            message: format!("unreadable listing: {e}"),
        })?;
        let items = doc
            .get("items")
            .and_then(Value::as_array)
            .map(<[Value]>::to_vec)
            .unwrap_or_default();
        let next = doc
            .get("nextPageToken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        Ok((items, next))
    }

    fn delete_object(&self, key: &str) -> Result<()> {
        match self.request("delete", "DELETE", &self.object_url(key), &[], Body::Empty) {
            Ok(_) => Ok(()),
            Err(Error::Backend {
                status: Some(404), ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The object part of a request URL, for messages.
fn target_of(url: &str, base: &str) -> String {
    let rest = url.strip_prefix(base).unwrap_or(url);
    let rest = rest.split('?').next().unwrap_or(rest);
    match rest.split_once("/o/") {
        Some((_, key)) => uri::decode(key).unwrap_or_else(|_| key.to_string()),
        None => String::new(),
    }
}

impl ReplicaClient for GcsClient {
    fn kind(&self) -> &'static str {
        "gs"
    }

    fn ltx_files(&self, level: u8, seek: Txid, _accurate: bool) -> Result<Vec<FileInfo>> {
        let prefix = key::level_prefix(&self.cfg.path, level, Layout::Ltx);
        self.list_ltx(&prefix, |l, min| l == level && min >= seek)
    }

    fn all_ltx_files(&self, _accurate: bool) -> Result<Option<Vec<FileInfo>>> {
        let prefix = key::levels_prefix(&self.cfg.path, Layout::Ltx);
        self.list_ltx(&prefix, |_, _| true).map(Some)
    }

    fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        check_object_path(prefix.trim_end_matches('/'))?;
        // Litestream v0.3 put its tree under the path cleaned as Go's `path.Join`, and
        // took an object's creation time as its time.
        let root = key::root(&self.cfg.path, Layout::Ltx);
        let full = format!("{root}{prefix}");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (items, next) = self.list_page(&full, token.as_deref())?;
            for it in &items {
                let Some(path) = it
                    .get("name")
                    .and_then(Value::as_str)
                    .and_then(|k| k.strip_prefix(&root))
                else {
                    continue;
                };
                out.push(ObjectInfo {
                    path: path.to_string(),
                    size: it.get("size").and_then(Value::as_u64).unwrap_or(0),
                    modified: it
                        .get("timeCreated")
                        .and_then(Value::as_str)
                        .and_then(|t| crate::time::parse_rfc3339(t).ok())
                        .unwrap_or(UNIX_EPOCH),
                });
            }
            match next {
                Some(t) if token.as_deref() != Some(t.as_str()) => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    fn open_object(&self, path: &str) -> Result<Box<dyn Read + Send>> {
        check_object_path(path)?;
        let key = format!("{}{path}", key::root(&self.cfg.path, Layout::Ltx));
        let url = format!("{}?alt=media", self.object_url(&key));
        retry::run("gs", "get", |_| {
            let resp = self.send("get", "GET", &url, &[], Body::Empty)?;
            Ok(Box::new(resp.into_body().into_reader()) as Box<dyn Read + Send>)
        })
    }

    fn open_ltx_file(
        &self,
        level: u8,
        min: Txid,
        max: Txid,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Box<dyn Read + Send>> {
        if len == Some(0) {
            return Ok(Box::new(std::io::empty()));
        }
        let key = self.key(level, min, max);
        let url = format!("{}?alt=media", self.object_url(&key));
        let headers: Vec<_> = http::range(offset, len)
            .map(|r| ("range", r))
            .into_iter()
            .collect();
        let opened = retry::run("gs", "get", |_| {
            let resp = self.send("get", "GET", &url, &headers, Body::Empty)?;
            http::check_ranged(resp.status().as_u16(), offset, "gs", "get", || {
                format!("gs://{}/{key}", self.cfg.bucket)
            })?;
            Ok(Box::new(resp.into_body().into_reader()) as Box<dyn Read + Send>)
        });
        match opened {
            Err(Error::Backend {
                status: Some(404), ..
            }) => Err(Error::NotFound {
                backend: "gs",
                target: format!("gs://{}/{key}", self.cfg.bucket),
            }),
            r => r,
        }
    }

    fn write_ltx_file(&self, level: u8, min: Txid, max: Txid, src: &File) -> Result<FileInfo> {
        let hdr = read_header(src)?;
        let key = self.key(level, min, max);
        let ts = crate::time::from_millis(hdr.timestamp);
        let meta = format!(
            "{{\"name\":{},\"contentType\":\"application/octet-stream\",\"metadata\":{{\"litestream-timestamp\":{}}}}}",
            json::quote(&key),
            json::quote(&crate::time::format_rfc3339(ts))
        );
        let boundary = format!("litestream-rs-{:016x}", retry::jitter(u64::MAX));
        let head = format!(
            "--{boundary}\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n--{boundary}\r\ncontent-type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=multipart",
            self.base,
            uri::encode(&self.cfg.bucket, false)
        );
        let size = Body::File(src).len()?;
        self.request(
            "upload",
            "POST",
            &url,
            &[(
                "content-type",
                format!("multipart/related; boundary={boundary}"),
            )],
            Body::Framed {
                head: &head,
                file: src,
                tail: &tail,
            },
        )?;
        Ok(FileInfo::new(level, min, max, size, ts))
    }

    fn copy_ltx_file(&self, src: &FileInfo, level: u8) -> Result<Option<FileInfo>> {
        let from = self.key(src.level, src.min_txid, src.max_txid);
        let to = self.key(level, src.min_txid, src.max_txid);
        // objects.rewrite: the server copies (metadata included), in as many calls as it
        // asks for; each call is retried on its own and continues with its token.
        let mut token: Option<String> = None;
        for _ in 0..1000 {
            let mut url = format!(
                "{}/rewriteTo/b/{}/o/{}",
                self.object_url(&from),
                uri::encode(&self.cfg.bucket, false),
                uri::encode(&to, false)
            );
            if let Some(t) = &token {
                url = format!("{url}?rewriteToken={}", uri::encode(t, false));
            }
            let body = self.request(
                "rewrite",
                "POST",
                &url,
                &[("content-type", "application/json".into())],
                Body::Bytes(b"{}"),
            )?;
            let doc = json::parse(&String::from_utf8_lossy(&body)).ok();
            let done = matches!(
                doc.as_ref().and_then(|d| d.get("done")),
                Some(Value::Bool(true))
            );
            if done {
                return Ok(Some(FileInfo {
                    level,
                    ..src.clone()
                }));
            }
            token = doc
                .as_ref()
                .and_then(|d| d.get("rewriteToken"))
                .and_then(Value::as_str)
                .map(str::to_string);
            if token.is_none() {
                // Neither done nor a token to go on with: upload instead.
                return Ok(None);
            }
        }
        Ok(None)
    }

    fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        for f in files {
            self.delete_object(&self.key(f.level, f.min_txid, f.max_txid))?;
        }
        Ok(())
    }

    fn delete_all(&self) -> Result<()> {
        let root = key::root(&self.cfg.path, Layout::Ltx);
        let mut token: Option<String> = None;
        let mut keys = Vec::new();
        loop {
            let (items, next) = self.list_page(&root, token.as_deref())?;
            keys.extend(
                items
                    .iter()
                    .filter_map(|i| i.get("name").and_then(Value::as_str).map(str::to_string)),
            );
            match next {
                Some(t) if token.as_deref() != Some(t.as_str()) => token = Some(t),
                _ => break,
            }
        }
        for k in keys {
            self.delete_object(&k)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
