//! The JetStream object store layout every NATS client shares: an object's chunks on
//! `$O.<bucket>.C.<nuid>`, its metadata (JSON, rolled up so only the newest stays) on
//! `$O.<bucket>.M.<base64url(key)>`, read back with `STREAM.MSG.GET`; operations run on
//! the one connection under the `retry` policy.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::proto::{Conn, Fail, Msg, Op};
use super::{NatsConfig, KIND};
use crate::client::key::{self, Layout};
use crate::client::retry;
use crate::error::{Error, Result};
use crate::ltx::Txid;
use crate::wire::base64;
use crate::wire::json::{self, quote, Value};

/// The client's state behind its `Arc`: settings and the connection, if one is open.
pub(super) struct Inner {
    pub(super) cfg: NatsConfig,
    pub(super) conn: Mutex<Option<Conn>>,
}

/// The metadata of one object.
#[derive(Debug, Clone)]
pub(super) struct ObjectInfo {
    /// The object's name in the store: our key.
    pub(super) key: String,
    pub(super) nuid: String,
    pub(super) size: u64,
    pub(super) chunks: u64,
    pub(super) deleted: bool,
    pub(super) timestamp: Option<SystemTime>,
    /// Message time on the server (fallback timestamp).
    pub(super) time: Option<SystemTime>,
}

/// Parses a JetStream API answer, turning `{"error":...}` into an error.
pub(super) fn api_json(subject: &str, m: &Msg) -> Op<Value> {
    let text = std::str::from_utf8(&m.data).map_err(|_| {
        Fail::Failed(Error::State(format!(
            "nats: {subject}: answer is not UTF-8"
        )))
    })?;
    let v = json::parse(text)
        .map_err(|e| Fail::Failed(Error::State(format!("nats: {subject}: {e}"))))?;
    if let Some(err) = v.get("error") {
        let code = err.get("code").and_then(Value::as_u64).unwrap_or(0);
        let err_code = err.get("err_code").and_then(Value::as_u64).unwrap_or(0);
        let desc = err
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        return Err(Fail::Failed(Error::Backend {
            backend: KIND,
            op: "jetstream",
            target: subject.to_string(),
            status: Some(code as u16),
            code: err_code.to_string(),
            message: desc,
        }));
    }
    Ok(v)
}

/// JetStream's "no message found" (stream message get).
pub(super) fn is_no_message(e: &Fail) -> bool {
    matches!(e, Fail::Failed(Error::Backend { code, .. }) if code == "10037")
}

/// JetStream's "stream not found".
pub(super) fn is_no_stream(e: &Fail) -> bool {
    matches!(e, Fail::Failed(Error::Backend { code, .. }) if code == "10059")
}

impl Inner {
    pub(super) fn stream(&self) -> String {
        format!("OBJ_{}", self.cfg.bucket)
    }

    pub(super) fn meta_subject(&self, key: &str) -> String {
        format!(
            "$O.{}.M.{}",
            self.cfg.bucket,
            base64::encode_url(key.as_bytes(), true)
        )
    }

    pub(super) fn chunk_subject(&self, nuid: &str) -> String {
        format!("$O.{}.C.{nuid}", self.cfg.bucket)
    }

