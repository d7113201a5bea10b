//! The little HTTP/1.1 the control socket needs, both ways: one request per connection,
//! bodies by `Content-Length` (and chunked answers from the official daemon).

use std::io::{BufRead, BufReader, Read, Write};

use crate::error::{Error, Result};

/// Largest request or answer body accepted.
const MAX_BODY: usize = 16 << 20;

/// A request as the server reads it.
pub(crate) struct Request {
    pub method: String,
    /// The path without the query.
    pub path: String,
    pub query: String,
    pub body: String,
}

impl Request {
    /// A query parameter, percent-decoded.
    pub(crate) fn query(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| percent_decode(&v.replace('+', " ")))
        })
    }
}

/// An answer: a status and a JSON body.
pub(crate) struct Response {
    pub status: u16,
    pub body: String,
}

/// `%XX` escapes decoded, on bytes (a `%` not followed by two hex digits stays as it is).
fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn bad(m: impl Into<String>) -> Error {
    Error::Invalid(m.into())
}

/// Reads the header block: the first line and the headers (lower-cased names).
fn read_head(r: &mut impl BufRead) -> Result<(String, Vec<(String, String)>)> {
    let mut first = String::new();
    r.read_line(&mut first)
        .map_err(|e| Error::io("read from control socket", e))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        let n = r
            .read_line(&mut line)
            .map_err(|e| Error::io("read from control socket", e))?;
        let line = line.trim_end();
        if n == 0 || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        if headers.len() > 100 {
            return Err(bad("too many headers"));
        }
    }
    Ok((first.trim_end().to_string(), headers))
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Reads a body by `Content-Length`, chunked encoding, or (answers only) to the end.
fn read_body(r: &mut impl BufRead, h: &[(String, String)], to_eof: bool) -> Result<String> {
    let io = |e| Error::io("read from control socket", e);
    let mut body = Vec::new();
    if header(h, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).map_err(io)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if n == 0 || body.len() + n > MAX_BODY {
                break;
            }
            let start = body.len();
            body.resize(start + n, 0);
            r.read_exact(&mut body[start..]).map_err(io)?;
            let mut crlf = String::new();
            r.read_line(&mut crlf).map_err(io)?;
        }
    } else if let Some(n) = header(h, "content-length") {
        let n: usize = n.parse().map_err(|_| bad("bad content-length"))?;
        if n > MAX_BODY {
            return Err(bad("body too large"));
        }
        body.resize(n, 0);
        r.read_exact(&mut body).map_err(io)?;
    } else if to_eof {
        r.take(MAX_BODY as u64).read_to_end(&mut body).map_err(io)?;
    }
    String::from_utf8(body).map_err(|_| bad("body is not UTF-8"))
}

/// Reads one request.
pub(crate) fn read_request(stream: &mut impl Read) -> Result<Request> {
    let mut r = BufReader::new(stream);
    let (first, headers) = read_head(&mut r)?;
    let mut parts = first.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(bad(format!("bad request line {first:?}")));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let body = read_body(&mut r, &headers, false)?;
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        _ => "Internal Server Error",
    }
}

/// Writes an answer and ends the exchange.
pub(crate) fn write_response(w: &mut impl Write, resp: &Response) -> std::io::Result<()> {
    write!(
        w,
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        resp.status,
        reason(resp.status),
        resp.body.len(),
        resp.body
    )?;
    w.flush()
}

/// Sends one request (`body` is JSON, or empty for a GET) and reads the answer.
pub(crate) fn exchange(
    stream: &mut (impl Read + Write),
    method: &str,
    target: &str,
    body: &str,
) -> Result<Response> {
    let io = |e| Error::io("write to control socket", e);
    if body.is_empty() {
        write!(
            stream,
            "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .map_err(io)?;
    } else {
        write!(
            stream,
            "{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .map_err(io)?;
    }
    stream.flush().map_err(io)?;
    let mut r = BufReader::new(stream);
    let (first, headers) = read_head(&mut r)?;
    let status = first
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("control socket answered {first:?}")))?;
    let body = read_body(&mut r, &headers, true)?;
    Ok(Response { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_chunked_answer() {
        let raw = b"POST /sync HTTP/1.1\r\nHost: localhost\r\nContent-Length: 13\r\n\r\n{\"path\":\"/a\"}";
        let r = read_request(&mut &raw[..]).unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/sync"));
        assert_eq!(r.body, "{\"path\":\"/a\"}");
        let raw = b"GET /txid?path=%2Fa%20b HTTP/1.1\r\n\r\n";
        assert_eq!(
            read_request(&mut &raw[..])
                .unwrap()
                .query("path")
                .as_deref(),
            Some("/a b")
        );
        let (_, headers) = read_head(&mut BufReader::new(
            &b"X\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        ))
        .unwrap();
        let mut body = BufReader::new(&b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"[..]);
        assert_eq!(read_body(&mut body, &headers, true).unwrap(), "abcde");
    }

    /// Fails without the fix: `%a` before a multi-byte character sliced the &str inside it
    /// and panicked the connection's thread.
    #[test]
    fn a_percent_before_a_multibyte_character_is_kept() {
        let raw = "GET /txid?path=/x%a\u{e9}%%2%41%e2%82%ac HTTP/1.1\r\n\r\n";
        let r = read_request(&mut raw.as_bytes()).unwrap();
        assert_eq!(r.query("path").as_deref(), Some("/x%a\u{e9}%%2A\u{20ac}"));
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("\u{e9}%"), "\u{e9}%");
    }
}
