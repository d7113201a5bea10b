//! The NATS protocol, spoken by hand over one connection: `CONNECT` and its `PONG`,
//! `PUB`/`HPUB` requests answered on a reply inbox, `MSG`/`HMSG` with their header status,
//! `PING`/`PONG`; and how a failed operation tells whether its connection is still good.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::SystemTime;

use super::{auth, NatsConfig, KIND};
use crate::client::retry;
use crate::error::{Error, Result};
use crate::wire::json::{self, Value};

/// Most bytes of one protocol message accepted from the server.
const MAX_MSG: usize = 64 << 20;

/// One message received.
pub(super) struct Msg {
    pub(super) subject: String,
    /// The status of a header block (`503` no responders, `404` ...), or 0.
    pub(super) status: u16,
    pub(super) data: Vec<u8>,
}

/// A live connection with its reply inbox.
pub(super) struct Conn {
    pub(super) io: BufReader<Stream>,
    /// `host:port` of the server, for errors.
    pub(super) server: String,
    pub(super) inbox: String,
    pub(super) next: u64,
}

/// The connection: plain TCP, or TLS over it once the server's INFO was read.
pub(super) enum Stream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Why an operation failed, which says what becomes of its connection; whether to try
/// again is the `retry` policy's call ([`Error::is_transient`]).
pub(super) enum Fail {
    /// The connection broke or fell out of step: it is dropped.
    Broken(Error),
    /// The operation failed (the server's answer, a local error); the connection is fine.
    Failed(Error),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail::Broken(Error::io("nats connection", e))
    }
}

/// The result of an operation on a connection.
pub(super) type Op<T> = std::result::Result<T, Fail>;

