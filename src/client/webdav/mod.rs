//! The `webdav` backend: `<path>/ltx/<level>/<min>-<max>.ltx` on a WebDAV server, as
//! Litestream. Uploads go to a temporary name in the same collection and are then MOVEd
//! into place, so a listing never shows a partial file; collections are made level by
//! level (MKCOL needs its parent). Listing is PROPFIND with `Depth: 1`. The server keeps no
//! metadata for us: listings carry the server's modification time, and accurate
//! timestamps (for point-in-time restores) are read from each file's LTX header.
//!
//! `webdav://[USER:PASSWORD@]HOST[:PORT]/PATH` (plain HTTP) or `webdavs://` (HTTPS); Basic
//! authentication.

use std::fs::File;
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use super::http::{self, Answer, Body};
use super::key::{self, Layout};
use super::{retry, FileInfo, ReplicaClient};
use crate::error::{Error, Result};
use crate::ltx::{self, Txid};
use crate::wire::{base64, http_date, uri, xml};

/// Where a `webdav://` replica lives.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WebDavConfig {
    /// Server base URL, `http://host:port` or `https://...` (no path).
    pub base_url: String,
    /// Replica directory on the server (absolute, `/` separated).
    pub path: String,
    /// Basic-auth user.
    pub username: Option<String>,
    /// Basic-auth password.
    pub password: Option<String>,
}

impl std::fmt::Debug for WebDavConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebDavConfig")
            .field("base_url", &self.base_url)
            .field("path", &self.path)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl WebDavConfig {
    /// Parses `webdav[s]://[USER:PASSWORD@]HOST[:PORT]/PATH`.
    pub fn from_url(url: &str) -> Result<WebDavConfig> {
        Self::from_parsed(url, crate::url::ReplicaUrl::parse(url)?)
    }

    /// [`WebDavConfig::from_url`] for a URL already parsed (the client factory parses it once).
    pub(crate) fn from_parsed(url: &str, u: crate::url::ReplicaUrl) -> Result<WebDavConfig> {
        let scheme = match u.scheme.as_str() {
            "webdav" => "http",
            "webdavs" => "https",
            _ => {
                return Err(Error::InvalidUrl {
                    url: url.into(),
                    reason: "not a webdav:// or webdavs:// url".into(),
                })
            }
        };
        if u.host.is_empty() {
            return Err(Error::InvalidUrl {
                url: url.into(),
                reason: "webdav url needs a host".into(),
            });
        }
        let port = u.port.map(|p| format!(":{p}")).unwrap_or_default();
        Ok(WebDavConfig {
            base_url: format!("{scheme}://{}{port}", u.host),
            path: u.path.clone(),
            username: u.username.clone().filter(|s| !s.is_empty()),
            password: u.password.clone(),
        })
    }
}

/// A replica on a WebDAV server.
pub struct WebDavClient {
    cfg: WebDavConfig,
    agent: ureq::Agent,
    /// Collections known to exist.
    made: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for WebDavClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebDavClient")
            .field("base_url", &self.cfg.base_url)
            .field("path", &self.cfg.path)
            .finish_non_exhaustive()
    }
}

/// The file name of `path` (a decoded href) if it names a file directly in the collection
/// `dir` (an absolute path; the href may carry a prefix of the server's before it).
fn name_in<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    let (parent, name) = path.rsplit_once('/')?;
    let plain = parent.split('/').all(|seg| seg != ".." && seg != ".");
    (plain && !name.is_empty() && parent.ends_with(dir.trim_end_matches('/'))).then_some(name)
}

/// Drops namespace prefixes from tag names (`<D:href>` → `<href>`), so the flat element
/// reader finds DAV elements whatever prefix the server chose.
fn strip_prefixes(doc: &str) -> String {
    let mut out = String::with_capacity(doc.len());
    let mut rest = doc;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let slash = rest.starts_with('/');
        if slash {
            out.push('/');
            rest = &rest[1..];
        }
        let name_end = rest
            .find(|c: char| c == '>' || c == '/' || c.is_whitespace())
            .unwrap_or(rest.len());
        if let Some(colon) = rest[..name_end].find(':') {
            rest = &rest[colon + 1..];
        }
    }
    out.push_str(rest);
    out
}

impl WebDavClient {
    /// A client for `cfg`. No request is made until the first operation.
    pub fn new(cfg: WebDavConfig) -> Result<WebDavClient> {
        if cfg.base_url.is_empty() {
            return Err(Error::Invalid("webdav: server url required".into()));
        }
        let agent = http::agent(false)?;
        Ok(WebDavClient {
            cfg,
            agent,
            made: Default::default(),
        })
    }

    /// A client from a `webdav://` or `webdavs://` URL.
    pub fn from_url(url: &str) -> Result<WebDavClient> {
        WebDavClient::new(WebDavConfig::from_url(url)?)
    }

