//! A small parser for replica URLs (`scheme://[user[:pass]@]host[:port]/path?query`).

use crate::error::{Error, Result};
use crate::wire::uri;

/// The parts of a replica URL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReplicaUrl {
    pub scheme: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// Percent-decoded path, with its leading `/` (empty when none).
    pub path: String,
    /// Percent-decoded query pairs in order.
    pub query: Vec<(String, String)>,
}

/// True if `s` looks like a URL (`word://...`), as Litestream's `IsURL` decides.
pub fn is_url(s: &str) -> bool {
    match s.find("://") {
        Some(i) if i > 0 => s[..i]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_'),
        _ => false,
    }
}

fn query_decode(s: &str) -> Result<String> {
    uri::decode(&s.replace('+', " "))
}

/// Cleans a slash-separated path like Go's `path.Clean` (`""` becomes `"."`).
pub(crate) fn clean_path(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// The key prefix of everything stored under `path` in an object store: the cleaned path
/// without a leading slash plus `/`, or nothing for the bucket's root.
pub(crate) fn object_prefix(path: &str) -> String {
    let p = clean_path(path);
    match p.as_str() {
        "." | "" | "/" => String::new(),
        p => format!("{}/", p.trim_start_matches('/')),
    }
}

impl ReplicaUrl {
    /// The first value of query parameter `name`.
    pub(crate) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn parse(s: &str) -> Result<ReplicaUrl> {
        let bad = |reason: &str| Error::InvalidUrl {
            url: s.to_string(),
            reason: reason.to_string(),
        };
        if !is_url(s) {
            return Err(bad("want scheme://..."));
        }
        let i = s.find("://").unwrap_or(0);
        let scheme = s[..i].to_ascii_lowercase();
        let rest = &s[i + 3..];
        let (rest, frag_free) = match rest.find('#') {
            Some(j) => (&rest[..j], true),
            None => (rest, false),
        };
        let _ = frag_free;
        let (before_q, query_str) = match rest.find('?') {
            Some(j) => (&rest[..j], Some(&rest[j + 1..])),
            None => (rest, None),
        };
        let mut query = Vec::new();
        if let Some(q) = query_str {
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                query.push((query_decode(k)?, query_decode(v)?));
            }
        }
        let mut url = ReplicaUrl {
            scheme,
            query,
            ..ReplicaUrl::default()
        };
        if url.scheme == "file" {
            url.path = uri::decode(before_q)?;
            return Ok(url);
        }
        let (authority, path) = match before_q.find('/') {
            Some(j) => (&before_q[..j], &before_q[j..]),
            None => (before_q, ""),
        };
        url.path = uri::decode(path)?;
        let hostport = match authority.rfind('@') {
            Some(j) => {
                let userinfo = &authority[..j];
                match userinfo.split_once(':') {
                    Some((u, p)) => {
                        url.username = Some(uri::decode(u)?);
                        url.password = Some(uri::decode(p)?);
                    }
                    None => url.username = Some(uri::decode(userinfo)?),
                }
                &authority[j + 1..]
            }
            None => authority,
        };
        // A bracketed IPv6 literal may hold colons.
        let (host, port) = if let Some(end) = hostport.strip_prefix('[').and_then(|h| h.find(']')) {
            let host = &hostport[1..end + 1];
            let after = &hostport[end + 2..];
            (host, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        url.host = uri::decode(host)?;
        if let Some(p) = port {
            if !p.is_empty() {
                url.port = Some(p.parse().map_err(|_| bad("invalid port"))?);
            }
        }
        Ok(url)
    }
}

/// True for hosts that are local or on a private network (plain HTTP is their default).
fn is_local_host(host: &str) -> bool {
    let name = host
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(host)
        .trim_matches(['[', ']']);
    if name == "localhost" || name.ends_with(".localhost") || name == "::1" {
        return true;
    }
    match name.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        Ok(std::net::IpAddr::V6(ip)) => ip.is_loopback(),
        Err(_) => !name.contains('.'),
    }
}

/// Adds `http://` to local/private hosts and `https://` to others when the scheme is
/// missing; drops a trailing slash.
pub(crate) fn normalize_endpoint(e: &str) -> String {
    let e = e.trim_end_matches('/');
    if e.contains("://") {
        return e.to_string();
    }
    if is_local_host(e) {
        format!("http://{e}")
    } else {
        format!("https://{e}")
    }
}

/// `url` as it may be logged or put in an error: scheme and host only, with any user
/// name and password, path and query replaced by `…` (a heartbeat's path or a query can
/// be the secret itself, e.g. a ping token or an Azure SAS signature).
pub(crate) fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some(_) => redact_parts(url, false),
        None => "…".into(),
    }
}