/// A random token of `n` base-62 characters (object ids and inboxes).
pub(super) fn nuid(n: usize) -> String {
    const ABC: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut seed = [0u8; 32];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .is_err()
    {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        seed[..16].copy_from_slice(&t.to_le_bytes());
        seed[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    }
    let mut out = String::with_capacity(n);
    let mut block = seed;
    while out.len() < n {
        use sha2::Digest;
        block = sha2::Sha256::digest(block).into();
        for b in block {
            if out.len() < n && (b as usize) < 248 {
                out.push(ABC[b as usize % 62] as char);
            }
        }
    }
    out
}

impl Conn {
    pub(super) fn connect(cfg: &NatsConfig) -> Result<Conn> {
        let target = || format!("nats server {}", cfg.addr);
        let addr = cfg
            .addr
            .to_socket_addrs()
            .map_err(|e| Error::io(format!("resolve {}", target()), e))?
            .next()
            .ok_or_else(|| Error::State(format!("{} has no address", target())))?;
        let tcp = TcpStream::connect_timeout(&addr, cfg.timeout)
            .map_err(|e| Error::io(format!("connect to {}", target()), e))?;
        tcp.set_read_timeout(Some(cfg.timeout)).ok();
        tcp.set_write_timeout(Some(cfg.timeout)).ok();
        tcp.set_nodelay(true).ok();
        let mut c = Conn {
            io: BufReader::with_capacity(256 << 10, Stream::Plain(tcp)),
            server: cfg.addr.clone(),
            inbox: format!("_INBOX.{}", nuid(22)),
            next: 0,
        };
        let mut line = String::new();
        c.read_line(&mut line)
            .map_err(|e| Error::io(format!("read INFO from {}", target()), e))?;
        if !line.starts_with("INFO ") {
            return Err(Error::State(format!(
                "{} did not greet with INFO (is it a NATS server?): {:?}",
                target(),
                line.trim_end()
            )));
        }
        let info = json::parse(line["INFO ".len()..].trim_end()).ok();
        let flag = |k: &str| {
            info.as_ref()
                .and_then(|i| i.get(k))
                .is_some_and(|v| matches!(v, Value::Bool(true)))
        };
        let tls = flag("tls_required") || cfg.tls;
        if tls {
            if !flag("tls_required") && !flag("tls_available") {
                return Err(Error::Invalid(format!(
                    "{} does not offer TLS, and the replica config asks for it",
                    target()
                )));
            }
            #[cfg(feature = "tls")]
            {
                c = c.upgrade(cfg)?;
            }
            #[cfg(not(feature = "tls"))]
            return Err(Error::Invalid(format!(
                "{} wants TLS, which this build leaves out (build with the `tls` cargo feature)",
                target()
            )));
        }
        let (connect, nkey) = auth::connect_options(cfg, info.as_ref(), &target())?;
        let sub = format!("SUB {}.* 1\r\n", c.inbox);
        let w = c.io.get_mut();
        w.write_all(format!("CONNECT {connect}\r\nPING\r\n{sub}").as_bytes())
            .and_then(|_| w.flush())
            .map_err(|e| {
                let hint = if tls && e.to_string().contains("certificate") {
                    " (is the server's CA in root-cas?)"
                } else {
                    ""
                };
                Error::io(format!("send CONNECT to {}{hint}", target()), e)
            })?;
        loop {
            line.clear();
            c.read_line(&mut line)
                .map_err(|e| Error::io(format!("connect to {}", target()), e))?;
            let l = line.trim_end();
            if l == "PONG" {
                return Ok(c);
            }
            if let Some(err) = l.strip_prefix("-ERR ") {
                let who = auth::who(cfg, nkey.as_ref());
                return Err(Error::Backend {
                    backend: KIND,
                    op: "connect",
                    target: cfg.addr.clone(),
                    status: None,
                    code: err.trim_matches('\'').to_string(),
                    message: format!(
                        "the server refused the connection{who}; check the credentials (username/password, token, seed, jwt or creds) in the replica config"
                    ),
                });
            }
        }
    }

    pub(super) fn read_line(&mut self, line: &mut String) -> io::Result<()> {
        let n = self.io.by_ref().take(64 << 10).read_line(line)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        Ok(())
    }

    /// Publishes `data` to `subject` (with headers) and waits for the reply.
    pub(super) fn request(
        &mut self,
        subject: &str,
        headers: &[(&str, &str)],
        data: &[u8],
    ) -> Op<Msg> {
        self.next += 1;
        let reply = format!("{}.{}", self.inbox, self.next);
        let mut out = Vec::with_capacity(data.len() + 256);
        if headers.is_empty() {
            out.extend_from_slice(format!("PUB {subject} {reply} {}\r\n", data.len()).as_bytes());
        } else {
            let mut h = String::from("NATS/1.0\r\n");
            for (k, v) in headers {
                h.push_str(&format!("{k}: {v}\r\n"));
            }
            h.push_str("\r\n");
            out.extend_from_slice(
                format!(
                    "HPUB {subject} {reply} {} {}\r\n",
                    h.len(),
                    h.len() + data.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(h.as_bytes());
        }
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        let w = self.io.get_mut();
        w.write_all(&out)?;
        w.flush()?;
        loop {
            let m = self.read_msg()?;
            if m.subject == reply {
                if m.status == 503 {
                    return Err(Fail::Failed(Error::State(format!(
                        "nats: nothing answers on {subject} (is JetStream enabled on the server?)"
                    ))));
                }
                return Ok(m);
            }
            // A late answer to an earlier request that timed out: skip it.
        }
    }

    /// A line the protocol does not allow here: the connection is out of step (transient:
    /// a new connection starts clean).
    pub(super) fn protocol(&self, line: &str) -> Error {
        retry::transport(
            KIND,
            "request",
            self.server.clone(),
            format!(
                "unexpected protocol line {:?}",
                line.chars().take(200).collect::<String>()
            ),
        )
    }

    /// Reads until the next message, answering pings.
    pub(super) fn read_msg(&mut self) -> Op<Msg> {
        let mut line = String::new();
        loop {
            line.clear();
            self.read_line(&mut line)?;
            let l = line.trim_end();
            let mut parts = l.split(' ');
            match parts.next() {
                Some("PING") => {
                    let w = self.io.get_mut();
                    w.write_all(b"PONG\r\n")?;
                    w.flush()?;
                }
                Some("PONG") | Some("+OK") | Some("INFO") | Some("") => {}
                Some("-ERR") => {
                    // A refused permission stays refused (final); any other error ends the
                    // connection ('Stale Connection', 'Slow Consumer'...) and a new one may
                    // do better (transient).
                    let err = l["-ERR".len()..].trim().trim_matches('\'');
                    let code = if err.contains("Violation") { err } else { "" };
                    return Err(Fail::Broken(Error::Backend {
                        backend: KIND,
                        op: "request",
                        target: self.server.clone(),
                        status: None,
                        code: code.to_string(),
                        message: format!("the server said {l}"),
                    }));
                }
                Some("MSG" | "HMSG") => {
                    let Some((subject, hdr, total)) = parse_msg_line(l) else {
                        return Err(Fail::Broken(self.protocol(l)));
                    };
                    let subject = subject.to_string();
                    let mut body = vec![0u8; total + 2];
                    self.io.read_exact(&mut body)?;
                    body.truncate(total);
                    let status = if hdr > 0 {
                        parse_status(&body[..hdr])
                    } else {
                        0
                    };
                    let data = body.split_off(hdr);
                    return Ok(Msg {
                        subject,
                        status,
                        data,
                    });
                }
                _ => return Err(Fail::Broken(self.protocol(l))),
            }
        }
    }
}

/// `MSG <subject> <sid> [reply] <size>` or `HMSG <subject> <sid> [reply] <hdr> <size>`:
/// the subject, the header length and the total length.
pub(super) fn parse_msg_line(l: &str) -> Option<(&str, usize, usize)> {
    let mut parts = l.split(' ');
    let kind = parts.next()?;
    let args: Vec<&str> = parts.collect();
    let (subject, hdr, total) = match (kind, args.as_slice()) {
        ("MSG", [s, _sid, n]) | ("MSG", [s, _sid, _, n]) => (*s, "0", *n),
        ("HMSG", [s, _sid, h, n]) | ("HMSG", [s, _sid, _, h, n]) => (*s, *h, *n),
        _ => return None,
    };
    match (hdr.parse(), total.parse()) {
        (Ok(h), Ok(t)) if h <= t && t <= MAX_MSG && !subject.is_empty() => Some((subject, h, t)),
        _ => None,
    }
}

/// The status code of a `NATS/1.0 503` header block.
pub(super) fn parse_status(h: &[u8]) -> u16 {
    let first = h.split(|&b| b == b'\r').next().unwrap_or_default();
    std::str::from_utf8(first)
        .ok()
        .and_then(|s| s.strip_prefix("NATS/1.0"))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::nats::auth::{nkey, parse_creds};
    use crate::wire::base64;
    use std::time::Duration;

    const SEED: &str = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY";
    const PUBLIC: &str = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4";

    /// A one-connection stand-in for a server that uses NKey/JWT authentication: sends an
    /// INFO with a nonce, answers PING, and returns the CONNECT line it received.
    fn fake_server() -> (String, std::thread::JoinHandle<String>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"INFO {\"server_id\":\"x\",\"headers\":true,\"max_payload\":1048576,\"nonce\":\"n0nce-XYZ\"}\r\n")
                .unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut connect = String::new();
            r.read_line(&mut connect).unwrap();
            let mut ping = String::new();
            r.read_line(&mut ping).unwrap();
            assert_eq!(ping.trim_end(), "PING");
            s.write_all(b"PONG\r\n").unwrap();
            connect
        });
        (addr, h)
    }

    /// The `CONNECT` options a client sent, and whether its `sig` verifies as the test
    /// key's Ed25519 signature of the nonce.
    fn connect_options(line: &str) -> (Value, bool) {
        let opts = json::parse(line.trim_end().strip_prefix("CONNECT ").unwrap()).unwrap();
        let sig = opts.get("sig").and_then(Value::as_str).unwrap_or_default();
        let raw = base64::decode(&sig.replace('-', "+").replace('_', "/")).unwrap_or_default();
        let public = nkey::KeyPair::from_seed(SEED).unwrap().raw_public_key();
        let ok = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
            .verify(b"n0nce-XYZ", &raw)
            .is_ok();
        (opts, ok)
    }

    fn test_config(addr: &str) -> NatsConfig {
        NatsConfig::from_url(&format!("nats://{addr}/bkt")).unwrap()
    }

    #[test]
    fn nkey_seed_signs_the_nonce() {
        let (addr, h) = fake_server();
        let mut cfg = test_config(&addr);
        cfg.seed = Some(SEED.into());
        Conn::connect(&cfg).unwrap();
        let (opts, ok) = connect_options(&h.join().unwrap());
        assert!(ok, "the signature does not verify");
        assert_eq!(opts.get("nkey").and_then(Value::as_str), Some(PUBLIC));
        assert!(opts.get("jwt").is_none());
    }

    /// A user JWT with its seed, given directly or in a `.creds` file as `nsc` writes it.
    #[test]
    fn user_jwt_is_sent_with_the_signed_nonce() {
        let jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJzdWIiOiJVRFhVNCJ9.c2ln";
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\n\
             -----BEGIN USER NKEY SEED-----\n{SEED}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n"
        );
        let path = std::env::temp_dir().join(format!("lsrs-test-{}.creds", std::process::id()));
        std::fs::write(&path, creds).unwrap();
        let mut from_file = test_config("127.0.0.1:1");
        from_file.load_creds(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(from_file.jwt.as_deref(), Some(jwt));
        assert_eq!(from_file.seed.as_deref(), Some(SEED));

        let (addr, h) = fake_server();
        let mut cfg = test_config(&addr);
        cfg.jwt = from_file.jwt;
        cfg.seed = from_file.seed;
        Conn::connect(&cfg).unwrap();
        let (opts, ok) = connect_options(&h.join().unwrap());
        assert!(ok, "the signature does not verify");
        assert_eq!(opts.get("jwt").and_then(Value::as_str), Some(jwt));
        assert!(opts.get("nkey").is_none());

        let e = test_config("127.0.0.1:1")
            .load_creds(std::path::Path::new("/nonexistent.creds"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent.creds"), "{e}");
        assert!(parse_creds("just text").is_none());
    }

    /// A server without NKey/JWT authentication sends no nonce: a clear error.
    #[test]
    fn a_seed_against_a_server_without_nonce_is_a_clear_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let _ = s.write_all(b"INFO {\"server_id\":\"x\",\"headers\":true}\r\n");
            std::thread::sleep(Duration::from_millis(500));
        });
        let mut cfg = test_config(&addr);
        cfg.seed = Some(SEED.into());
        let e = Conn::connect(&cfg).err().unwrap().to_string();
        assert!(e.contains("no nonce"), "{e}");
    }

    #[test]
    fn names_and_tokens() {
        // Go's base64.URLEncoding of the name, padding kept.
        assert_eq!(base64::encode_url(b"ltx/0/a", true), "bHR4LzAvYQ==");
        assert_eq!(base64::encode_url(&[0xfb, 0xff], true), "-_8=");
        assert_eq!(base64::encode_url(&[0xfb, 0xff], false), "-_8");
        let a = nuid(22);
        assert_eq!(a.len(), 22);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, nuid(22));
        assert_eq!(parse_status(b"NATS/1.0 503\r\n\r\n"), 503);
        assert_eq!(parse_status(b"NATS/1.0\r\nA: b\r\n\r\n"), 0);
    }
}
