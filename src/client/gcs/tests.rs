//! Unit tests of the module beside this file, against in-process stand-in servers.

use super::auth::tests::service_account;
use super::auth::{credentials, SCOPE};
use super::*;
use crate::wire::base64;

#[test]
fn urls_and_names() {
    let c = GcsConfig::from_url("gs://bkt/some/db?endpoint=http://127.0.0.1:1").unwrap();
    assert_eq!(c.bucket, "bkt");
    assert_eq!(c.path, "some/db");
    assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:1"));
    let g = GcsClient::new(c).unwrap();
    assert_eq!(
        g.key(0, Txid(1), Txid(2)),
        "some/db/ltx/0/0000000000000001-0000000000000002.ltx"
    );
    assert_eq!(
        g.object_url(&g.key(9, Txid(1), Txid(0x2a))),
        "http://127.0.0.1:1/storage/v1/b/bkt/o/some%2Fdb%2Fltx%2F9%2F0000000000000001-000000000000002a.ltx"
    );
    assert_eq!(
        target_of(&g.object_url("a/b c"), "http://127.0.0.1:1"),
        "a/b c"
    );
    assert!(GcsConfig::from_url("gs:///path").is_err());
    assert!(GcsConfig::from_url("s3://b/p").is_err());
}

use crate::client::http::stand_in::{form_value, Server};

/// A local stand-in for Google's token endpoint (`POST /token`, answered with
/// `tok-1` when `check_token` accepts the form) and the storage API (an empty listing).
fn fake_google(check_token: impl Fn(&str) -> bool + Send + 'static) -> Server {
    Server::start(Box::new(move |req| {
        if req.line.starts_with("POST /token") {
            if check_token(&req.body) {
                (
                    "200 OK",
                    r#"{"access_token":"tok-1","expires_in":3600,"token_type":"Bearer"}"#.into(),
                )
            } else {
                ("400 Bad Request", r#"{"error":"invalid_grant"}"#.into())
            }
        } else {
            ("200 OK", r#"{"kind":"storage#objects"}"#.into())
        }
    }))
}

fn client_at(server: &Server, auth: Auth) -> GcsClient {
    GcsClient {
        cfg: GcsConfig {
            bucket: "bkt".into(),
            path: "db".into(),
            page_size: 1000,
            ..GcsConfig::default()
        },
        base: server.url.clone(),
        agent: http::agent(false).unwrap(),
        auth,
        token: TokenCache::new(60, 10),
    }
}

/// (token requests, authorization headers of the storage requests) seen by `server`.
fn seen(server: &Server) -> (usize, Vec<String>) {
    let all = server.requests();
    let tokens = all
        .iter()
        .filter(|r| r.line.starts_with("POST /token"))
        .count();
    let storage = all
        .iter()
        .filter(|r| !r.line.starts_with("POST /token"))
        .map(|r| r.headers.get("authorization").cloned().unwrap_or_default())
        .collect();
    (tokens, storage)
}

fn b64url_decode(s: &str) -> Vec<u8> {
    base64::decode(&s.replace('-', "+").replace('_', "/")).unwrap()
}

/// A service-account key file: the JWT assertion is signed with the key (verified
/// with its public half), names the account, the scope and the token endpoint, and
/// the token it buys is sent as the bearer of storage requests and reused.
#[test]
fn service_account_key_buys_a_bearer_token() {
    let Auth::ServiceAccount { key, .. } = service_account("https://t") else {
        panic!("not a service account");
    };
    let public = {
        use ring::signature::KeyPair;
        ring::signature::RsaKeyPair::from_pkcs8(&key.0)
            .unwrap()
            .public_key()
            .as_ref()
            .to_vec()
    };
    let aud = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let want_aud = aud.clone();
    let google = fake_google(move |form| {
        let grant = form_value(form, "grant_type").unwrap_or_default();
        let Some(jwt) = form_value(form, "assertion") else {
            return false;
        };
        let parts: Vec<&str> = jwt.split('.').collect();
        let signed = format!("{}.{}", parts[0], parts[1]);
        let ok_sig = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &public,
        )
        .verify(signed.as_bytes(), &b64url_decode(parts[2]))
        .is_ok();
        let header = String::from_utf8(b64url_decode(parts[0])).unwrap();
        let claims = json::parse(&String::from_utf8(b64url_decode(parts[1])).unwrap()).unwrap();
        let s = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let n = |k: &str| claims.get(k).and_then(Value::as_u64).unwrap_or_default();
        grant == "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
            && ok_sig
            && header.contains("\"RS256\"")
            && header.contains("0123456789abcdef0123456789abcdef01234567")
            && s("iss") == "replicator@litestream-rs-test.iam.gserviceaccount.com"
            && s("scope") == SCOPE
            && s("aud") == *want_aud.lock().unwrap()
            && n("exp") == n("iat") + 3600
    });
    let token_uri = format!("{}/token", google.url);
    *aud.lock().unwrap() = token_uri.clone();
    let c = client_at(&google, service_account(&token_uri));
    assert!(c.ltx_files(0, Txid::ZERO, false).unwrap().is_empty());
    assert!(c.ltx_files(1, Txid::ZERO, false).unwrap().is_empty());
    let (tokens, storage) = seen(&google);
    assert_eq!(tokens, 1, "one token for both listings");
    assert_eq!(storage, ["Bearer tok-1", "Bearer tok-1"]);
}

/// A rejected assertion (here: a key the endpoint does not know) is an error that
/// names the token endpoint and what it answered.
#[test]
fn a_rejected_token_request_is_a_clear_error() {
    let google = fake_google(|_| false);
    let c = client_at(&google, service_account(&format!("{}/token", google.url)));
    let e = c.ltx_files(0, Txid::ZERO, false).unwrap_err().to_string();
    assert!(e.contains("/token") && e.contains("invalid_grant"), "{e}");
}

/// A listing answered `200 OK` and cut off mid-body is retried by itself.
#[test]
fn a_listing_cut_off_mid_body_is_retried_per_request() {
    let listing = r#"{"kind":"storage#objects","items":[{"name":"db/ltx/0/0000000000000001-0000000000000002.ltx","size":"7"}]}"#;
    let s = Server::cut_once("200 OK", listing);
    let files = client_at(&s, Auth::None)
        .ltx_files(0, Txid::ZERO, false)
        .unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!((files[0].max_txid, files[0].size), (Txid(2), 7));
    assert_eq!(s.requests().len(), 2);
}

/// An `authorized_user` file: its refresh token is exchanged the same way.
#[test]
fn authorized_user_refresh_token_buys_a_bearer_token() {
    let google = fake_google(|form| {
        form_value(form, "grant_type") == Some("refresh_token")
            && form_value(form, "refresh_token") == Some("1%2F%2Frefresh")
            && form_value(form, "client_id") == Some("cid")
    });
    let text = format!(
        r#"{{"type":"authorized_user","client_id":"cid","client_secret":"sec","refresh_token":"1//refresh","token_uri":"{}/token"}}"#,
        google.url
    );
    let c = client_at(
        &google,
        credentials(&text, std::path::Path::new("adc.json")).unwrap(),
    );
    assert!(c.ltx_files(0, Txid::ZERO, false).unwrap().is_empty());
    assert_eq!(seen(&google).1, ["Bearer tok-1"]);
}
