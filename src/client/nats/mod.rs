//! NATS JetStream Object Store (`nats://[USER:PASS@]HOST[:PORT]/BUCKET`), as Litestream's
//! `nats` replica: objects `[PATH/]ltx/<level>/<min>-<max>.ltx` in the object store
//! `BUCKET` (stream `OBJ_<BUCKET>`), with the LTX header time in the object header
//! `Litestream-Timestamp`.
//!
//! The NATS protocol is text over one TCP connection, spoken here by hand: `CONNECT`,
//! `PUB`/`HPUB` with a reply inbox, `MSG`/`HMSG`, `PING`/`PONG`. The object store is the
//! layout every NATS client shares: chunks on `$O.<bucket>.C.<nuid>`, one metadata message
//! per object on `$O.<bucket>.M.<base64url(key)>` (JSON, rolled up so only the newest
//! stays), read back through the JetStream API (`STREAM.MSG.GET`). An upload publishes
//! every chunk and waits for its acknowledgement before the metadata, so an object is
//! never visible half-written; it accepts objects of any chunking (the official binary
//! writes one chunk per reader `Write`).
//!
//! Like Litestream, the client never creates the bucket; [`NatsClient::create_bucket`]
//! does, for tests and first-time setup.
//!
//! Authentication: user/password, token, an NKey seed (the server's nonce signed with
//! Ed25519), or a user JWT with its seed (`jwt` + `seed`, or a `.creds` file). TLS
//! (rustls) starts after the server's INFO when the server requires it or the config asks
//! for it, trusting `root_cas` (else the `client::tls` roots), with an optional client
//! certificate.
//!
//! Here: the settings, the client and its `ReplicaClient` methods. `proto` speaks the
//! protocol on the connection, `auth` and `tls` set it up, `object` is the object store
//! layout on top.

mod auth;
mod object;
mod proto;
#[cfg(feature = "tls")]
mod tls;

use std::fs::File;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::key::{self, Layout};
use super::{FileInfo, ReplicaClient};
use crate::durable::ReadAt;
use crate::error::{Error, Result};
use crate::ltx::Txid;
use crate::wire::base64;
use crate::wire::json::quote;
use object::{api_json, ChunkReader, Inner};
use proto::{nuid, Fail, Op};

const KIND: &str = "nats";
/// Chunk size of uploads (the NATS clients' default).
const CHUNK: usize = 128 * 1024;

/// Settings of a [`NatsClient`].
#[derive(Clone)]
pub struct NatsConfig {
    /// `host:port` of the server (default port 4222).
    pub addr: String,
    /// Object store bucket (must exist).
    pub bucket: String,
    /// Prefix of the object names inside the bucket (may be empty).
    pub path: String,
    /// User for user/password authentication.
    pub username: Option<String>,
    /// Password for user/password authentication.
    pub password: Option<String>,
    /// Token authentication.
    pub token: Option<String>,
    /// NKey seed (`SU...`): the server's nonce is signed with it. Alone it authenticates
    /// as the NKey user; with `jwt` it signs for that user JWT.
    pub seed: Option<String>,
    /// User JWT (decentralised authentication), used with `seed`.
    pub jwt: Option<String>,
    /// Require TLS even if the server does not (it is always used when the server
    /// requires it).
    pub tls: bool,
    /// PEM files of the certificate authorities to trust (default: the `client::tls` roots).
    pub root_cas: Vec<std::path::PathBuf>,
    /// PEM client certificate and key, for servers that verify clients.
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Connect and read timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("addr", &self.addr)
            .field("bucket", &self.bucket)
            .field("path", &self.path)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl NatsConfig {
    /// Parses `nats://[USER:PASS@]HOST[:PORT]/BUCKET`.
    pub fn from_url(url: &str) -> Result<NatsConfig> {
        Self::from_parsed(url, crate::url::ReplicaUrl::parse(url)?)
    }

    /// [`NatsConfig::from_url`] for a URL already parsed (the client factory parses it once).
    pub(crate) fn from_parsed(url: &str, u: crate::url::ReplicaUrl) -> Result<NatsConfig> {
        let bad = |reason: &str| Error::InvalidUrl {
            url: url.to_string(),
            reason: reason.into(),
        };
        if u.scheme != "nats" {
            return Err(bad("not a nats:// url"));
        }
        if u.host.is_empty() {
            return Err(bad("nats url needs a host"));
        }
        let bucket = u.path.trim_matches('/').to_string();
        if bucket.is_empty() {
            return Err(bad("nats url needs a bucket: nats://host:4222/BUCKET"));
        }
        let host = if u.host.contains(':') {
            format!("[{}]", u.host)
        } else {
            u.host.clone()
        };
        Ok(NatsConfig {
            addr: format!("{host}:{}", u.port.unwrap_or(4222)),
            bucket,
            path: String::new(),
            username: u.username.clone().filter(|s| !s.is_empty()),
            password: u.password.clone(),
            token: None,
            seed: None,
            jwt: None,
            tls: false,
            root_cas: Vec::new(),
            client_cert: None,
            timeout: Duration::from_secs(10),
        })
    }
}

/// A replica in a NATS JetStream object store.
pub struct NatsClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NatsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsClient")
            .field("cfg", &self.inner.cfg)
            .finish()
    }
}

