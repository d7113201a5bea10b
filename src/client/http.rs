//! What the HTTP backends share: one way to build a `ureq` agent, to send a request with
//! its body, to read an answer whole, and one cache of OAuth access tokens. Retrying is
//! the `retry` module's.

use std::fs::File;
use std::io::{Cursor, Read};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::retry;
use crate::durable::ReadAt;
use crate::error::{Error, Result};
use crate::wire::json::{self, Value};

/// A blocking agent: statuses are answers (not errors), 30 s to connect, 120 s per read or
/// write, keep-alive, our user agent; TLS trusts the roots of the `tls` module, or (with
/// `skip_verify`) anything.
pub(crate) fn agent(skip_verify: bool) -> Result<ureq::Agent> {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .timeout_per_write(Some(Duration::from_secs(120)))
        .max_idle_connections_per_host(16)
        // Every pooled connection keeps its buffers (128 KiB each by default): responses
        // here are small and bodies stream, so 64 KiB each way is plenty.
        .input_buffer_size(64 << 10)
        .output_buffer_size(64 << 10)
        .allow_non_standard_methods(true)
        .user_agent(format!("litestream-rs/{}", env!("CARGO_PKG_VERSION")));
    #[cfg(feature = "tls")]
    let config = {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let mut tls = TlsConfig::builder();
        if skip_verify {
            log::warn!(
                "TLS certificate verification is off (skip-verify): any server can pose as the replica's; trust its CA with SSL_CERT_FILE or AWS_CA_BUNDLE instead"
            );
            tls = tls.disable_verification(true);
        } else {
            // One converted set per process, shared by every agent (a hundred databases
            // with their own clients must not hold a hundred copies of the CA bundle).
            static SHARED: std::sync::OnceLock<RootCerts> = std::sync::OnceLock::new();
            let roots = match SHARED.get() {
                Some(r) => r.clone(),
                None => {
                    let r = match super::tls::roots()? {
                        super::tls::Roots::Certs(certs) => {
                            RootCerts::Specific(std::sync::Arc::new(
                                certs
                                    .iter()
                                    .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                                    .collect(),
                            ))
                        }
                        #[cfg(feature = "webpki-roots")]
                        super::tls::Roots::Mozilla => RootCerts::WebPki,
                    };
                    SHARED.get_or_init(|| r).clone()
                }
            };
            tls = tls.root_certs(roots);
        }
        config.tls_config(tls.build())
    };
    #[cfg(not(feature = "tls"))]
    let _ = skip_verify;
    Ok(config.build().into())
}

/// The error of a request that got no answer: a TLS refusal (an untrusted certificate, or
/// a build without TLS asked for https://) is final and says what to do; anything else
/// (a refused or broken connection) is transient.
pub(crate) fn failed(
    backend: &'static str,
    op: &'static str,
    target: impl Into<String>,
    message: String,
    e: &ureq::Error,
) -> Error {
    let tls = match e {
        ureq::Error::Tls(_) => true,
        #[cfg(feature = "tls")]
        ureq::Error::Rustls(_) => true,
        #[cfg(feature = "tls")]
        ureq::Error::Io(io) => io.get_ref().is_some_and(|i| i.is::<rustls::Error>()),
        _ => false,
    };
    if !tls {
        return retry::transport(backend, op, target, message);
    }
    let hint = if cfg!(feature = "tls") {
        "the server's certificate is not trusted: trust its CA with SSL_CERT_FILE (or install it in the system bundle), or set skip-verify"
    } else {
        "this build has no TLS: build with the `tls` cargo feature, or use an http:// endpoint"
    };
    Error::Backend {
        backend,
        op,
        target: target.into(),
        status: None,
        code: "TLS".into(),
        message: format!("{message} ({hint})"),
    }
}

/// A request body. A file is streamed with positioned reads from its start, so every
/// attempt of a retried request sends it whole again.
#[derive(Clone, Copy)]
pub(crate) enum Body<'a> {
    /// No body (GET, HEAD, DELETE).
    Empty,
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// A whole file.
    File(&'a File),
    /// `len` bytes of a file from `offset` (a multipart part, or a PUT of a file region):
    /// streamed, never held in memory.
    Part {
        file: &'a File,
        offset: u64,
        len: u64,
    },
    /// A file between two byte strings (a `multipart/related` upload).
    Framed {
        head: &'a [u8],
        file: &'a File,
        tail: &'a [u8],
    },
}

