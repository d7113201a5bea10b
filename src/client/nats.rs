//! NATS JetStream Object Store (`nats://[USER:PASS@]HOST[:PORT]/BUCKET`), as Litestream's
//! `nats` replica: objects `[PATH/]ltx/<level>/<min>-<max>.ltx` in the object store
//! `BUCKET` (stream `OBJ_<BUCKET>`), with the LTX header time in the object header
//! `Litestream-Timestamp`.
//!
//! The NATS protocol is text over one TCP connection, spoken here by hand: `CONNECT`,
//! `PUB`/`HPUB` with a reply inbox, `MSG`/`HMSG`, `PING`/`PONG`. The object store is the
//! layout every NATS client shares: chunks on `$O.<bucket>.C.<nuid>`, one metadata message
//! per object on `$O.<bucket>.M.<base64::encode_url(name)>` (JSON, rolled up so only the newest
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
//! for it, trusting `root_cas` (else the Mozilla roots), with an optional client
//! certificate.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::{retry, FileInfo, ReadAt, ReplicaClient};
use crate::error::{Error, Result};
use crate::ltx::{self, Txid};
use crate::wire::base64;
use crate::wire::json::{self, quote, Value};

const KIND: &str = "nats";
/// Chunk size of uploads (the NATS clients' default).
const CHUNK: usize = 128 * 1024;
/// Most bytes of one protocol message accepted from the server.
const MAX_MSG: usize = 64 << 20;

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
    /// PEM files of the certificate authorities to trust (default: the Mozilla roots).
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
        let u = crate::url::ReplicaUrl::parse(url)?;
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

impl NatsConfig {
    /// Reads a NATS `.creds` file (a user JWT and its NKey seed, as `nsc` writes them)
    /// into `jwt` and `seed`.
    pub fn load_creds(&mut self, path: &std::path::Path) -> Result<()> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("read nats creds {}", path.display()), e))?;
        let (jwt, seed) = parse_creds(&text).ok_or_else(|| {
            Error::Invalid(format!(
                "nats creds {}: expected a \"NATS USER JWT\" and a \"USER NKEY SEED\" block",
                path.display()
            ))
        })?;
        nkey::KeyPair::from_seed(&seed)
            .map_err(|e| Error::Invalid(format!("nats creds {}: {e}", path.display())))?;
        self.jwt = Some(jwt);
        self.seed = Some(seed);
        Ok(())
    }
}

/// The JWT and the seed of a `.creds` file: the first line inside each
/// `-----BEGIN ...-----` / `------END ...------` block.
fn parse_creds(text: &str) -> Option<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(l) = lines.next() {
        if l.starts_with("---") && l.contains("BEGIN") {
            let body = lines.by_ref().find(|l| !l.is_empty())?;
            blocks.push((l.to_string(), body.to_string()));
        }
    }
    let jwt = blocks.iter().find(|(h, _)| h.contains("JWT"))?.1.clone();
    let seed = blocks.iter().find(|(h, _)| h.contains("SEED"))?.1.clone();
    Some((jwt, seed))
}

/// NKeys: Ed25519 keys written in base32 with a type prefix and a CRC-16 (the NATS
/// `nkeys` encoding).
pub(crate) mod nkey {
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    const PREFIX_SEED: u8 = 18 << 3;
    const PREFIX_USER: u8 = 20 << 3;
    const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

    /// CRC-16/XMODEM, as nkeys checks its encodings.
    fn crc16(data: &[u8]) -> u16 {
        let mut crc = 0u16;
        for &b in data {
            crc ^= (b as u16) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    fn b32_encode(data: &[u8]) -> String {
        let mut out = String::new();
        let (mut acc, mut bits) = (0u32, 0);
        for &b in data {
            acc = acc << 8 | b as u32;
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                out.push(B32[(acc >> bits) as usize & 31] as char);
            }
        }
        if bits > 0 {
            out.push(B32[(acc << (5 - bits)) as usize & 31] as char);
        }
        out
    }

    fn b32_decode(s: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in s.bytes() {
            let v = B32.iter().position(|&b| b == c)? as u32;
            acc = (acc << 5 | v) & 0xffff;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        Some(out)
    }

    /// A user key pair from its seed.
    pub(crate) struct KeyPair {
        pair: Ed25519KeyPair,
    }

    impl std::fmt::Debug for KeyPair {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "KeyPair({})", self.public_key())
        }
    }

