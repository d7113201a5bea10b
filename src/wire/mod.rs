//! The encodings the clients and the CLI share, in one place: base64, hex, percent
//! encoding, XML and JSON readers, HTTP dates and MD5. Sans-IO, no dependencies; every
//! reader of untrusted bytes returns an error value, never panics.

pub(crate) mod base64;
pub(crate) mod http_date;
pub(crate) mod json;
pub(crate) mod md5;
pub(crate) mod uri;
pub(crate) mod xml;

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}