impl Body<'_> {
    /// The length in bytes.
    pub(crate) fn len(&self) -> Result<u64> {
        let file_len = |f: &File| {
            f.metadata()
                .map(|m| m.len())
                .map_err(|e| Error::io("stat the file to upload", e))
        };
        Ok(match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File(f) => file_len(f)?,
            Body::Part { len, .. } => *len,
            Body::Framed { head, file, tail } => {
                head.len() as u64 + file_len(file)? + tail.len() as u64
            }
        })
    }
}

/// Sends one request and returns the answer once its status line and headers arrived
/// (statuses are answers, not errors). A file body goes with its `content-length` unless
/// `headers` has one.
pub(crate) fn exchange<'h>(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
    body: Body<'_>,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let mut b = ureq::http::Request::builder().method(method).uri(url);
    let mut has_length = false;
    for (k, v) in headers {
        has_length |= k.eq_ignore_ascii_case("content-length");
        b = b.header(k, v);
    }
    let streamed = matches!(
        body,
        Body::File(_) | Body::Part { .. } | Body::Framed { .. }
    );
    if streamed && !has_length {
        let len = body
            .len()
            .map_err(|e| ureq::Error::Io(std::io::Error::other(e.to_string())))?;
        b = b.header("content-length", len.to_string());
    }
    match body {
        Body::Empty => agent.run(b.body(ureq::SendBody::none())?),
        Body::Bytes(bytes) => agent.run(b.body(bytes)?),
        Body::File(f) => {
            let mut r = ReadAt::new(f);
            agent.run(b.body(ureq::SendBody::from_reader(&mut r))?)
        }
        Body::Part { file, offset, len } => {
            let mut r = ReadAt::at(file, offset).take(len);
            agent.run(b.body(ureq::SendBody::from_reader(&mut r))?)
        }
        Body::Framed { head, file, tail } => {
            let mut r = Cursor::new(head)
                .chain(ReadAt::new(file))
                .chain(Cursor::new(tail));
            agent.run(b.body(ureq::SendBody::from_reader(&mut r))?)
        }
    }
}

/// One GET of `url` (no retries), its body discarded; the answer's status.
pub(crate) fn get_status(url: &str) -> Result<u16> {
    let agent = agent(false)?;
    let resp = exchange(&agent, "GET", url, [], Body::Empty).map_err(|e| {
        let shown = crate::url::redact(url);
        failed(
            "http",
            "GET",
            shown.clone(),
            e.to_string().replace(url, &shown),
            &e,
        )
    })?;
    let status = resp.status().as_u16();
    let _ = std::io::copy(&mut resp.into_body().into_reader(), &mut std::io::sink());
    Ok(status)
}

/// The `Range` header value for bytes `[offset, offset + len)` (`len == None`: to the
/// end); None for the whole object. `len` must not be `Some(0)`.
pub(crate) fn range(offset: u64, len: Option<u64>) -> Option<String> {
    match len {
        Some(n) => Some(format!("bytes={offset}-{}", offset + n - 1)),
        None if offset > 0 => Some(format!("bytes={offset}-")),
        None => None,
    }
}

/// A ranged GET that does not start at byte 0 answered a success other than `206` (`200`:
/// the whole object): the server ignored the range, and its bytes are not the ones asked
/// for. An error, never transient (a server that lies about sizes would otherwise be read
/// again and again).
pub(crate) fn check_ranged(
    status: u16,
    offset: u64,
    backend: &'static str,
    op: &'static str,
    target: impl FnOnce() -> String,
) -> Result<()> {
    if status != 206 && offset > 0 {
        return Err(Error::Backend {
            backend,
            op,
            target: target(),
            status: Some(status),
            code: String::new(),
            message: format!(
                "the server ignored the Range header (asked from byte {offset}, got HTTP {status} instead of 206): it does not serve byte ranges, or the object is smaller than its listing said"
            ),
        });
    }
    Ok(())
}

/// An answer read to its end.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Largest answer read whole (listings, errors, tokens; LTX files are streamed): a
/// hostile or broken server cannot make a client hold more.
const MAX_ANSWER: u64 = 32 << 20;

