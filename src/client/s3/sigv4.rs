//! AWS Signature Version 4, header form, written by hand (no SDK): a pure function of the
//! request, the credentials and an injected clock, tested against AWS's published vectors.
//!
//! The payload is signed with its real SHA-256 by default (`x-amz-content-sha256`), or as
//! `UNSIGNED-PAYLOAD`; never with aws-chunked streaming signatures, which many
//! S3-compatible stores reject.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::wire::{hex, uri};

/// Access key, secret and optional session token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Access key ID.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token (temporary credentials).
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret or the token.
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The payload hash to sign.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Payload<'a> {
    /// Sign the body's SHA-256.
    Signed(&'a [u8]),
    /// Sign this SHA-256 (lowercase hex) of a body streamed from a file.
    Hashed(&'a str),
    /// `UNSIGNED-PAYLOAD`.
    Unsigned,
}

/// A request to sign.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub method: &'a str,
    /// The URI path exactly as sent (already percent-encoded once).
    pub path: &'a str,
    /// Query parameters, not encoded.
    pub query: &'a [(String, String)],
    /// Headers to send and sign; must include `host`.
    pub headers: &'a [(String, String)],
    pub payload: Payload<'a>,
}

/// What signing produced, kept for tests and debugging.
#[derive(Debug)]
pub(crate) struct Signed {
    /// Headers to add: `x-amz-date`, `x-amz-content-sha256` (S3 only), the security
    /// token if any, and `authorization`.
    pub headers: Vec<(String, String)>,
    #[cfg_attr(not(test), allow(dead_code))]
    pub canonical_request: String,
    #[cfg_attr(not(test), allow(dead_code))]
    pub string_to_sign: String,
}

/// SHA-256 as lowercase hex.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// The SHA-256 (lowercase hex) of everything `r` yields, read in 64 KiB steps.
pub(crate) fn sha256_hex_of(mut r: impl std::io::Read) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(hex(&h.finalize())),
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: new_from_slice cannot fail here. Should it ever, an
    // empty MAC makes the server reject the request instead of panicking.
    match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// The canonical query string: pairs encoded, sorted by key then value.
