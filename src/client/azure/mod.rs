//! The `abs` backend: Azure Blob Storage through its REST API, signed with SharedKey by
//! hand (HMAC-SHA256 over Azure's canonical string). Layout as Litestream's:
//! `<path>/ltx/<level>/<min>-<max>.ltx` block blobs in a container, with the header
//! timestamp in the `litestreamtimestamp` metadata. Files up to [`AbsConfig::block_size`]
//! go up in one Put Blob; bigger ones as blocks committed by one Put Block List, so a
//! blob is never visible half-written.
//!
//! `abs://[ACCOUNT@]CONTAINER/PATH[?endpoint=URL]`; the key from
//! [`AbsConfig::account_key`], `LITESTREAM_AZURE_ACCOUNT_KEY` or `AZURE_STORAGE_KEY`, the
//! account from the URL, `LITESTREAM_AZURE_ACCOUNT_NAME` or `AZURE_STORAGE_ACCOUNT`.
//! A shared access signature ([`AbsConfig::sas_token`], `LITESTREAM_AZURE_SAS_TOKEN`)
//! takes precedence over the key, as in Litestream: requests then carry the token in their
//! query string and no `Authorization` header. With neither, requests carry a Microsoft
//! Entra ID bearer token (a service principal, workload identity or managed identity, as
//! Litestream's default Azure credential; see the `entra` module). SharedKey signing is in
//! `shared_key`.

use std::fs::File;
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

mod config;
mod copy;
mod entra;
mod shared_key;

use super::http::{self, Answer, Body};
use super::key::{self, Layout};
use super::{check_object_path, read_header, retry, FileInfo, ObjectInfo, ReplicaClient};
use crate::error::{Error, Result};
use crate::ltx::Txid;
use crate::wire::{base64, http_date, uri, xml};
pub use config::AbsConfig;
use shared_key::{authorization, string_to_sign};

const API_VERSION: &str = "2021-08-06";

/// A replica in an Azure Blob Storage container.
pub struct AbsClient {
    cfg: AbsConfig,
    cred: Cred,
    base: String,
    agent: ureq::Agent,
}

/// How requests are authorised.
enum Cred {
    /// SharedKey signatures with the decoded account key.
    Key(Vec<u8>),
    /// A SAS query string (no leading `?`) on every request.
    Sas(String),
    /// Entra ID bearer tokens (neither a key nor a SAS was given).
    Entra(entra::Tokens),
}

impl std::fmt::Debug for AbsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbsClient")
            .field("account", &self.cfg.account_name)
            .field("container", &self.cfg.container)
            .field("path", &self.cfg.path)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// A List Blobs page: (key, size, created) per blob and the next marker. `created` is
/// the `litestreamtimestamp` metadata (the LTX header time); without it, the blob's
/// `Creation-Time`, as Litestream does.
fn parse_list(text: &str) -> (Vec<(String, u64, SystemTime)>, Option<String>) {
    let mut out = Vec::new();
    for b in xml::elements(text, "Blob") {
        let Some(key) = xml::text(b, "Name") else {
            continue;
        };
        let size = xml::text(b, "Content-Length")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let created = xml::text(b, "litestreamtimestamp")
            .and_then(|t| crate::time::parse_rfc3339(&t).ok())
            .or_else(|| xml::text(b, "Creation-Time").and_then(|t| http_date::parse(&t)))
            .unwrap_or(UNIX_EPOCH);
        out.push((key, size, created));
    }
    let next = xml::text(text, "NextMarker").filter(|m| !m.is_empty());
    (out, next)
}

impl AbsClient {
    /// A client for `cfg`. No request is made until the first operation.
    pub fn new(mut cfg: AbsConfig) -> Result<AbsClient> {
        let sas = cfg
            .sas_token
            .as_deref()
            .map(|t| t.trim().trim_start_matches('?').to_string())
            .filter(|t| !t.is_empty());
        // With a SAS and an endpoint, the account name is not needed (as in Litestream).
        if cfg.account_name.is_empty() && (sas.is_none() || cfg.endpoint.is_none()) {
            return Err(Error::Invalid(
                "abs: account name required (abs://ACCOUNT@CONTAINER/PATH, account-name, or LITESTREAM_AZURE_ACCOUNT_NAME)".into(),
            ));
        }
        if cfg.container.is_empty() {
            return Err(Error::Invalid("abs: container (bucket) required".into()));
        }
        let cred = if let Some(sas) = sas {
            Cred::Sas(sas)
        } else if cfg.account_key.trim().is_empty() {
            let source =
                entra::Source::from_env(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
            log::debug!(
                "abs: no account key or SAS token; using {}",
                source.describe()
            );
            Cred::Entra(entra::Tokens::new(source)?)
        } else {
            Cred::Key(
                base64::decode(cfg.account_key.trim())
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| {
                        Error::Invalid(
                            "abs: the account key is not base64 (account-key or LITESTREAM_AZURE_ACCOUNT_KEY)"
                                .into(),
                        )
                    })?,
            )
        };
        if cfg.block_size < (64 << 10) {
            cfg.block_size = 4 << 20;
        }
        if cfg.page_size == 0 || cfg.page_size > 5000 {
            cfg.page_size = 5000;
        }
        let base = match &cfg.endpoint {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => format!("https://{}.blob.core.windows.net", cfg.account_name),
        };
        let agent = crate::client::http::agent(false)?;
        Ok(AbsClient {
            cfg,
            cred,
            base,
            agent,
        })
    }