    impl KeyPair {
        /// Decodes a user seed (`SU...`); the error says what is wrong, never the seed.
        pub(crate) fn from_seed(seed: &str) -> Result<KeyPair, String> {
            let raw = b32_decode(seed.trim()).ok_or("the nkey seed is not base32")?;
            if raw.len() != 36 {
                return Err("the nkey seed has the wrong length".into());
            }
            let (body, sum) = raw.split_at(34);
            if crc16(body) != u16::from_le_bytes([sum[0], sum[1]]) {
                return Err("the nkey seed's checksum does not match".into());
            }
            if body[0] & 0xf8 != PREFIX_SEED {
                return Err("not an nkey seed (it must start with S)".into());
            }
            let kind = (body[0] & 7) << 5 | (body[1] & 0xf8) >> 3;
            if kind != PREFIX_USER {
                return Err("not a user nkey seed (it must start with SU)".into());
            }
            let pair = Ed25519KeyPair::from_seed_unchecked(&body[2..34])
                .map_err(|_| "the nkey seed is not a valid Ed25519 seed".to_string())?;
            Ok(KeyPair { pair })
        }

        /// The public key, `U...`.
        pub(crate) fn public_key(&self) -> String {
            let mut raw = vec![PREFIX_USER];
            raw.extend_from_slice(self.pair.public_key().as_ref());
            let sum = crc16(&raw);
            raw.extend_from_slice(&sum.to_le_bytes());
            b32_encode(&raw)
        }

        /// The 32 bytes of the Ed25519 public key.
        #[cfg(test)]
        pub(crate) fn raw_public_key(&self) -> Vec<u8> {
            self.pair.public_key().as_ref().to_vec()
        }

        /// Ed25519 signature of `msg`, base64url without padding (what `CONNECT` wants).
        pub(crate) fn sign(&self, msg: &[u8]) -> String {
            crate::wire::base64::encode_url(self.pair.sign(msg).as_ref(), false)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Seed/public pairs published by NATS (its documentation and the nats crate's
        /// tests), and a signature that verifies with the public key.
        #[test]
        fn published_seed_public_pairs() {
            for (seed, public) in [
                (
                    "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY",
                    "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4",
                ),
                (
                    "SUANQDPB2RUOE4ETUA26CNX7FUKE5ZZKFCQIIW63OX225F2CO7UEXTM7ZY",
                    "UAMMBNV2EYR65NYZZ7IAK5SIR5ODNTTERJOBOF4KJLMWI45YOXOSWULM",
                ),
            ] {
                let kp = KeyPair::from_seed(seed).unwrap();
                assert_eq!(kp.public_key(), public);
                let sig = kp.sign(b"nonce-123");
                let raw =
                    crate::wire::base64::decode(&sig.replace('-', "+").replace('_', "/")).unwrap();
                let pk = ring::signature::UnparsedPublicKey::new(
                    &ring::signature::ED25519,
                    kp.pair.public_key().as_ref().to_vec(),
                );
                assert!(pk.verify(b"nonce-123", &raw).is_ok());
            }
        }

        #[test]
        fn bad_seeds_are_refused() {
            let good = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY";
            let mut flipped = good.to_string();
            flipped.replace_range(10..11, "A");
            assert!(KeyPair::from_seed(&flipped)
                .unwrap_err()
                .contains("checksum"));
            assert!(KeyPair::from_seed("SU!!").is_err());
            assert!(KeyPair::from_seed(&good[..40]).is_err());
            // A public key is not a seed.
            assert!(
                KeyPair::from_seed("UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4")
                    .is_err()
            );
        }
    }
}

/// A replica in a NATS JetStream object store.
pub struct NatsClient {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: NatsConfig,
    conn: Mutex<Option<Conn>>,
}

impl std::fmt::Debug for NatsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsClient")
            .field("cfg", &self.inner.cfg)
            .finish()
    }
}

/// One message received.
struct Msg {
    subject: String,
    /// The status of a header block (`503` no responders, `404` ...), or 0.
    status: u16,
    data: Vec<u8>,
}

/// A live connection with its reply inbox.
struct Conn {
    io: BufReader<Stream>,
    /// `host:port` of the server, for errors.
    server: String,
    inbox: String,
    next: u64,
}