impl Answer {
    /// Reads `resp` whole, as part of the attempt that got it: a body that breaks off is a
    /// transient [`retry::cut_off`] naming `backend`, `op` and `target`.
    pub(crate) fn read(
        resp: ureq::http::Response<ureq::Body>,
        backend: &'static str,
        op: &'static str,
        target: &str,
    ) -> Result<Answer> {
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let mut body = Vec::new();
        resp.into_body()
            .into_reader()
            .take(MAX_ANSWER + 1)
            .read_to_end(&mut body)
            .map_err(|e| retry::cut_off(backend, op, target, status, &e))?;
        if body.len() as u64 > MAX_ANSWER {
            return Err(Error::Backend {
                backend,
                op,
                target: target.to_string(),
                status: Some(status),
                code: "AnswerTooLarge".into(),
                message: format!(
                    "the server's answer is over {} MiB; listings and errors are never that \
                     large, so this is not the expected server (check the endpoint)",
                    MAX_ANSWER >> 20
                ),
            });
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// The first value of header `name` (any case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True for 2xx.
    pub(crate) fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub(crate) fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

/// How to ask for an OAuth access token.
pub(crate) enum TokenRequest {
    /// A form POST to a token endpoint (refresh token, JWT assertion, client secret).
    Form { url: String, body: String },
    /// A GET with headers (a metadata or managed-identity service).
    Get {
        url: String,
        headers: Vec<(&'static str, String)>,
    },
}

/// Access tokens, cached until `margin` seconds before they expire (at least `floor`).
pub(crate) struct TokenCache {
    cached: Mutex<Option<(String, Instant)>>,
    margin: u64,
    floor: u64,
}

impl TokenCache {
    pub(crate) fn new(margin: u64, floor: u64) -> TokenCache {
        TokenCache {
            cached: Mutex::new(None),
            margin,
            floor,
        }
    }

    /// The cached token, else a new one asked for with `request` through `agent`. Errors
    /// name `backend`, the endpoint (without its query) and `who` asked.
    pub(crate) fn get(
        &self,
        agent: &ureq::Agent,
        backend: &'static str,
        who: &str,
        request: impl FnOnce() -> Result<TokenRequest>,
    ) -> Result<String> {
        let mut g = self
            .cached
            .lock()
            .map_err(|_| Error::State(format!("{backend} token lock poisoned")))?;
        if let Some((t, until)) = g.as_ref() {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        let req = request()?;
        let url = match &req {
            TokenRequest::Form { url, .. } | TokenRequest::Get { url, .. } => url.clone(),
        };
        let endpoint = url.split('?').next().unwrap_or(&url).to_string();
        let fail = |status: Option<u16>, m: String| Error::Backend {
            backend,
            op: "token",
            target: endpoint.clone(),
            status,
            code: String::new(),
            message: format!("{who}: {m}"),
        };
        let result = match &req {
            TokenRequest::Form { body, .. } => exchange(
                agent,
                "POST",
                &url,
                [("content-type", "application/x-www-form-urlencoded")],
                Body::Bytes(body.as_bytes()),
            ),
            TokenRequest::Get { headers, .. } => exchange(
                agent,
                "GET",
                &url,
                headers.iter().map(|(k, v)| (*k, v.as_str())),
                Body::Empty,
            ),
        };
        let resp = result.map_err(|e| fail(None, format!("no access token: {e}")))?;
        let answer = Answer::read(resp, backend, "token", &format!("{endpoint} ({who})"))?;
        let (status, text) = (answer.status, answer.text());
        if status != 200 {
            let answer: String = text.chars().take(300).collect();
            return Err(fail(Some(status), format!("no access token: {answer}")));
        }
        // A complete answer that makes no sense is final, not a network failure.
        let doc =
            json::parse(&text).map_err(|e| fail(Some(status), format!("token answer: {e}")))?;
        let token = doc
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| fail(Some(status), "token answer has no access_token".into()))?
            .to_string();
        // A number from OAuth endpoints, a string from some managed-identity services.
        let secs = doc
            .get("expires_in")
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .unwrap_or(300);
        let life = secs.saturating_sub(self.margin).max(self.floor);
        *g = Some((token.clone(), Instant::now() + Duration::from_secs(life)));
        Ok(token)
    }
}

/// A stand-in HTTP server on 127.0.0.1 for unit tests (token exchanges, retries): each
/// request (method + path, lower-cased headers, body) goes to a handler that returns the
/// status line and a body, or a [`stand_in::Reply`] that can also break off mid-body;
/// every request is also recorded.
#[cfg(test)]
pub(crate) mod stand_in {
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::{Arc, Mutex};

    /// One request as the stand-in saw it.
    #[derive(Clone, Debug)]
    pub(crate) struct Request {
        /// `"POST /token?x=y"`: method and target.
        pub line: String,
        pub headers: HashMap<String, String>,
        /// The body as text (invalid UTF-8 replaced).
        pub body: String,
        /// The body's length in bytes.
        pub size: usize,
    }

    pub(crate) struct Server {
        /// `http://127.0.0.1:PORT`.
        pub url: String,
        pub seen: Arc<Mutex<Vec<Request>>>,
    }

    type Handler = dyn Fn(&Request) -> (&'static str, String) + Send + 'static;
    type ReplyHandler = dyn Fn(&Request) -> Reply + Send + 'static;

    /// An answer: a status line and a body, sent whole or cut off.
    pub(crate) struct Reply {
        pub status: &'static str,
        pub body: String,
        /// Announce the whole body's length but close the connection after this many bytes.
        pub cut_after: Option<usize>,
    }

    impl Reply {
        pub(crate) fn new(status: &'static str, body: impl Into<String>) -> Reply {
            Reply {
                status,
                body: body.into(),
                cut_after: None,
            }
        }

        /// The same answer, broken off after `n` bytes of its body.
        pub(crate) fn cut_after(self, n: usize) -> Reply {
            Reply {
                cut_after: Some(n),
                ..self
            }
        }
    }

    impl Server {
        /// Serves until the test process ends; answers `handler(request)` as JSON/XML text
        /// with `connection: close`.
        pub(crate) fn start(handler: Box<Handler>) -> Server {
            Server::start_with(Box::new(move |req| {
                let (status, body) = handler(req);
                Reply::new(status, body)
            }))
        }

        /// Like [`Server::start`], with full control of each answer.
        pub(crate) fn start_with(handler: Box<ReplyHandler>) -> Server {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}", l.local_addr().unwrap());
            let seen = Arc::new(Mutex::new(Vec::new()));
            let log = seen.clone();
            std::thread::spawn(move || {
                for conn in l.incoming() {
                    let Ok(mut conn) = conn else { return };
                    let Ok(read_half) = conn.try_clone() else {
                        continue;
                    };
                    let mut r = BufReader::new(read_half);
                    let mut first = String::new();
                    if r.read_line(&mut first).is_err() {
                        continue;
                    }
                    let mut headers = HashMap::new();
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).is_err() {
                            break;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                        }
                    }
                    let len = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0usize);
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).is_err() {
                        continue;
                    }
                    let req = Request {
                        line: first.trim_end().trim_end_matches(" HTTP/1.1").to_string(),
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                        size: body.len(),
                    };
                    let reply = handler(&req);
                    log.lock().unwrap().push(req);
                    let head = format!(
                        "HTTP/1.1 {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        reply.status,
                        reply.body.len()
                    );
                    let body = reply.body.as_bytes();
                    let sent = &body[..reply.cut_after.unwrap_or(body.len()).min(body.len())];
                    let _ = conn
                        .write_all(head.as_bytes())
                        .and_then(|()| conn.write_all(sent))
                        .and_then(|()| conn.flush());
                    // Dropping the connection here ends a cut-off answer early.
                }
            });
            Server { url, seen }
        }

        /// A server that answers every request `status` with `body`, the first time cut
        /// off half-way through the body (a proxy dropping the connection).
        pub(crate) fn cut_once(status: &'static str, body: &'static str) -> Server {
            let n = std::sync::atomic::AtomicUsize::new(0);
            Server::start_with(Box::new(move |_| {
                let reply = Reply::new(status, body);
                match n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                    0 => reply.cut_after(body.len() / 2),
                    _ => reply,
                }
            }))
        }

        /// The requests seen so far.
        pub(crate) fn requests(&self) -> Vec<Request> {
            self.seen.lock().unwrap().clone()
        }
    }

    /// The value of `name` in a form or query string (still percent-encoded).
    pub(crate) fn form_value<'a>(form: &'a str, name: &str) -> Option<&'a str> {
        form.split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }
}