pub(crate) fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri::encode(k, false), uri::encode(v, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `YYYYMMDD'T'HHMMSS'Z'` for a Unix time.
pub(crate) fn amz_date(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86400);
    let rem = unix_secs.rem_euclid(86400);
    let (y, m, d) = crate::time::civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn collapse_spaces(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut space = false;
    for c in v.trim().chars() {
        if c == ' ' {
            if !space {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    out
}

/// Signs `req` for `service` in `region` at `unix_secs`. For `service == "s3"` the
/// `x-amz-content-sha256` header is added and signed.
pub(crate) fn sign(
    req: &Request<'_>,
    creds: &Credentials,
    region: &str,
    service: &str,
    unix_secs: i64,
) -> Signed {
    let date_time = amz_date(unix_secs);
    let date = &date_time[..8];
    let payload_hash = match req.payload {
        Payload::Signed(body) => sha256_hex(body),
        Payload::Hashed(hash) => hash.to_string(),
        Payload::Unsigned => "UNSIGNED-PAYLOAD".to_string(),
    };
    let mut added: Vec<(String, String)> = vec![("x-amz-date".into(), date_time.clone())];
    if service == "s3" {
        added.push(("x-amz-content-sha256".into(), payload_hash.clone()));
    }
    if let Some(t) = &creds.session_token {
        added.push(("x-amz-security-token".into(), t.clone()));
    }
    // Canonical headers: lowercase names, trimmed values with inner runs of spaces
    // collapsed, sorted; repeated names joined with commas.
    let mut hs: Vec<(String, String)> = req
        .headers
        .iter()
        .chain(added.iter())
        .map(|(k, v)| (k.to_ascii_lowercase(), collapse_spaces(v)))
        .collect();
    hs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut merged: Vec<(String, String)> = Vec::new();
    for (k, v) in hs {
        match merged.last_mut() {
            Some((lk, lv)) if *lk == k => {
                lv.push(',');
                lv.push_str(&v);
            }
            _ => merged.push((k, v)),
        }
    }
    let canonical_headers: String = merged.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = merged
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        req.path,
        canonical_query(req.query),
        canonical_headers,
        signed_headers,
        payload_hash
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date_time}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let k_date = hmac(
        format!("AWS4{}", creds.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex(&hmac(&k_signing, string_to_sign.as_bytes()));
    added.push((
        "authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            creds.access_key_id
        ),
    ));
    Signed {
        headers: added,
        canonical_request,
        string_to_sign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2015-08-30T12:36:00Z, the time of AWS's SigV4 test suite.
    const SUITE_TIME: i64 = 1_440_938_160;

    fn suite_creds() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    /// One vector of AWS's `aws-sig-v4-test-suite` (service "service", us-east-1).
    /// `path` is the canonical URI, `query` the raw pairs.
    #[allow(clippy::too_many_arguments)]
    fn check(
        name: &str,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
        canonical: &str,
        auth: &str,
    ) {
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // The suite passes x-amz-date as a request header; sign() adds it itself.
        let headers: Vec<(String, String)> = headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("x-amz-date"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut creds = suite_creds();
        if let Some((_, t)) = headers.iter().find(|(k, _)| k == "x-amz-security-token") {
            creds.session_token = Some(t.clone());
        }
        let headers: Vec<(String, String)> = headers
            .into_iter()
            .filter(|(k, _)| k != "x-amz-security-token")
            .collect();
        let req = Request {
            method,
            path,
            query: &query,
            headers: &headers,
            payload: Payload::Signed(body),
        };
        let s = sign(&req, &creds, "us-east-1", "service", SUITE_TIME);
        assert_eq!(s.canonical_request, canonical, "{name}: canonical request");
        let got = s
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str());
        assert_eq!(got, Some(auth), "{name}: authorization");
    }

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const HOST: (&str, &str) = ("host", "example.amazonaws.com");
    const DATE: (&str, &str) = ("x-amz-date", "20150830T123600Z");

    fn auth(signed: &str, sig: &str) -> String {
        format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={signed}, Signature={sig}")
    }

    #[test]
    fn aws_sigv4_test_suite() {
        let plain = |q: &str| {
            format!("GET\n/\n{q}\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY}")
        };
        check(
            "get-vanilla",
            "GET",
            "/",
            &[],
            &[HOST, DATE],
            b"",
            &plain(""),
            &auth(
                "host;x-amz-date",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
        );
        check(
            "get-vanilla-empty-query-key",
            "GET",
            "/",
            &[("Param1", "value1")],
            &[HOST, DATE],
            b"",
            &plain("Param1=value1"),
            &auth(
                "host;x-amz-date",
                "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
            ),
        );
        check(
            "get-vanilla-query-order-key",
            "GET",
            "/",
            &[("Param1", "value2"), ("Param1", "Value1")],
            &[HOST, DATE],
            b"",
            &plain("Param1=Value1&Param1=value2"),
            &auth(
                "host;x-amz-date",
                "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1",
            ),
        );
        check(
            "get-vanilla-query-order-key-case",
            "GET",
            "/",
            &[("Param2", "value2"), ("Param1", "value1")],
            &[HOST, DATE],
            b"",
            &plain("Param1=value1&Param2=value2"),
            &auth(
                "host;x-amz-date",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            ),
        );
        check(
            "get-vanilla-query-order-value",
            "GET",
            "/",
            &[("Param1", "value2"), ("Param1", "value1")],
            &[HOST, DATE],
            b"",
            &plain("Param1=value1&Param1=value2"),
            &auth(
                "host;x-amz-date",
                "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694",
            ),
        );
        let unreserved = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        check(
            "get-vanilla-query-unreserved",
            "GET",
            "/",
            &[(unreserved, unreserved)],
            &[HOST, DATE],
            b"",
            &plain(&format!("{unreserved}={unreserved}")),
            &auth(
                "host;x-amz-date",
                "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
            ),
        );
        check(
            "get-vanilla-utf8-query",
            "GET",
            "/",
            &[("\u{1234}", "bar")],
            &[HOST, DATE],
            b"",
            &plain("%E1%88%B4=bar"),
            &auth(
                "host;x-amz-date",
                "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
            ),
        );
        check("get-unreserved", "GET", &format!("/{unreserved}"), &[], &[HOST, DATE], b"",
            &format!("GET\n/{unreserved}\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY}"),
            &auth("host;x-amz-date", "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"));
        check("get-utf8", "GET", &format!("/{}", uri::encode("\u{1234}", true)), &[], &[HOST, DATE], b"",
            &format!("GET\n/%E1%88%B4\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY}"),
            &auth("host;x-amz-date", "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"));
        check("normalize-path/get-space", "GET", &uri::encode("/example space/", true), &[], &[HOST, DATE], b"",
            &format!("GET\n/example%20space/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY}"),
            &auth("host;x-amz-date", "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"));
        check("get-header-key-duplicate", "GET", "/", &[], &[HOST, ("My-Header1", "value2"), ("My-Header1", "value2"), ("My-Header1", "value1"), DATE], b"",
            &format!("GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n{EMPTY}"),
            &auth("host;my-header1;x-amz-date", "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"));
        check("get-header-value-order", "GET", "/", &[], &[HOST, ("My-Header1", "value4"), ("My-Header1", "value1"), ("My-Header1", "value3"), ("My-Header1", "value2"), DATE], b"",
            &format!("GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value4,value1,value3,value2\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n{EMPTY}"),
            &auth("host;my-header1;x-amz-date", "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"));
        check("get-header-value-trim", "GET", "/", &[], &[HOST, ("My-Header1", " value1"), ("My-Header2", " \"a   b   c\""), DATE], b"",
            &format!("GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\n{EMPTY}"),
            &auth("host;my-header1;my-header2;x-amz-date", "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"));
        check("post-vanilla", "POST", "/", &[], &[HOST, DATE], b"",
            &format!("POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY}"),
            &auth("host;x-amz-date", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"));
        check("post-header-key-sort", "POST", "/", &[], &[HOST, ("My-Header1", "value1"), DATE], b"",
            &format!("POST\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n{EMPTY}"),
            &auth("host;my-header1;x-amz-date", "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c"));
        check("post-vanilla-query", "POST", "/", &[("Param1", "value1")], &[HOST, DATE], b"",
            &format!("POST\n/\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY}"),
            &auth("host;x-amz-date", "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"));
        check("post-x-www-form-urlencoded", "POST", "/", &[], &[("Content-Type", "application/x-www-form-urlencoded"), HOST, DATE], b"Param1=value1",
            "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
            &auth("content-type;host;x-amz-date", "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"));
        let token = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
        check("post-sts-header-before", "POST", "/", &[], &[HOST, DATE, ("x-amz-security-token", token)], b"",
            &format!("POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:{token}\n\nhost;x-amz-date;x-amz-security-token\n{EMPTY}"),
            &auth("host;x-amz-date;x-amz-security-token", "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"));
    }

    /// The examples of AWS's S3 documentation ("Signature Calculations for the
    /// Authorization Header"), bucket `examplebucket`, 2013-05-24.
    #[test]
    fn aws_s3_documentation_examples() {
        let creds = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let t = 1_369_353_600; // 2013-05-24T00:00:00Z
        let host = (
            "host".to_string(),
            "examplebucket.s3.amazonaws.com".to_string(),
        );
        let sig = |s: &Signed| {
            let a = &s
                .headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .unwrap()
                .1;
            a.rsplit("Signature=").next().unwrap().to_string()
        };
        // GET Object with a Range header.
        let get = sign(
            &Request {
                method: "GET",
                path: "/test.txt",
                query: &[],
                headers: &[host.clone(), ("range".into(), "bytes=0-9".into())],
                payload: Payload::Signed(b""),
            },
            &creds,
            "us-east-1",
            "s3",
            t,
        );
        assert_eq!(
            sig(&get),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        // PUT Object with a storage class and a Date header.
        let body = b"Welcome to Amazon S3.";
        let put = sign(
            &Request {
                method: "PUT",
                path: &format!("/{}", uri::encode("test$file.text", true)),
                query: &[],
                headers: &[
                    ("date".into(), "Fri, 24 May 2013 00:00:00 GMT".into()),
                    host.clone(),
                    ("x-amz-storage-class".into(), "REDUCED_REDUNDANCY".into()),
                ],
                payload: Payload::Signed(body),
            },
            &creds,
            "us-east-1",
            "s3",
            t,
        );
        assert_eq!(
            sig(&put),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
        // GET bucket lifecycle.
        let lc = sign(
            &Request {
                method: "GET",
                path: "/",
                query: &[("lifecycle".into(), String::new())],
                headers: std::slice::from_ref(&host),
                payload: Payload::Signed(b""),
            },
            &creds,
            "us-east-1",
            "s3",
            t,
        );
        assert_eq!(
            sig(&lc),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
        // GET bucket (list objects).
        let list = sign(
            &Request {
                method: "GET",
                path: "/",
                query: &[
                    ("max-keys".into(), "2".into()),
                    ("prefix".into(), "J".into()),
                ],
                headers: &[host],
                payload: Payload::Signed(b""),
            },
            &creds,
            "us-east-1",
            "s3",
            t,
        );
        assert_eq!(
            sig(&list),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
        // The credentials never print their secret.
        assert!(!format!("{creds:?}").contains("EXAMPLEKEY"));
    }

    #[test]
    fn string_to_sign_of_get_vanilla() {
        let h = vec![("host".to_string(), "example.amazonaws.com".to_string())];
        let s = sign(
            &Request {
                method: "GET",
                path: "/",
                query: &[],
                headers: &h,
                payload: Payload::Signed(b""),
            },
            &suite_creds(),
            "us-east-1",
            "service",
            SUITE_TIME,
        );
        assert_eq!(
            s.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
    }

    #[test]
    fn dates_and_encoding() {
        assert_eq!(amz_date(SUITE_TIME), "20150830T123600Z");
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(4_102_444_800), "21000101T000000Z");
        assert_eq!(uri::encode("a b/c~+", true), "a%20b/c~%2B");
        assert_eq!(uri::encode("a/b", false), "a%2Fb");
        assert_eq!(sha256_hex(b""), EMPTY);
    }
}
