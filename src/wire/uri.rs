//! Percent-encoding (RFC 3986): encoding as SigV4, Azure, GCS and WebDAV paths want it,
//! and decoding for replica URLs.

use crate::error::{Error, Result};

/// RFC 3986 encoding as SigV4 wants it: unreserved characters stay, everything else is
/// `%XX` (uppercase); `/` stays when `keep_slash`.
pub(crate) fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Decodes `%XX` escapes; the result must be UTF-8.
pub(crate) fn decode(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::InvalidUrl {
                    url: s.to_string(),
                    reason: format!("bad percent escape at byte {i}"),
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::InvalidUrl {
        url: s.to_string(),
        reason: "percent escapes do not decode to UTF-8".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for s in ["", "a b/c", "ü+%~._-", "/x/ltx/0/0001.ltx"] {
            assert_eq!(decode(&encode(s, false)).unwrap(), s);
            assert_eq!(decode(&encode(s, true)).unwrap(), s);
        }
        assert_eq!(encode("a b/c~", true), "a%20b/c~");
        assert_eq!(encode("a b/c~", false), "a%20b%2Fc~");
        assert!(decode("%zz").is_err());
        assert!(decode("%ff").is_err());
    }
}