    /// Runs `f` on a connection, retrying transient failures (the `retry` policy); a
    /// failure of the connection itself drops it, so the next attempt reconnects.
    pub(super) fn with_conn<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&mut Conn) -> Op<T>,
    ) -> Result<T> {
        retry::run(KIND, what, |_| self.attempt(&mut f))
    }

    /// One attempt of `f`, connecting first if there is no connection.
    pub(super) fn attempt<T>(&self, f: &mut impl FnMut(&mut Conn) -> Op<T>) -> Result<T> {
        let mut guard = self
            .conn
            .lock()
            .map_err(|_| Error::State("nats connection state poisoned".into()))?;
        let conn = match guard.as_mut() {
            Some(c) => c,
            None => guard.insert(Conn::connect(&self.cfg)?),
        };
        match f(conn) {
            Ok(v) => Ok(v),
            Err(Fail::Failed(e)) => Err(e),
            Err(Fail::Broken(e)) => {
                *guard = None;
                Err(e)
            }
        }
    }

    /// `STREAM.MSG.GET` with the request `req`; `None` when there is no such message.
    pub(super) fn msg_get(
        conn: &mut Conn,
        stream: &str,
        req: &str,
    ) -> Op<Option<(Value, Vec<u8>)>> {
        let subject = format!("$JS.API.STREAM.MSG.GET.{stream}");
        let m = conn.request(&subject, &[], req.as_bytes())?;
        let v = match api_json(&subject, &m) {
            Ok(v) => v,
            Err(e) if is_no_message(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let msg = v.get("message").cloned().unwrap_or(Value::Null);
        let data = match msg.get("data").and_then(Value::as_str) {
            Some(d) => base64::decode(d).ok_or_else(|| {
                Fail::Failed(Error::State(format!("nats: {subject}: bad base64 data")))
            })?,
            None => Vec::new(),
        };
        Ok(Some((msg, data)))
    }

    pub(super) fn parse_info(&self, msg: &Value, data: &[u8]) -> Option<ObjectInfo> {
        parse_object_info(msg, data)
    }

    /// The metadata of `name`, deleted or not; `None` if it never existed.
    pub(super) fn info(&self, conn: &mut Conn, key: &str) -> Op<Option<ObjectInfo>> {
        let req = format!("{{\"last_by_subj\":{}}}", quote(&self.meta_subject(key)));
        match Inner::msg_get(conn, &self.stream(), &req) {
            Ok(Some((msg, data))) => Ok(self.parse_info(&msg, &data)),
            Ok(None) => Ok(None),
            Err(e) if is_no_stream(&e) => Err(Fail::Failed(self.no_bucket())),
            Err(e) => Err(e),
        }
    }

    pub(super) fn no_bucket(&self) -> Error {
        Error::NotFound {
            backend: KIND,
            target: format!(
                "object store bucket {:?} on {} (Litestream does not create it: `nats object add {}`, or NatsClient::create_bucket)",
                self.cfg.bucket, self.cfg.addr, self.cfg.bucket
            ),
        }
    }

    pub(super) fn purge(conn: &mut Conn, stream: &str, filter: &str) -> Op<()> {
        let subject = format!("$JS.API.STREAM.PURGE.{stream}");
        let m = conn.request(
            &subject,
            &[],
            format!("{{\"filter\":{}}}", quote(filter)).as_bytes(),
        )?;
        api_json(&subject, &m).map(|_| ())
    }

    /// Every live object whose name starts with `prefix`.
    pub(super) fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let filter = format!("$O.{}.M.>", self.cfg.bucket);
        self.with_conn("list", |conn| {
            let mut out = Vec::new();
            let mut seq = 1u64;
            loop {
                let req = format!("{{\"seq\":{seq},\"next_by_subj\":{}}}", quote(&filter));
                let got = match Inner::msg_get(conn, &self.stream(), &req) {
                    Ok(g) => g,
                    Err(e) if is_no_stream(&e) => return Err(Fail::Failed(self.no_bucket())),
                    Err(e) => return Err(e),
                };
                let Some((msg, data)) = got else { break };
                let s = msg.get("seq").and_then(Value::as_u64).unwrap_or(seq);
                seq = s.max(seq) + 1;
                if let Some(info) = self.parse_info(&msg, &data) {
                    if !info.deleted && info.key.starts_with(prefix) {
                        out.push(info);
                    }
                }
            }
            Ok(out)
        })
    }

    /// The key (object name) of the LTX file `(level, min, max)`.
    pub(super) fn key(&self, level: u8, min: Txid, max: Txid) -> String {
        key::ltx_key(&self.cfg.path, level, min, max, Layout::Ltx)
    }
}

/// An object's metadata message (`ObjectInfo` JSON); `None` if it is not one.
pub(super) fn parse_object_info(msg: &Value, data: &[u8]) -> Option<ObjectInfo> {
    let v = json::parse(std::str::from_utf8(data).ok()?).ok()?;
    let timestamp = v
        .get("headers")
        .and_then(|h| h.get("Litestream-Timestamp"))
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .and_then(|s| crate::time::parse_rfc3339(s).ok());
    Some(ObjectInfo {
        key: v.get("name")?.as_str()?.to_string(),
        nuid: v
            .get("nuid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        size: v.get("size").and_then(Value::as_u64).unwrap_or(0),
        chunks: v.get("chunks").and_then(Value::as_u64).unwrap_or(0),
        deleted: matches!(v.get("deleted"), Some(Value::Bool(true))),
        timestamp,
        time: msg
            .get("time")
            .and_then(Value::as_str)
            .and_then(|s| crate::time::parse_rfc3339(s).ok()),
    })
}

/// Streams an object's chunks in order, fetching each with `STREAM.MSG.GET`.
pub(super) struct ChunkReader {
    pub(super) inner: Arc<Inner>,
    pub(super) subject: String,
    pub(super) key: String,
    /// Stream sequence to search the next chunk from.
    pub(super) seq: u64,
    pub(super) chunks_left: u64,
    /// Object offset of the start of `buf`... after `at`: of `buf[at]`.
    pub(super) pos: u64,
    pub(super) skip_to: u64,
    pub(super) end: u64,
    pub(super) buf: Vec<u8>,
    pub(super) at: usize,
}

impl ChunkReader {
    pub(super) fn fetch(&mut self) -> io::Result<bool> {
        if self.chunks_left == 0 {
            return Ok(false);
        }
        let i = self.inner.clone();
        let req = format!(
            "{{\"seq\":{},\"next_by_subj\":{}}}",
            self.seq,
            quote(&self.subject)
        );
        let got = i
            .with_conn("get chunk", |conn| Inner::msg_get(conn, &i.stream(), &req))
            .map_err(|e| io::Error::other(e.to_string()))?;
        let Some((msg, data)) = got else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "nats: object {} is missing {} chunks",
                    self.key, self.chunks_left
                ),
            ));
        };
        let s = msg.get("seq").and_then(Value::as_u64).unwrap_or(self.seq);
        self.seq = s.max(self.seq) + 1;
        self.chunks_left -= 1;
        self.buf = data;
        self.at = 0;
        Ok(true)
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos >= self.end {
                return Ok(0);
            }
            if self.at == self.buf.len() {
                if !self.fetch()? {
                    return Ok(0);
                }
                continue;
            }
            let avail = self.buf.len() - self.at;
            if self.pos < self.skip_to {
                let k = (self.skip_to - self.pos).min(avail as u64) as usize;
                self.at += k;
                self.pos += k as u64;
                continue;
            }
            let k = avail.min(out.len()).min((self.end - self.pos) as usize);
            out[..k].copy_from_slice(&self.buf[self.at..self.at + k]);
            self.at += k;
            self.pos += k as u64;
            return Ok(k);
        }
    }
}