impl NatsClient {
    /// A client for `cfg` (connects on first use).
    pub fn new(cfg: NatsConfig) -> NatsClient {
        NatsClient {
            inner: Arc::new(Inner {
                cfg,
                conn: Mutex::new(None),
            }),
        }
    }

    /// A client from `nats://[USER:PASS@]HOST[:PORT]/BUCKET`.
    pub fn from_url(url: &str) -> Result<NatsClient> {
        Ok(NatsClient::new(NatsConfig::from_url(url)?))
    }

    /// Creates the object store bucket (stream `OBJ_<bucket>`, file storage, one replica,
    /// as `nats object add` does); an existing bucket is left as it is.
    pub fn create_bucket(&self) -> Result<()> {
        let i = &self.inner;
        let b = &i.cfg.bucket;
        let cfg = format!(
            "{{\"name\":{},\"subjects\":[{},{}],\"retention\":\"limits\",\"max_consumers\":-1,\"max_msgs\":-1,\"max_bytes\":-1,\"max_age\":0,\"max_msgs_per_subject\":-1,\"max_msg_size\":-1,\"discard\":\"new\",\"storage\":\"file\",\"num_replicas\":1,\"duplicate_window\":120000000000,\"allow_rollup_hdrs\":true,\"allow_direct\":true}}",
            quote(&i.stream()),
            quote(&format!("$O.{b}.C.>")),
            quote(&format!("$O.{b}.M.>"))
        );
        i.with_conn("create bucket", |conn| {
            let subject = format!("$JS.API.STREAM.CREATE.{}", i.stream());
            let m = conn.request(&subject, &[], cfg.as_bytes())?;
            match api_json(&subject, &m) {
                Ok(_) => Ok(()),
                // Already in use (the same bucket exists).
                Err(Fail::Failed(Error::Backend { code, .. })) if code == "10058" => Ok(()),
                Err(e) => Err(e),
            }
        })
    }
}

impl ReplicaClient for NatsClient {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn ltx_files(&self, level: u8, seek: Txid, _accurate: bool) -> Result<Vec<FileInfo>> {
        let i = &self.inner;
        let prefix = key::level_prefix(&i.cfg.path, level, Layout::Ltx);
        let mut out: Vec<FileInfo> = i
            .list(&prefix)?
            .into_iter()
            .filter_map(|o| {
                let (l, min, max) = key::parse_ltx_key(&i.cfg.path, &o.key, Layout::Ltx)?;
                (l == level && min >= seek).then(|| {
                    FileInfo::new(
                        level,
                        min,
                        max,
                        o.size,
                        o.timestamp.or(o.time).unwrap_or(SystemTime::UNIX_EPOCH),
                    )
                })
            })
            .collect();
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
        let i = &self.inner;
        let key = i.key(level, min, max);
        let info = i.with_conn("get", |conn| i.info(conn, &key))?;
        let info = match info {
            Some(o) if !o.deleted => o,
            _ => {
                return Err(Error::NotFound {
                    backend: KIND,
                    target: format!("{}/{key}", i.cfg.bucket),
                })
            }
        };
        let end = match len {
            Some(n) => (offset + n).min(info.size),
            None => info.size,
        };
        Ok(Box::new(ChunkReader {
            inner: self.inner.clone(),
            subject: i.chunk_subject(&info.nuid),
            key,
            seq: 1,
            chunks_left: info.chunks,
            pos: 0,
            skip_to: offset,
            end,
            buf: Vec::new(),
            at: 0,
        }))
    }

