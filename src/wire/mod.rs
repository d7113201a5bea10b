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

/// Parses sizes like `5242880`, `5MiB`, `10MB`, `1GiB`, `64KB`.
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "kib" => 1 << 10,
        "mb" | "m" => 1000 * 1000,
        "mib" => 1 << 20,
        "gb" | "g" => 1000 * 1000 * 1000,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}