    /// Server path of a collection or file (segments joined with `/`, no trailing slash).
    fn join(&self, parts: &[&str]) -> String {
        let mut p = String::new();
        for part in std::iter::once(self.cfg.path.as_str()).chain(parts.iter().copied()) {
            for seg in part.split('/').filter(|s| !s.is_empty() && *s != ".") {
                p.push('/');
                p.push_str(seg);
            }
        }
        if p.is_empty() {
            p.push('/');
        }
        p
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.cfg.base_url, uri::encode(path, true))
    }

    /// The collection that holds the files of `level`.
    fn level_dir(&self, level: u8) -> String {
        self.join(&[&key::level_prefix("", level, Layout::Ltx)])
    }

    /// The key of the LTX file `(level, min, max)`: its path on the server.
    fn key(&self, level: u8, min: Txid, max: Txid) -> String {
        self.join(&[&key::ltx_key("", level, min, max, Layout::Ltx)])
    }

    /// One request and its whole answer, retried on transient failures (the `retry`
    /// policy): any answer but a 5xx or 429, which are retried and then the error.
    fn call(
        &self,
        op: &'static str,
        method: &'static str,
        path: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<Answer> {
        retry::run("webdav", op, |_| {
            let resp = self.send(op, method, path, headers, body)?;
            let answer = Answer::read(resp, "webdav", op, &self.url(path))?;
            if answer.status >= 500 || answer.status == 429 {
                return Err(self.fail(op, path, &answer));
            }
            Ok(answer)
        })
    }

    /// A GET retried as [`WebDavClient::call`]; a 2xx answer's status and its body as a
    /// stream, any other answer an error.
    fn get(&self, path: &str, headers: &[(&str, String)]) -> Result<(u16, Box<dyn Read + Send>)> {
        retry::run("webdav", "get", |_| {
            let resp = self.send("get", "GET", path, headers, Body::Bytes(&[]))?;
            let status = resp.status().as_u16();
            if (200..300).contains(&status) {
                return Ok((status, Box::new(resp.into_body().into_reader()) as _));
            }
            if status == 404 {
                return Err(Error::NotFound {
                    backend: "webdav",
                    target: self.url(path),
                });
            }
            let answer = Answer::read(resp, "webdav", "get", &self.url(path))?;
            Err(self.fail("get", path, &answer))
        })
    }

    /// One attempt: the answer once its status line arrived.
    fn send(
        &self,
        op: &'static str,
        method: &'static str,
        path: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let url = self.url(path);
        let auth = self.cfg.username.as_ref().map(|u| {
            let p = self.cfg.password.as_deref().unwrap_or("");
            format!("Basic {}", base64::encode(format!("{u}:{p}").as_bytes()))
        });
        let all = headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(auth.as_deref().map(|a| ("authorization", a)));
        http::exchange(&self.agent, method, &url, all, body).map_err(|e| {
            http::failed(
                "webdav",
                op,
                url.clone(),
                format!("request failed: {e}"),
                &e,
            )
        })
    }

    /// The error an answer with an unexpected status says.
    fn fail(&self, op: &'static str, path: &str, answer: &Answer) -> Error {
        let text = strip_prefixes(&answer.text());
        let status = answer.status;
        let mut message = xml::text(&text, "title")
            .or_else(|| xml::text(&text, "h1"))
            .unwrap_or_else(|| text.trim().chars().take(200).collect());
        if status == 401 || status == 403 {
            message = format!(
                "{message} (user {})",
                self.cfg
                    .username
                    .as_deref()
                    .map(|u| format!("{u:?}"))
                    .unwrap_or_else(|| "none".into())
            );
        }
        Error::Backend {
            backend: "webdav",
            op,
            target: self.url(path),
            status: Some(status),
            code: String::new(),
            message,
        }
    }

    /// Makes `dir` and its parents (MKCOL needs the parent to exist).
    fn mkdir_all(&self, dir: &str) -> Result<()> {
        let mut p = String::new();
        for seg in dir.split('/').filter(|s| !s.is_empty()) {
            p.push('/');
            p.push_str(seg);
            let answer = self.call("mkcol", "MKCOL", &format!("{p}/"), &[], Body::Bytes(&[]))?;
            // 201 made; 405 (or 301 from some servers) already there.
            if !matches!(answer.status, 200..=299 | 301 | 405) {
                return Err(self.fail("mkcol", &p, &answer));
            }
        }
        Ok(())
    }

    /// PROPFIND depth 1 of a collection: (path, size, modified) of its files. None if the
    /// collection does not exist.
    fn propfind(&self, dir: &str) -> Result<Option<Vec<(String, u64, SystemTime)>>> {
        let body = r#"<?xml version="1.0" encoding="utf-8"?><propfind xmlns="DAV:"><prop><resourcetype/><getcontentlength/><getlastmodified/></prop></propfind>"#;
        let answer = self.call(
            "list",
            "PROPFIND",
            &format!("{dir}/"),
            &[
                ("depth", "1".into()),
                ("content-type", "application/xml".into()),
            ],
            Body::Bytes(body.as_bytes()),
        )?;
        if answer.status == 404 {
            return Ok(None);
        }
        if answer.status != 207 {
            return Err(self.fail("list", dir, &answer));
        }
        let doc = strip_prefixes(&answer.text());
        let mut out = Vec::new();
        for r in xml::elements(&doc, "response") {
            let Some(href) = xml::text(r, "href") else {
                continue;
            };
            if !xml::elements(r, "collection").is_empty() {
                continue;
            }
            // The href is a URL or an absolute path, percent-encoded.
            let path = match href.split_once("://") {
                Some((_, rest)) => rest
                    .find('/')
                    .map(|i| &rest[i..])
                    .unwrap_or("/")
                    .to_string(),
                None => href.clone(),
            };
            let path = uri::decode(&path).unwrap_or(path);
            let size = xml::text(r, "getcontentlength")
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            let modified = xml::text(r, "getlastmodified")
                .and_then(|s| http_date::parse(&s))
                .unwrap_or(UNIX_EPOCH);
            out.push((path, size, modified));
        }
        Ok(Some(out))
    }

    /// True if the file at `path` exists (a HEAD).
    fn exists(&self, path: &str) -> Result<bool> {
        let answer = self.call("head", "HEAD", path, &[], Body::Bytes(&[]))?;
        match answer.status {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(self.fail("head", path, &answer)),
        }
    }

    /// Runs `attempt` in the collection `dir`, made first once per process. When it fails
    /// in a collection made earlier, the collection may have vanished since: it is made
    /// again and `attempt` runs once more.
    fn in_collection<T>(&self, dir: &str, attempt: impl Fn() -> Result<T>) -> Result<T> {
        let known = self.ensure_dir(dir)?;
        attempt().or_else(|e| {
            if !known {
                return Err(e);
            }
            self.mkdir_all(dir)?;
            attempt()
        })
    }

    /// Makes the collection `dir` once per process; true if it was made before.
    fn ensure_dir(&self, dir: &str) -> Result<bool> {
        let known = self.made.lock().map(|m| m.contains(dir)).unwrap_or(false);
        if !known {
            self.mkdir_all(dir)?;
            if let Ok(mut m) = self.made.lock() {
                m.insert(dir.to_string());
            }
        }
        Ok(known)
    }

    /// The LTX header timestamp of a file (a 100-byte ranged read).
    fn header_time(&self, f: &FileInfo) -> Result<SystemTime> {
        let mut r = self.open_ltx_file(
            f.level,
            f.min_txid,
            f.max_txid,
            0,
            Some(ltx::HEADER_SIZE as u64),
        )?;
        let mut b = [0u8; ltx::HEADER_SIZE];
        r.read_exact(&mut b)
            .map_err(|e| Error::io(format!("read the header of {f}"), e))?;
        Ok(crate::time::from_millis(
            ltx::Header::from_bytes(&b)?.timestamp,
        ))
    }
}