/// The connection: plain TCP, or TLS over it once the server's INFO was read.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// The TLS client settings of `cfg`: its CAs (else the Mozilla roots) and client key.
fn tls_config(cfg: &NatsConfig) -> Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: String| Error::Invalid(format!("nats tls: {what}"));
    let mut roots = rustls::RootCertStore::empty();
    if cfg.root_cas.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for p in &cfg.root_cas {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(p)
            .and_then(|it| it.collect())
            .map_err(|e| bad(format!("root CA file {}: {e}", p.display())))?;
        if certs.is_empty() {
            return Err(bad(format!(
                "root CA file {} holds no certificate",
                p.display()
            )));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| bad(format!("root CA file {}: {e}", p.display())))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(e.to_string()))?
    .with_root_certificates(roots);
    let config = match &cfg.client_cert {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect())
                .map_err(|e| bad(format!("client certificate {}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| bad(format!("client key {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(format!("client certificate: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The host part of `host:port` (brackets of an IPv6 address removed).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Why an operation failed: worth a reconnect and retry, or final.
enum Fail {
    Retry(Error),
    Final(Error),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail::Retry(Error::io("nats connection", e))
    }
}

type Op<T> = std::result::Result<T, Fail>;

/// A random token of `n` base-62 characters (object ids and inboxes).
fn nuid(n: usize) -> String {
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
    fn connect(cfg: &NatsConfig) -> Result<Conn> {
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
            c = c.upgrade(cfg)?;
        }
        let mut connect = String::from(
            "{\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"lang\":\"rust\",\"version\":\"",
        );
        connect.push_str(env!("CARGO_PKG_VERSION"));
        connect.push_str("\",\"protocol\":1");
        if let Some(u) = &cfg.username {
            connect.push_str(&format!(",\"user\":{}", quote(u)));
        }
        if let Some(p) = &cfg.password {
            connect.push_str(&format!(",\"pass\":{}", quote(p)));
        }
        if let Some(t) = &cfg.token {
            connect.push_str(&format!(",\"auth_token\":{}", quote(t)));
        }
        let nkey = match (&cfg.seed, &cfg.jwt) {
            (Some(seed), _) => Some(
                nkey::KeyPair::from_seed(seed).map_err(|e| Error::Invalid(format!("nats: {e}")))?,
            ),
            (None, Some(_)) => {
                return Err(Error::Invalid(
                    "nats: a user JWT needs its seed (`seed`, or a `creds` file)".into(),
                ))
            }
            (None, None) => None,
        };
        if let Some(kp) = &nkey {
            let nonce = info
                .as_ref()
                .and_then(|i| i.get("nonce"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "{} sent no nonce to sign: it does not use NKey or JWT authentication (use username/password or token)",
                        target()
                    ))
                })?;
            let sig = kp.sign(nonce.as_bytes());
            match &cfg.jwt {
                Some(jwt) => connect.push_str(&format!(",\"jwt\":{}", quote(jwt))),
                None => connect.push_str(&format!(",\"nkey\":{}", quote(&kp.public_key()))),
            }
            connect.push_str(&format!(",\"sig\":{}", quote(&sig)));
        }
        connect.push('}');
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
                let who = match (&cfg.username, &cfg.jwt, &nkey) {
                    (Some(u), _, _) => format!(" as user {u:?}"),
                    (None, Some(_), _) => " with the user JWT".into(),
                    (None, None, Some(kp)) => format!(" as nkey {}", kp.public_key()),
                    _ if cfg.token.is_some() => " with a token".into(),
                    _ => " without credentials".into(),
                };
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

    /// Starts TLS on the connection, right after the server's INFO.
    fn upgrade(self, cfg: &NatsConfig) -> Result<Conn> {
        if !self.io.buffer().is_empty() {
            return Err(Error::State(format!(
                "nats server {} sent more than INFO before TLS started",
                cfg.addr
            )));
        }
        let Stream::Plain(tcp) = self.io.into_inner() else {
            return Err(Error::State("nats: TLS started twice".into()));
        };
        let name = rustls_pki_types::ServerName::try_from(host_of(&cfg.addr).to_string())
            .map_err(|e| Error::Invalid(format!("nats tls: server name {}: {e}", cfg.addr)))?;
        let session = rustls::ClientConnection::new(tls_config(cfg)?, name)
            .map_err(|e| Error::Invalid(format!("nats tls: {e}")))?;
        Ok(Conn {
            io: BufReader::with_capacity(
                256 << 10,
                Stream::Tls(Box::new(rustls::StreamOwned::new(session, tcp))),
            ),
            server: self.server,
            inbox: self.inbox,
            next: self.next,
        })
    }

    fn read_line(&mut self, line: &mut String) -> io::Result<()> {
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
    fn request(&mut self, subject: &str, headers: &[(&str, &str)], data: &[u8]) -> Op<Msg> {
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
                    return Err(Fail::Final(Error::State(format!(
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
    fn protocol(&self, line: &str) -> Error {
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
    fn read_msg(&mut self) -> Op<Msg> {
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
                    return Err(Fail::Retry(Error::Backend {
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
                        return Err(Fail::Retry(self.protocol(l)));
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
                _ => return Err(Fail::Retry(self.protocol(l))),
            }
        }
    }
}

/// `MSG <subject> <sid> [reply] <size>` or `HMSG <subject> <sid> [reply] <hdr> <size>`:
/// the subject, the header length and the total length.
fn parse_msg_line(l: &str) -> Option<(&str, usize, usize)> {
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
fn parse_status(h: &[u8]) -> u16 {
    let first = h.split(|&b| b == b'\r').next().unwrap_or_default();
    std::str::from_utf8(first)
        .ok()
        .and_then(|s| s.strip_prefix("NATS/1.0"))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The metadata of one object.
#[derive(Debug, Clone)]
struct ObjectInfo {
    name: String,
    nuid: String,
    size: u64,
    chunks: u64,
    deleted: bool,
    timestamp: Option<SystemTime>,
    /// Message time on the server (fallback timestamp).
    time: Option<SystemTime>,
}

/// Parses a JetStream API answer, turning `{"error":...}` into an error.
fn api_json(subject: &str, m: &Msg) -> Op<Value> {
    let text = std::str::from_utf8(&m.data).map_err(|_| {
        Fail::Final(Error::State(format!(
            "nats: {subject}: answer is not UTF-8"
        )))
    })?;
    let v = json::parse(text)
        .map_err(|e| Fail::Final(Error::State(format!("nats: {subject}: {e}"))))?;
    if let Some(err) = v.get("error") {
        let code = err.get("code").and_then(Value::as_u64).unwrap_or(0);
        let err_code = err.get("err_code").and_then(Value::as_u64).unwrap_or(0);
        let desc = err
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        return Err(Fail::Final(Error::Backend {
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
fn is_no_message(e: &Fail) -> bool {
    matches!(e, Fail::Final(Error::Backend { code, .. }) if code == "10037")
}

/// JetStream's "stream not found".
fn is_no_stream(e: &Fail) -> bool {
    matches!(e, Fail::Final(Error::Backend { code, .. }) if code == "10059")
}

impl Inner {
    fn stream(&self) -> String {
        format!("OBJ_{}", self.cfg.bucket)
    }

    fn meta_subject(&self, name: &str) -> String {
        format!(
            "$O.{}.M.{}",
            self.cfg.bucket,
            base64::encode_url(name.as_bytes(), true)
        )
    }

    fn chunk_subject(&self, nuid: &str) -> String {
        format!("$O.{}.C.{nuid}", self.cfg.bucket)
    }

    /// Runs `f` on a connection, retrying transient failures (the `retry` policy); a
    /// failure of the connection itself drops it, so the next attempt reconnects.
    fn with_conn<T>(&self, what: &str, mut f: impl FnMut(&mut Conn) -> Op<T>) -> Result<T> {
        retry::run(KIND, what, |_| self.attempt(&mut f))
    }

    /// One attempt of `f`, connecting first if there is no connection.
    fn attempt<T>(&self, f: &mut impl FnMut(&mut Conn) -> Op<T>) -> Result<T> {
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
            Err(Fail::Final(e)) => Err(e),
            Err(Fail::Retry(e)) => {
                *guard = None;
                Err(e)
            }
        }
    }

    /// `STREAM.MSG.GET` with the request `req`; `None` when there is no such message.
    fn msg_get(conn: &mut Conn, stream: &str, req: &str) -> Op<Option<(Value, Vec<u8>)>> {
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
                Fail::Final(Error::State(format!("nats: {subject}: bad base64 data")))
            })?,
            None => Vec::new(),
        };
        Ok(Some((msg, data)))
    }

    fn parse_info(&self, msg: &Value, data: &[u8]) -> Option<ObjectInfo> {
        parse_object_info(msg, data)
    }

    /// The metadata of `name`, deleted or not; `None` if it never existed.
    fn info(&self, conn: &mut Conn, name: &str) -> Op<Option<ObjectInfo>> {
        let req = format!("{{\"last_by_subj\":{}}}", quote(&self.meta_subject(name)));
        match Inner::msg_get(conn, &self.stream(), &req) {
            Ok(Some((msg, data))) => Ok(self.parse_info(&msg, &data)),
            Ok(None) => Ok(None),
            Err(e) if is_no_stream(&e) => Err(Fail::Final(self.no_bucket())),
            Err(e) => Err(e),
        }
    }

    fn no_bucket(&self) -> Error {
        Error::NotFound {
            backend: KIND,
            target: format!(
                "object store bucket {:?} on {} (Litestream does not create it: `nats object add {}`, or NatsClient::create_bucket)",
                self.cfg.bucket, self.cfg.addr, self.cfg.bucket
            ),
        }
    }

    fn purge(conn: &mut Conn, stream: &str, filter: &str) -> Op<()> {
        let subject = format!("$JS.API.STREAM.PURGE.{stream}");
        let m = conn.request(
            &subject,
            &[],
            format!("{{\"filter\":{}}}", quote(filter)).as_bytes(),
        )?;
        api_json(&subject, &m).map(|_| ())
    }

    /// Every live object whose name starts with `prefix`.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let filter = format!("$O.{}.M.>", self.cfg.bucket);
        self.with_conn("list", |conn| {
            let mut out = Vec::new();
            let mut seq = 1u64;
            loop {
                let req = format!("{{\"seq\":{seq},\"next_by_subj\":{}}}", quote(&filter));
                let got = match Inner::msg_get(conn, &self.stream(), &req) {
                    Ok(g) => g,
                    Err(e) if is_no_stream(&e) => return Err(Fail::Final(self.no_bucket())),
                    Err(e) => return Err(e),
                };
                let Some((msg, data)) = got else { break };
                let s = msg.get("seq").and_then(Value::as_u64).unwrap_or(seq);
                seq = s.max(seq) + 1;
                if let Some(info) = self.parse_info(&msg, &data) {
                    if !info.deleted && info.name.starts_with(prefix) {
                        out.push(info);
                    }
                }
            }
            Ok(out)
        })
    }

    fn object_name(&self, level: u8, min: Txid, max: Txid) -> String {
        let mut p = self.cfg.path.trim_matches('/').to_string();
        if !p.is_empty() {
            p.push('/');
        }
        format!("{p}ltx/{level}/{}", ltx::file_name(min, max))
    }
}

/// An object's metadata message (`ObjectInfo` JSON); `None` if it is not one.
fn parse_object_info(msg: &Value, data: &[u8]) -> Option<ObjectInfo> {
    let v = json::parse(std::str::from_utf8(data).ok()?).ok()?;
    let timestamp = v
        .get("headers")
        .and_then(|h| h.get("Litestream-Timestamp"))
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .and_then(|s| crate::time::parse_rfc3339(s).ok());
    Some(ObjectInfo {
        name: v.get("name")?.as_str()?.to_string(),
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
                Err(Fail::Final(Error::Backend { code, .. })) if code == "10058" => Ok(()),
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
        let prefix = i.object_name(level, Txid(1), Txid(1));
        let prefix = &prefix[..prefix.rfind('/').map(|p| p + 1).unwrap_or(0)];
        let mut out: Vec<FileInfo> = i
            .list(prefix)?
            .into_iter()
            .filter_map(|o| {
                let (min, max) = ltx::parse_file_name(&o.name[prefix.len()..])?;
                (min >= seek).then(|| FileInfo {
                    level,
                    min_txid: min,
                    max_txid: max,
                    size: o.size,
                    created_at: o.timestamp.or(o.time).unwrap_or(SystemTime::UNIX_EPOCH),
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
        let name = i.object_name(level, min, max);
        let info = i.with_conn("get", |conn| i.info(conn, &name))?;
        let info = match info {
            Some(o) if !o.deleted => o,
            _ => {
                return Err(Error::NotFound {
                    backend: KIND,
                    target: format!("{}/{name}", i.cfg.bucket),
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
            name,
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
        let name = i.object_name(level, min, max);
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
            let old = i.info(conn, &name)?;
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
                            .map_err(|e| Fail::Final(Error::io("read ltx upload", e)))?;
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
                Err(e @ Fail::Retry(_)) => {
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
                return Err(Fail::Final(Error::State(format!(
                    "ltx upload changed size while uploading ({size} then {total} bytes)"
                ))));
            }
            let digest: [u8; 32] = sha2::Digest::finalize(sha).into();
            let meta = format!(
                "{{\"name\":{},\"headers\":{{\"Litestream-Timestamp\":[{}]}},\"options\":{{\"max_chunk_size\":{CHUNK}}},\"bucket\":{},\"nuid\":{},\"size\":{total},\"mtime\":\"0001-01-01T00:00:00Z\",\"chunks\":{chunks},\"digest\":{}}}",
                quote(&name),
                quote(&crate::time::format_rfc3339(created)),
                quote(&i.cfg.bucket),
                quote(&nuid),
                quote(&format!("SHA-256={}", base64::encode_url(&digest, true)))
            );
            let meta_subject = i.meta_subject(&name);
            let m = conn.request(&meta_subject, &[("Nats-Rollup", "sub")], meta.as_bytes())?;
            if let Err(e) = api_json(&meta_subject, &m) {
                let _ = Inner::purge(conn, &i.stream(), &chunk_subject);
                return Err(e);
            }
            if let Some(o) = old.filter(|o| !o.deleted && o.nuid != nuid && !o.nuid.is_empty()) {
                // The object is written; old chunks left behind only cost space.
                if let Err(Fail::Retry(e) | Fail::Final(e)) =
                    Inner::purge(conn, &i.stream(), &i.chunk_subject(&o.nuid))
                {
                    log::warn!("nats: {name}: could not purge the replaced object's chunks: {e}");
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
        Ok(FileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size,
            created_at: created,
        })
    }

    fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        let i = &self.inner;
        for f in files {
            let name = i.object_name(f.level, f.min_txid, f.max_txid);
            i.with_conn("delete", |conn| {
                let Some(o) = i.info(conn, &name)? else {
                    return Ok(());
                };
                if o.deleted {
                    return Ok(());
                }
                let meta = format!(
                    "{{\"name\":{},\"bucket\":{},\"nuid\":{},\"size\":0,\"mtime\":\"0001-01-01T00:00:00Z\",\"chunks\":0,\"deleted\":true}}",
                    quote(&name),
                    quote(&i.cfg.bucket),
                    quote(&o.nuid)
                );
                let meta_subject = i.meta_subject(&name);
                let m = conn.request(&meta_subject, &[("Nats-Rollup", "sub")], meta.as_bytes())?;
                api_json(&meta_subject, &m)?;
                Inner::purge(conn, &i.stream(), &i.chunk_subject(&o.nuid))
            })?;
        }
        Ok(())
    }

    fn delete_all(&self) -> Result<()> {
        let i = &self.inner;
        let mut p = i.cfg.path.trim_matches('/').to_string();
        if !p.is_empty() {
            p.push('/');
        }
        p.push_str("ltx/");
        let files: Vec<FileInfo> = i
            .list(&p)?
            .into_iter()
            .filter_map(|o| {
                let rest = &o.name[p.len()..];
                let (level, file) = rest.split_once('/')?;
                let (min, max) = ltx::parse_file_name(file)?;
                Some(FileInfo {
                    level: level.parse().ok()?,
                    min_txid: min,
                    max_txid: max,
                    size: o.size,
                    created_at: SystemTime::UNIX_EPOCH,
                })
            })
            .collect();
        self.delete_ltx_files(&files)
    }
}

/// Streams an object's chunks in order, fetching each with `STREAM.MSG.GET`.
struct ChunkReader {
    inner: Arc<Inner>,
    subject: String,
    name: String,
    /// Stream sequence to search the next chunk from.
    seq: u64,
    chunks_left: u64,
    /// Object offset of the start of `buf`... after `at`: of `buf[at]`.
    pos: u64,
    skip_to: u64,
    end: u64,
    buf: Vec<u8>,
    at: usize,
}

impl ChunkReader {
    fn fetch(&mut self) -> io::Result<bool> {
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
                    self.name, self.chunks_left
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

/// Fuzz entry: the protocol line, header status, API answer and object metadata parsers
/// over arbitrary bytes.
#[cfg(fuzzing)]
pub(crate) fn fuzz(data: &[u8]) {
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
