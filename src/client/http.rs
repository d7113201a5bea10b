//! What the HTTP backends share: one way to build a `ureq` agent, one retry pause, and
//! one cache of OAuth access tokens.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::wire::json::{self, Value};

/// Attempts per request before a transient failure is reported.
pub(crate) const MAX_ATTEMPTS: u32 = 10;

/// A blocking agent: statuses are answers (not errors), 30 s to connect, 120 s per read or
/// write, keep-alive, our user agent. `skip_verify` turns TLS verification off.
pub(crate) fn agent(skip_verify: bool) -> ureq::Agent {
    let mut tls = ureq::tls::TlsConfig::builder();
    if skip_verify {
        tls = tls.disable_verification(true);
    }
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .timeout_per_write(Some(Duration::from_secs(120)))
        .max_idle_connections_per_host(16)
        .allow_non_standard_methods(true)
        .user_agent(format!("litestream-rs/{}", env!("CARGO_PKG_VERSION")))
        .tls_config(tls.build())
        .build()
        .into()
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
            TokenRequest::Form { body, .. } => agent
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .send(body.as_bytes()),
            TokenRequest::Get { headers, .. } => {
                let mut r = agent.get(&url);
                for (k, v) in headers {
                    r = r.header(*k, v.as_str());
                }
                r.call()
            }
        };
        let mut resp = result.map_err(|e| fail(None, format!("no access token: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| fail(None, format!("reading the token failed: {e}")))?;
        if status != 200 {
            let answer: String = text.chars().take(300).collect();
            return Err(fail(Some(status), format!("no access token: {answer}")));
        }
        let doc = json::parse(&text).map_err(|e| fail(None, format!("token answer: {e}")))?;
        let token = doc
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| fail(None, "token answer has no access_token".into()))?
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

/// A pseudo-random number below `max` (from the clock; for jitter and boundaries only).
pub(crate) fn jitter(max: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) % max.max(1)
}

/// Sleeps before retry number `attempt` (1-based): capped exponential backoff, 200 ms to
/// 10 s, with half of it random so clients do not retry in step.
pub(crate) fn backoff(attempt: u32) {
    let delay = (100u64 << attempt.min(7)).min(10_000);
    std::thread::sleep(Duration::from_millis(delay / 2 + jitter(delay / 2)));
}

/// A stand-in HTTP server on 127.0.0.1 for the unit tests of token exchanges: each
/// request (method + path, lower-cased headers, body) goes to a handler that returns the
/// status line and a body; every request is also recorded.
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
        pub body: String,
    }

    pub(crate) struct Server {
        /// `http://127.0.0.1:PORT`.
        pub url: String,
        pub seen: Arc<Mutex<Vec<Request>>>,
    }

    type Handler = dyn Fn(&Request) -> (&'static str, String) + Send + 'static;

    impl Server {
        /// Serves until the test process ends; answers `handler(request)` as JSON/XML text
        /// with `connection: close`.
        pub(crate) fn start(handler: Box<Handler>) -> Server {
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
                    };
                    let (status, answer) = handler(&req);
                    log.lock().unwrap().push(req);
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                }
            });
            Server { url, seen }
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

#[cfg(test)]
mod tests {
    #[test]
    fn jitter_stays_below_its_bound() {
        for max in [1, 2, 7, 1000] {
            assert!(super::jitter(max) < max);
        }
        assert_eq!(super::jitter(0), 0);
    }
}