impl ReplicaClient for WebDavClient {
    fn kind(&self) -> &'static str {
        "webdav"
    }

    fn ltx_files(&self, level: u8, seek: Txid, accurate: bool) -> Result<Vec<FileInfo>> {
        let Some(entries) = self.propfind(&self.level_dir(level))? else {
            return Ok(Vec::new());
        };
        let dir = self.level_dir(level);
        let mut out = Vec::new();
        for (path, size, modified) in entries {
            // Only files directly in the level's collection count: a listing that names
            // files elsewhere (`..`, another folder, a subfolder) is not ours to read.
            let Some(name) = name_in(&path, &dir) else {
                continue;
            };
            let Some((min, max)) = ltx::parse_file_name(name) else {
                continue;
            };
            if min < seek {
                continue;
            }
            out.push(FileInfo::new(level, min, max, size, modified));
        }
        out.sort_by_key(|f| (f.min_txid, f.max_txid));
        if accurate {
            for f in out.iter_mut() {
                f.created_at = self.header_time(f)?;
            }
        }
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
        if len == Some(0) {
            return Ok(Box::new(std::io::empty()));
        }
        let key = self.key(level, min, max);
        let headers: Vec<_> = http::range(offset, len)
            .map(|r| ("range", r))
            .into_iter()
            .collect();
        let (status, body) = self.get(&key, &headers)?;
        http::check_ranged(status, offset, "webdav", "get", || self.url(&key))?;
        Ok(match len {
            Some(n) => Box::new(body.take(n)),
            None => body,
        })
    }

    fn write_ltx_file(&self, level: u8, min: Txid, max: Txid, src: &File) -> Result<FileInfo> {
        let hdr = super::read_header(src)?;
        let dir = self.level_dir(level);
        let key = self.key(level, min, max);
        let tmp = temp_name(&key);
        let put = |client: &Self| -> Result<()> {
            let answer = client.call("put", "PUT", &tmp, &[], Body::File(src))?;
            if answer.ok() {
                return Ok(());
            }
            Err(client.fail("put", &tmp, &answer))
        };
        // A PUT into a missing collection is refused (409, often before the body is read,
        // which breaks the connection): make the collections first, once per level, and
        // again if they vanished.
        let uploaded = self.in_collection(&dir, || put(self));
        if let Err(e) = uploaded {
            self.discard(&tmp);
            return Err(e);
        }
        self.move_into_place(&tmp, &key)?;
        let size = src
            .metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io("stat the uploaded file", e))?;
        Ok(FileInfo::new(
            level,
            min,
            max,
            size,
            crate::time::from_millis(hdr.timestamp),
        ))
    }

    fn copy_ltx_file(&self, src: &FileInfo, level: u8) -> Result<Option<FileInfo>> {
        let from = self.key(src.level, src.min_txid, src.max_txid);
        let to = self.key(level, src.min_txid, src.max_txid);
        let dir = self.level_dir(level);
        // Copied under a temporary name, then moved into place as an upload is: servers
        // write a COPY straight into its destination, so a copy cut short would otherwise
        // leave a truncated file under a valid LTX name. COPY is idempotent: a retry after a
        // lost answer copies the same bytes again. A missing collection is a 409.
        let tmp = temp_name(&to);
        let answer = self.in_collection(&dir, || {
            let a = self.call(
                "copy",
                "COPY",
                &from,
                &[("destination", self.url(&tmp)), ("overwrite", "T".into())],
                Body::Bytes(&[]),
            )?;
            if a.status == 409 {
                return Err(self.fail("copy", &to, &a));
            }
            Ok(a)
        });
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                self.discard(&tmp);
                return Err(e);
            }
        };
        match answer.status {
            200..=299 => {
                self.move_into_place(&tmp, &to)?;
                Ok(Some(FileInfo {
                    level,
                    ..src.clone()
                }))
            }
            404 => Err(Error::NotFound {
                backend: "webdav",
                target: self.url(&from),
            }),
            // No COPY on this server: the caller uploads the bytes.
            405 | 501 => Ok(None),
            _ => Err(self.fail("copy", &to, &answer)),
        }
    }

    fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        for f in files {
            let key = self.key(f.level, f.min_txid, f.max_txid);
            let answer = self.call("delete", "DELETE", &key, &[], Body::Bytes(&[]))?;
            if !(answer.ok() || answer.status == 404) {
                return Err(self.fail("delete", &key, &answer));
            }
        }
        Ok(())
    }

    fn delete_all(&self) -> Result<()> {
        if let Ok(mut m) = self.made.lock() {
            m.clear();
        }
        let p = format!("{}/", self.join(&["ltx"]));
        let answer = self.call("delete", "DELETE", &p, &[], Body::Bytes(&[]))?;
        // 207 Multi-Status to a collection DELETE lists members that were not deleted
        // (RFC 4918 9.6.1): a failure, not a 2xx success.
        if (answer.ok() && answer.status != 207) || answer.status == 404 {
            Ok(())
        } else {
            Err(self.fail("delete", &p, &answer))
        }
    }
}

