//! The client side of the control socket, for our `list`, `info`, `register`,
//! `unregister`, `start`, `stop` and `sync`: one request, the answer's JSON, and
//! Litestream's error texts.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::http;
use crate::error::{Error, Result};
use crate::wire::json::{self, Value};

/// Sends `method target` with `body` to the daemon at `socket` and returns the answer's
/// JSON; a non-200 answer is an error `"<what> failed: <the daemon's error>"`.
pub(crate) fn call(
    socket: &Path,
    timeout: Duration,
    what: &str,
    method: &str,
    target: &str,
    body: &str,
) -> Result<Value> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        Error::io(
            format!(
                "failed to connect to control socket {} (is `litestream replicate` running with `socket: {{enabled: true}}`?)",
                socket.display()
            ),
            e,
        )
    })?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let resp = http::exchange(&mut s, method, target, body)?;
    let parsed = json::parse(&resp.body);
    if resp.status != 200 {
        let msg = parsed
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(String::from))
            .unwrap_or_else(|| resp.body.trim().to_string());
        return Err(Error::State(format!("{what} failed: {msg}")));
    }
    parsed.map_err(|e| Error::Invalid(format!("{what}: failed to parse response: {e}")))
}

/// A string field of an answer ("" when absent).
pub(crate) fn str_field(v: &Value, name: &str) -> String {
    v.get(name)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// A number field of an answer (0 when absent).
pub(crate) fn u64_field(v: &Value, name: &str) -> u64 {
    v.get(name).and_then(Value::as_u64).unwrap_or(0)
}