    /// A client from an `abs://` URL.
    pub fn from_url(url: &str) -> Result<AbsClient> {
        AbsClient::new(AbsConfig::from_url(url)?)
    }

    /// Creates the container if it does not exist (for tests and tooling; replication
    /// never creates containers, as Litestream).
    pub fn create_container(&self) -> Result<()> {
        let q = vec![("restype".to_string(), "container".to_string())];
        match self.request("CreateContainer", "PUT", None, &q, &[], Body::Bytes(&[])) {
            Ok(_) => Ok(()),
            Err(Error::Backend {
                status: Some(409), ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The key (blob name) of the LTX file `(level, min, max)`.
    fn key(&self, level: u8, min: Txid, max: Txid) -> String {
        key::ltx_key(&self.cfg.path, level, min, max, Layout::Ltx)
    }

    /// Sends one request and reads its whole answer, retrying transient failures (the
    /// `retry` policy); the body of a 2xx answer.
    fn request(
        &self,
        op: &'static str,
        method: &'static str,
        key: Option<&str>,
        query: &[(String, String)],
        headers: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<Vec<u8>> {
        retry::run("abs", op, |_| {
            let resp = self.send(op, method, key, query, headers, body)?;
            Ok(Answer::read(resp, "abs", op, &self.target(key))?.body)
        })
    }

    /// Sends a GET, retrying transient failures; the body of its 2xx answer as a stream.
    fn open(
        &self,
        op: &'static str,
        key: &str,
        headers: &[(&str, String)],
        offset: u64,
    ) -> Result<Box<dyn Read + Send>> {
        retry::run("abs", op, |_| {
            let resp = self.send(op, "GET", Some(key), &[], headers, Body::Bytes(&[]))?;
            http::check_ranged(resp.status().as_u16(), offset, "abs", op, || {
                self.target(Some(key))
            })?;
            Ok(Box::new(resp.into_body().into_reader()) as Box<dyn Read + Send>)
        })
    }

    /// How errors name a blob (or the container).
    fn target(&self, key: Option<&str>) -> String {
        format!(
            "abs://{}@{}/{}",
            self.cfg.account_name,
            self.cfg.container,
            key.unwrap_or("")
        )
    }

    /// Scheme, authority and path of a blob (or of the container).
    fn place(&self, key: Option<&str>) -> (&str, &str, String) {
        let (scheme, rest) = self.base.split_once("://").unwrap_or(("https", &self.base));
        let (authority, base_path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let mut path = format!("{base_path}/{}", uri::encode(&self.cfg.container, false));
        if let Some(k) = key {
            path.push('/');
            path.push_str(&uri::encode(k, true));
        }
        (scheme, authority, path)
    }

    /// One attempt: a 2xx answer (its body unread), else the error the answer says.
    fn send(
        &self,
        op: &'static str,
        method: &'static str,
        key: Option<&str>,
        query: &[(String, String)],
        extra: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let (scheme, authority, path) = self.place(key);
        let len = body.len()?;
        let mut headers: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        headers.push(("x-ms-date".into(), http_date::format(SystemTime::now())));
        headers.push(("x-ms-version".into(), API_VERSION.into()));
        if matches!(method, "PUT" | "POST") {
            headers.push(("content-length".into(), len.to_string()));
        }
        match &self.cred {
            Cred::Key(key) => {
                let to_sign =
                    string_to_sign(method, &self.cfg.account_name, &path, query, &headers);
                headers.push((
                    "authorization".into(),
                    authorization(&self.cfg.account_name, key, &to_sign),
                ));
            }
            Cred::Entra(t) => {
                headers.push(("authorization".into(), format!("Bearer {}", t.token()?)));
            }
            Cred::Sas(_) => {}
        }
        let mut qs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", uri::encode(k, false), uri::encode(v, false)))
            .collect();
        if let Cred::Sas(sas) = &self.cred {
            qs.push(sas.clone());
        }
        let url = if qs.is_empty() {
            format!("{scheme}://{authority}{path}")
        } else {
            format!("{scheme}://{authority}{path}?{}", qs.join("&"))
        };
        let target = self.target(key);
        let transport = |e: ureq::Error| {
            let mut message = format!("request to {scheme}://{authority} failed: {e}");
            if let Cred::Sas(sas) = &self.cred {
                // Never echo the signature (a URL in the error text).
                message = message.replace(sas.as_str(), "<sas-token>");
            }
            http::failed("abs", op, target.clone(), message, &e)
        };
        let all = headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let resp = http::exchange(&self.agent, method, &url, all, body).map_err(transport)?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let answer = Answer::read(resp, "abs", op, &target)?;
        let (status, text) = (answer.status, answer.text());
        let code_header = answer.header("x-ms-error-code").unwrap_or("").to_string();
        let code = xml::text(&text, "Code").unwrap_or(code_header);
        let mut message = xml::text(&text, "Message")
            .map(|m| m.lines().next().unwrap_or("").to_string())
            .unwrap_or_default();
        if status == 403 {
            message = match &self.cred {
                Cred::Sas(_) => format!(
                    "{message} (account {:?} with a SAS token; check its permissions, services, resource types and expiry)",
                    self.cfg.account_name
                ),
                Cred::Entra(t) => format!(
                    "{message} (account {:?} as {}; give it a Storage Blob Data Contributor role on the container)",
                    self.cfg.account_name,
                    t.source().describe()
                ),
                Cred::Key(_) => format!(
                    "{message} (account {:?}; check the account key)",
                    self.cfg.account_name
                ),
            };
        }
        Err(Error::Backend {
            backend: "abs",
            op,
            target,
            status: Some(status),
            code,
            message,
        })
    }

    /// One listing page: (name, size, created) and the next marker.
    #[allow(clippy::type_complexity)]
    fn list_page(
        &self,
        prefix: &str,
        marker: Option<&str>,
    ) -> Result<(Vec<(String, u64, SystemTime)>, Option<String>)> {
        let mut q = vec![
            ("restype".to_string(), "container".to_string()),
            ("comp".to_string(), "list".to_string()),
            ("prefix".to_string(), prefix.to_string()),
            ("include".to_string(), "metadata".to_string()),
            ("maxresults".to_string(), self.cfg.page_size.to_string()),
        ];
        if let Some(m) = marker {
            q.push(("marker".to_string(), m.to_string()));
        }
        let body = self.request("ListBlobs", "GET", None, &q, &[], Body::Bytes(&[]))?;
        Ok(parse_list(&String::from_utf8_lossy(&body)))
    }

    fn list_all(&self, prefix: &str) -> Result<Vec<(String, u64, SystemTime)>> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let (page, next) = self.list_page(prefix, marker.as_deref())?;
            out.extend(page);
            match next {
                Some(m) if marker.as_deref() != Some(m.as_str()) => marker = Some(m),
                _ => return Ok(out),
            }
        }
    }

    fn delete_blob(&self, key: &str) -> Result<()> {
        match self.request(
            "DeleteBlob",
            "DELETE",
            Some(key),
            &[],
            &[],
            Body::Bytes(&[]),
        ) {
            Ok(_) => Ok(()),
            Err(Error::Backend {
                status: Some(404), ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl ReplicaClient for AbsClient {
    fn kind(&self) -> &'static str {
        "abs"
    }

    fn ltx_files(&self, level: u8, seek: Txid, _accurate: bool) -> Result<Vec<FileInfo>> {
        let prefix = key::level_prefix(&self.cfg.path, level, Layout::Ltx);
        Ok(key::ltx_files_among(
            &self.cfg.path,
            Layout::Ltx,
            self.list_all(&prefix)?,
            |l, min| l == level && min >= seek,
        ))
    }

    fn all_ltx_files(&self, _accurate: bool) -> Result<Option<Vec<FileInfo>>> {
        let prefix = key::levels_prefix(&self.cfg.path, Layout::Ltx);
        Ok(Some(key::ltx_files_among(
            &self.cfg.path,
            Layout::Ltx,
            self.list_all(&prefix)?,
            |_, _| true,
        )))
    }

    fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        check_object_path(prefix.trim_end_matches('/'))?;
        // Litestream v0.3 put its tree under the path cleaned as Go's `path.Join`.
        let root = key::root(&self.cfg.path, Layout::Ltx);
        let all = self.list_all(&format!("{root}{prefix}"))?;
        Ok(all
            .into_iter()
            .filter_map(|(key, size, modified)| {
                let path = key.strip_prefix(&root)?.to_string();
                Some(ObjectInfo {
                    path,
                    size,
                    modified,
                })
            })
            .collect())
    }

    fn open_object(&self, path: &str) -> Result<Box<dyn Read + Send>> {
        check_object_path(path)?;
        let key = format!("{}{path}", key::root(&self.cfg.path, Layout::Ltx));
        self.open("GetBlob", &key, &[], 0)
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
        let headers: Vec<_> = http::range(offset, len)
            .map(|r| ("x-ms-range", r))
            .into_iter()
            .collect();
        match self.open("GetBlob", &key, &headers, offset) {
            Err(Error::Backend {
                status: Some(404), ..
            }) => Err(Error::NotFound {
                backend: "abs",
                target: format!("abs://{}/{key}", self.cfg.container),
            }),
            r => r,
        }
    }

    fn write_ltx_file(&self, level: u8, min: Txid, max: Txid, src: &File) -> Result<FileInfo> {
        let hdr = read_header(src)?;
        let key = self.key(level, min, max);
        let ts = crate::time::from_millis(hdr.timestamp);
        let meta = (
            "x-ms-meta-litestreamtimestamp",
            crate::time::format_rfc3339(ts),
        );
        let size = src
            .metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io("stat the file to upload", e))?;
        let content_type = ("content-type", "application/octet-stream".to_string());
        if size <= self.cfg.block_size {
            self.request(
                "PutBlob",
                "PUT",
                Some(&key),
                &[],
                &[
                    ("x-ms-blob-type", "BlockBlob".into()),
                    ("x-ms-access-tier", "Hot".into()),
                    content_type,
                    meta,
                ],
                Body::File(src),
            )?;
        } else {
            // Blocks, then one commit: the blob appears whole or not at all. Every request
            // is retried on its own (the `retry` policy); none can leave a partial blob:
            // - a Put Block sent twice stores the same bytes under the same id again;
            // - a Put Block List whose answer was lost may have been applied: its retry names
            //   the same ids as `Latest`, which then resolve to the blocks it committed, so
            //   the blob is committed again with the same content, never mixed;
            // - an upload that fails for good leaves only uncommitted blocks, which no
            //   listing or read shows and which Azure garbage-collects (after a week); the
            //   next upload of this blob re-sends every block before committing, so a
            //   leftover block of the same id is never committed in place of ours.
            let mut ids = Vec::new();
            let mut off = 0u64;
            while off < size {
                let n = (size - off).min(self.cfg.block_size);
                let id = base64::encode(format!("block-{:08}", ids.len()).as_bytes());
                let q = vec![
                    ("comp".to_string(), "block".to_string()),
                    ("blockid".to_string(), id.clone()),
                ];
                self.request(
                    "PutBlock",
                    "PUT",
                    Some(&key),
                    &q,
                    &[],
                    Body::Part {
                        file: src,
                        offset: off,
                        len: n,
                    },
                )?;
                ids.push(id);
                off += n;
            }
            let mut list = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
            for id in &ids {
                list.push_str(&format!("<Latest>{id}</Latest>"));
            }
            list.push_str("</BlockList>");
            let q = vec![("comp".to_string(), "blocklist".to_string())];
            self.request(
                "PutBlockList",
                "PUT",
                Some(&key),
                &q,
                &[
                    ("x-ms-blob-content-type", "application/octet-stream".into()),
                    ("x-ms-access-tier", "Hot".into()),
                    meta,
                ],
                Body::Bytes(list.as_bytes()),
            )?;
        }
        Ok(FileInfo::new(level, min, max, size, ts))
    }

    fn copy_ltx_file(&self, src: &FileInfo, level: u8) -> Result<Option<FileInfo>> {
        copy::copy_blob(self, src, level)
    }

    fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        for f in files {
            self.delete_blob(&self.key(f.level, f.min_txid, f.max_txid))?;
        }
        Ok(())
    }

    fn delete_all(&self) -> Result<()> {
        for (key, _, _) in self.list_all(&key::root(&self.cfg.path, Layout::Ltx))? {
            self.delete_blob(&key)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