    fn write_ltx_file(&self, level: u8, min: Txid, max: Txid, src: &File) -> Result<FileInfo> {
        let i = &self.inner;
        let h = super::read_header(src)?;
        let created = crate::time::from_millis(h.timestamp);
        let key = i.key(level, min, max);
        let size = src
            .metadata()
            .map_err(|e| Error::io("stat ltx upload", e))?
            .len();
        // Chunks of an attempt cut off by a lost connection before its metadata was sent,
        // purged by the next attempt. (Once the metadata is sent, the chunks may be in use:
        // they are never purged as orphans.)
        let mut orphans: Vec<String> = Vec::new();
        let written = i.with_conn("put", |conn| {
            for o in orphans.drain(..) {
                let _ = Inner::purge(conn, &i.stream(), &o);
            }
            let old = i.info(conn, &key)?;
            let nuid = nuid(22);
            let chunk_subject = i.chunk_subject(&nuid);
            let ack_subject = chunk_subject.clone();
            let mut r = ReadAt::new(src);
            let mut buf = vec![0u8; CHUNK];
            let mut sha = <sha2::Sha256 as sha2::Digest>::new();
            let (mut total, mut chunks) = (0u64, 0u64);
            let result = (|| -> Op<()> {
                loop {
                    let mut n = 0;
                    while n < CHUNK {
                        let k = r
                            .read(&mut buf[n..])
                            .map_err(|e| Fail::Failed(Error::io("read ltx upload", e)))?;
                        if k == 0 {
                            break;
                        }
                        n += k;
                    }
                    if n == 0 {
                        break;
                    }
                    sha2::Digest::update(&mut sha, &buf[..n]);
                    let m = conn.request(&ack_subject, &[], &buf[..n])?;
                    api_json(&ack_subject, &m)?;
                    total += n as u64;
                    chunks += 1;
                }
                Ok(())
            })();
            match result {
                Ok(()) => {}
                Err(e @ Fail::Broken(_)) => {
                    orphans.push(chunk_subject);
                    return Err(e);
                }
                Err(e) => {
                    let _ = Inner::purge(conn, &i.stream(), &chunk_subject);
                    return Err(e);
                }
            }
            if total != size {
                let _ = Inner::purge(conn, &i.stream(), &chunk_subject);
                return Err(Fail::Failed(Error::State(format!(
                    "ltx upload changed size while uploading ({size} then {total} bytes)"
                ))));
            }
            let digest: [u8; 32] = sha2::Digest::finalize(sha).into();
            let meta = format!(
                "{{\"name\":{},\"headers\":{{\"Litestream-Timestamp\":[{}]}},\"options\":{{\"max_chunk_size\":{CHUNK}}},\"bucket\":{},\"nuid\":{},\"size\":{total},\"mtime\":\"0001-01-01T00:00:00Z\",\"chunks\":{chunks},\"digest\":{}}}",
                quote(&key),
                quote(&crate::time::format_rfc3339(created)),
                quote(&i.cfg.bucket),
                quote(&nuid),
                quote(&format!("SHA-256={}", base64::encode_url(&digest, true)))
            );
            let meta_subject = i.meta_subject(&key);
            let m = conn.request(&meta_subject, &[("Nats-Rollup", "sub")], meta.as_bytes())?;
            if let Err(e) = api_json(&meta_subject, &m) {
                let _ = Inner::purge(conn, &i.stream(), &chunk_subject);
                return Err(e);
            }
            if let Some(o) = old.filter(|o| !o.deleted && o.nuid != nuid && !o.nuid.is_empty()) {
                // The object is written; old chunks left behind only cost space.
                if let Err(Fail::Broken(e) | Fail::Failed(e)) =
                    Inner::purge(conn, &i.stream(), &i.chunk_subject(&o.nuid))
                {
                    log::warn!("nats: {key}: could not purge the replaced object's chunks: {e}");
                }
            }
            Ok(())
        });
        if written.is_err() && !orphans.is_empty() {
            // Failed for good: one more try to purge the last attempt's chunks. Without a
            // metadata message they never show as an object; this frees their space.
            let _ = i.attempt(&mut |conn| {
                orphans
                    .iter()
                    .try_for_each(|o| Inner::purge(conn, &i.stream(), o))
            });
        }
        written?;
        Ok(FileInfo::new(level, min, max, size, created))
    }

    fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        let i = &self.inner;
        for f in files {
            let key = i.key(f.level, f.min_txid, f.max_txid);
            i.with_conn("delete", |conn| {
                let Some(o) = i.info(conn, &key)? else {
                    return Ok(());
                };
                if o.deleted {
                    // Marked deleted by an earlier try whose answer was lost: its chunks
                    // may still be there.
                    return Inner::purge(conn, &i.stream(), &i.chunk_subject(&o.nuid));
                }
                let meta = format!(
                    "{{\"name\":{},\"bucket\":{},\"nuid\":{},\"size\":0,\"mtime\":\"0001-01-01T00:00:00Z\",\"chunks\":0,\"deleted\":true}}",
                    quote(&key),
                    quote(&i.cfg.bucket),
                    quote(&o.nuid)
                );
                let meta_subject = i.meta_subject(&key);
                let m = conn.request(&meta_subject, &[("Nats-Rollup", "sub")], meta.as_bytes())?;
                api_json(&meta_subject, &m)?;
                Inner::purge(conn, &i.stream(), &i.chunk_subject(&o.nuid))
            })?;
        }
        Ok(())
    }

    fn delete_all(&self) -> Result<()> {
        let i = &self.inner;
        let files: Vec<FileInfo> = i
            .list(&key::root(&i.cfg.path, Layout::Ltx))?
            .into_iter()
            .filter_map(|o| {
                let (level, min, max) = key::parse_ltx_key(&i.cfg.path, &o.key, Layout::Ltx)?;
                Some(FileInfo::new(
                    level,
                    min,
                    max,
                    o.size,
                    SystemTime::UNIX_EPOCH,
                ))
            })
            .collect();
        self.delete_ltx_files(&files)
    }
}

/// Fuzz entry: the protocol line, header status, API answer and object metadata parsers
/// over arbitrary bytes.
#[cfg(fuzzing)]
pub(crate) fn fuzz(data: &[u8]) {
    use crate::wire::json::Value;
    use object::parse_object_info;
    use proto::{parse_msg_line, parse_status, Msg};
    let (line, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(p) => (&data[..p], &data[p + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(l) = std::str::from_utf8(line) {
        let _ = parse_msg_line(l.trim_end());
    }
    let _ = parse_status(rest);
    let m = Msg {
        subject: String::new(),
        status: 0,
        data: rest.to_vec(),
    };
    if let Ok(v) = api_json("fuzz", &m) {
        if let Some(msg) = v.get("message") {
            let _ = parse_object_info(msg, rest);
        }
    }
    let _ = parse_object_info(&Value::Null, rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = NatsConfig::from_url("nats://u:p@127.0.0.1:24222/lsbkt").unwrap();
        assert_eq!(c.addr, "127.0.0.1:24222");
        assert_eq!(c.bucket, "lsbkt");
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password.as_deref(), Some("p"));
        assert_eq!(
            NatsConfig::from_url("nats://host/b").unwrap().addr,
            "host:4222"
        );
        assert!(NatsConfig::from_url("nats://host").is_err());
        assert!(!format!("{c:?}").contains("\"p\""));
    }
}