impl WebDavClient {
    /// Moves the temporary `tmp` to `key` (overwriting), and deletes `tmp` if that fails.
    fn move_into_place(&self, tmp: &str, key: &str) -> Result<()> {
        let moved = self.call(
            "move",
            "MOVE",
            tmp,
            &[("destination", self.url(key)), ("overwrite", "T".into())],
            Body::Bytes(&[]),
        );
        let moved = match moved {
            Ok(a) if a.ok() => Ok(()),
            // A MOVE retried after its answer was lost finds the temporary name gone: the
            // first one did the work if the file is in place now.
            Ok(a) if a.status == 404 && self.exists(key)? => Ok(()),
            Ok(a) => Err(self.fail("move", key, &a)),
            Err(e) => Err(e),
        };
        if moved.is_err() {
            self.discard(tmp);
        }
        moved
    }

    /// Deletes whatever a failed PUT, COPY or MOVE left under the temporary name `tmp`
    /// (best effort: a temporary name is never listed as an LTX file either way).
    fn discard(&self, tmp: &str) {
        let _ = self.call("delete", "DELETE", tmp, &[], Body::Bytes(&[]));
    }
}

/// A temporary name beside `key`, unique to this process and moment (never parsed as an
/// LTX file name).
fn temp_name(key: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{key}.{}.{nanos}.tmp", std::process::id())
}

#[cfg(test)]
mod tests;