/// `url` with what can be a credential replaced by `…` — the user name and password and
/// the query (an Azure SAS signature, a NATS token) — and the scheme, host and path kept,
/// for messages about a replica URL.
pub(crate) fn redact_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some(_) => redact_parts(url, true),
        None => url
            .split_once('?')
            .map_or(url.to_string(), |(p, _)| format!("{p}?…")),
    }
}

/// `scheme://…@host` of `url` (which has a scheme), then its path with the query replaced
/// by `…` if `keep_path`, else `/…` for any path or query.
fn redact_parts(url: &str, keep_path: bool) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match authority.rsplit_once('@') {
        Some((_, h)) => format!("…@{h}"),
        None => authority.to_string(),
    };
    let tail = match (keep_path, tail.split_once('?')) {
        (true, Some((path, _))) => format!("{path}?…"),
        (true, None) => tail.to_string(),
        (false, _) if tail.is_empty() || tail == "/" => tail.to_string(),
        (false, _) => "/…".to_string(),
    };
    format!("{scheme}://{host}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials_keeping_the_path() {
        assert_eq!(
            redact_credentials("sftp://deploy:hunter2@host:22/db/app?key=SECRET"),
            "sftp://…@host:22/db/app?…"
        );
        assert_eq!(redact_credentials("s3://bucket/path"), "s3://bucket/path");
        assert_eq!(redact_credentials("/local/path"), "/local/path");
    }

    #[test]
    fn redacts() {
        assert_eq!(
            redact("https://u:pw@hc-ping.com/0a1b2c?sig=SECRET#x"),
            "https://…@hc-ping.com/…"
        );
        assert_eq!(redact("http://127.0.0.1:9/"), "http://127.0.0.1:9/");
        assert_eq!(redact("http://h:1?sig=S"), "http://h:1/…");
        assert_eq!(redact("not a url sig=S"), "…");
    }

    #[test]
    fn parses() {
        let u = ReplicaUrl::parse(
            "s3://user:p%40ss@bkt.host:9000/a/b%20c?endpoint=http%3A%2F%2Fx&forcePathStyle=true",
        )
        .unwrap();
        assert_eq!(u.scheme, "s3");
        assert_eq!(u.username.as_deref(), Some("user"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.host, "bkt.host");
        assert_eq!(u.port, Some(9000));
        assert_eq!(u.path, "/a/b c");
        assert_eq!(u.query[0], ("endpoint".to_string(), "http://x".to_string()));
        assert_eq!(
            u.query[1],
            ("forcePathStyle".to_string(), "true".to_string())
        );
        let f = ReplicaUrl::parse("file:///var/lib/backup?x=1").unwrap();
        assert_eq!(f.path, "/var/lib/backup");
        assert!(ReplicaUrl::parse("/plain/path").is_err());
        let v6 = ReplicaUrl::parse("webdav://[::1]:8080/x").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", Some(8080)));
        assert!(is_url("s3://b"));
        assert!(!is_url("/a/b"));
        assert!(!is_url("://x"));
    }

    #[test]
    fn clean() {
        assert_eq!(clean_path(""), ".");
        assert_eq!(clean_path("/"), "/");
        assert_eq!(clean_path("a//b/./c/.."), "a/b");
        assert_eq!(clean_path("/../a/"), "/a");
    }
}
