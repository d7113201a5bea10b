//! Google credentials for the `gs` backend: which source applies (module docs of `gs`),
//! a service-account key's RS256-signed JWT assertion, an `authorized_user` refresh token
//! or the metadata server, each exchanged for access tokens; and how errors name them.

use std::time::UNIX_EPOCH;

use super::{GcsConfig, DEFAULT_ENDPOINT};
use crate::client::http::TokenRequest;
use crate::error::{Error, Result};
use crate::wire::json::{self, Value};
use crate::wire::{base64, uri};

/// How requests are authorised.
#[derive(Debug, Clone)]
pub(super) enum Auth {
    /// An emulator: no Authorization header.
    None,
    /// A fixed token.
    Static(String),
    /// ADC `authorized_user`: refresh-token exchange.
    Refresh {
        client_id: String,
        client_secret: String,
        refresh_token: String,
        token_uri: String,
    },
    /// ADC `service_account`: a JWT assertion signed with the key, exchanged for a token.
    ServiceAccount {
        email: String,
        key_id: String,
        key: PrivateKey,
        token_uri: String,
    },
    /// The metadata server.
    Metadata(String),
}

/// A PKCS#8 RSA private key (DER), never printed.
#[derive(Clone)]
pub(super) struct PrivateKey(pub(super) Vec<u8>);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

/// OAuth scope asked for with a service-account key: objects read, written and deleted.
pub(super) const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";

/// The DER body of a PEM `PRIVATE KEY` block.
fn pem_private_key(pem: &str) -> Option<Vec<u8>> {
    let begin = "-----BEGIN PRIVATE KEY-----";
    let end = "-----END PRIVATE KEY-----";
    let start = pem.find(begin)? + begin.len();
    let stop = start + pem[start..].find(end)?;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::decode(&body).filter(|d| !d.is_empty())
}

/// Signs `msg` with RSASSA-PKCS1-v1_5 and SHA-256 (JWT's RS256).
fn rs256(key: &PrivateKey, msg: &[u8]) -> Result<Vec<u8>> {
    use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
    let pair = RsaKeyPair::from_pkcs8(&key.0)
        .map_err(|e| Error::Invalid(format!("gs: the service-account private key: {e}")))?;
    let mut sig = vec![0u8; pair.public().modulus_len()];
    pair.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        msg,
        &mut sig,
    )
    .map_err(|_| Error::State("gs: signing the service-account assertion failed".into()))?;
    Ok(sig)
}

/// The signed JWT a service account exchanges for an access token (RFC 7523), valid for
/// an hour from `now` (seconds since the epoch).
fn service_account_assertion(
    email: &str,
    key_id: &str,
    key: &PrivateKey,
    token_uri: &str,
    now: u64,
) -> Result<String> {
    let header = format!(
        "{{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":{}}}",
        json::quote(key_id)
    );
    let claims = format!(
        "{{\"iss\":{},\"scope\":{},\"aud\":{},\"iat\":{now},\"exp\":{}}}",
        json::quote(email),
        json::quote(SCOPE),
        json::quote(token_uri),
        now + 3600
    );
    let signing_input = format!(
        "{}.{}",
        base64::encode_url(header.as_bytes(), false),
        base64::encode_url(claims.as_bytes(), false)
    );
    let sig = rs256(key, signing_input.as_bytes())?;
    Ok(format!(
        "{signing_input}.{}",
        base64::encode_url(&sig, false)
    ))
}

/// The value of environment variable `name`, if set and not empty.
pub(super) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Reads ADC from `GOOGLE_APPLICATION_CREDENTIALS` or gcloud's well-known file.
fn application_default() -> Result<Option<Auth>> {
    let path = match env("GOOGLE_APPLICATION_CREDENTIALS") {
        Some(p) => std::path::PathBuf::from(p),
        None => match env("HOME") {
            Some(h) => {
                std::path::Path::new(&h).join(".config/gcloud/application_default_credentials.json")
            }
            None => return Ok(None),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
    };
    credentials(&text, &path).map(Some)
}

/// Parses a credentials file (`service_account` or `authorized_user`) read from `path`.
pub(super) fn credentials(text: &str, path: &std::path::Path) -> Result<Auth> {
    let doc = json::parse(text)
        .map_err(|e| Error::Invalid(format!("gs: credentials {}: {e}", path.display())))?;
    let field = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
    let need = |k: &str| {
        field(k)
            .ok_or_else(|| Error::Invalid(format!("gs: credentials {}: no {k:?}", path.display())))
    };
    match field("type").as_deref() {
        Some("authorized_user") => Ok(Auth::Refresh {
            client_id: need("client_id")?,
            client_secret: need("client_secret")?,
            refresh_token: need("refresh_token")?,
            token_uri: field("token_uri")
                .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
        }),
        Some("service_account") => {
            let pem = need("private_key")?;
            let der = pem_private_key(&pem).ok_or_else(|| {
                Error::Invalid(format!(
                    "gs: credentials {}: private_key is not a PEM \"PRIVATE KEY\" block",
                    path.display()
                ))
            })?;
            if let Err(e) = ring::signature::RsaKeyPair::from_pkcs8(&der) {
                return Err(Error::Invalid(format!(
                    "gs: credentials {}: private_key is not a usable RSA key ({e})",
                    path.display()
                )));
            }
            Ok(Auth::ServiceAccount {
                email: need("client_email")?,
                key_id: field("private_key_id").unwrap_or_default(),
                key: PrivateKey(der),
                token_uri: field("token_uri")
                    .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
            })
        }
        other => Err(Error::Invalid(format!(
            "gs: credentials {} are of type {:?}; this build supports service_account and \
             authorized_user files, GOOGLE_OAUTH_ACCESS_TOKEN, the metadata server and HMAC \
             keys (type: gs with access-key-id/secret-access-key uses the S3-compatible API)",
            path.display(),
            other.unwrap_or("unknown")
        ))),
    }
}

impl Auth {
    /// The first source that applies, in the order of the `gs` module docs: `cfg`'s
    /// token, none against an emulator or a custom endpoint `base`,
    /// `GOOGLE_OAUTH_ACCESS_TOKEN`, Application Default Credentials, the metadata server.
    pub(super) fn discover(cfg: &GcsConfig, base: &str, emulator: bool) -> Result<Auth> {
        Ok(if let Some(t) = cfg.access_token.clone() {
            Auth::Static(t)
        } else if emulator || (cfg.endpoint.is_some() && base != DEFAULT_ENDPOINT) {
            Auth::None
        } else if let Some(t) = env("GOOGLE_OAUTH_ACCESS_TOKEN") {
            Auth::Static(t)
        } else if let Some(a) = application_default()? {
            a
        } else {
            let host =
                env("GCE_METADATA_HOST").unwrap_or_else(|| "metadata.google.internal".into());
            Auth::Metadata(format!(
                "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
            ))
        })
    }

    /// How the credentials ask for a new access token.
    pub(super) fn token_request(&self) -> Result<TokenRequest> {
        Ok(match self {
            Auth::ServiceAccount {
                email,
                key_id,
                key,
                token_uri,
            } => {
                let now = std::time::SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                let jwt = service_account_assertion(email, key_id, key, token_uri, now)?;
                TokenRequest::Form {
                    url: token_uri.clone(),
                    body: format!(
                        "grant_type={}&assertion={jwt}",
                        uri::encode("urn:ietf:params:oauth:grant-type:jwt-bearer", false)
                    ),
                }
            }
            Auth::Refresh {
                client_id,
                client_secret,
                refresh_token,
                token_uri,
            } => TokenRequest::Form {
                url: token_uri.clone(),
                body: format!(
                    "grant_type=refresh_token&client_id={}&client_secret={}&refresh_token={}",
                    uri::encode(client_id, false),
                    uri::encode(client_secret, false),
                    uri::encode(refresh_token, false)
                ),
            },
            Auth::Metadata(u) => TokenRequest::Get {
                url: u.clone(),
                headers: vec![("metadata-flavor", "Google".into())],
            },
            Auth::None | Auth::Static(_) => {
                return Err(Error::State("gs: these credentials need no token".into()))
            }
        })
    }

    /// Names the credentials in errors (never a secret).
    pub(super) fn name(&self) -> String {
        match self {
            Auth::None => "none (emulator)".to_string(),
            Auth::Static(_) => "an access token".to_string(),
            Auth::Refresh { client_id, .. } => format!("authorized_user {client_id}"),
            Auth::ServiceAccount { email, .. } => format!("service account {email}"),
            Auth::Metadata(u) => format!("metadata server {u}"),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    const KEY_FILE: &str = include_str!("../../../tests/data/gcs-service-account.json");

    pub(in crate::client::gcs) fn service_account(token_uri: &str) -> Auth {
        let text = KEY_FILE.replace("https://oauth2.googleapis.com/token", token_uri);
        credentials(&text, std::path::Path::new("sa.json")).unwrap()
    }

    /// RS256 of the test key gives the signature `openssl dgst -sha256 -sign` gave for the
    /// same input (PKCS#1 v1.5 signatures are deterministic).
    #[test]
    fn rs256_matches_openssl() {
        let Auth::ServiceAccount { key, email, .. } = service_account("https://t") else {
            panic!("not a service account");
        };
        assert_eq!(
            email,
            "replicator@litestream-rs-test.iam.gserviceaccount.com"
        );
        let sig = rs256(&key, b"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ0ZXN0In0").unwrap();
        let want = base64::decode(
            "UoHP4O+YuABtYZkQr2Sot/YQEqKEk06acm/IUdTENA7S6AxCzB8+ED00aTg1upA1DGPv0Xx8gZab3MieA5VJ\
             n7ON8ERqxMpkQvtPtKg/7TsNNCEnR8gWWLGQHKkJ079q8nDowV7aeScVjSAyqUQ86gr+BB7Y06vnodHrAfHd\
             swjKnMCaBnDoVh32HYgzHT9lm1H453ZbZSuspV3+OpX4MEuBepxFE6kFm4xaBqLLz3TRWeTASoxg0Edbfl\
             Es9HLSyYQvG4tPltnwEVwMOJ+f3/TPggd1uPVpvcHY+aAzdcawx+d5aZ4kNkz3dKbEVhBsM9WxTS4qW60I\
             r76RwBgeMA==",
        )
        .unwrap();
        assert_eq!(sig, want);
    }

    #[test]
    fn bad_credentials_are_clear_errors() {
        let p = std::path::Path::new("/etc/sa.json");
        let no_pem = KEY_FILE.replace("BEGIN PRIVATE KEY", "BEGIN NOTHING");
        let e = credentials(&no_pem, p).unwrap_err().to_string();
        assert!(
            e.contains("/etc/sa.json") && e.contains("PRIVATE KEY"),
            "{e}"
        );
        let doc = json::parse(KEY_FILE).unwrap();
        let pem = doc.get("private_key").and_then(Value::as_str).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let garbled = KEY_FILE.replace(&body[..40], "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB");
        let e = credentials(&garbled, p).unwrap_err().to_string();
        assert!(e.contains("not a usable RSA key"), "{e}");
        let no_email = KEY_FILE.replace("client_email", "client_mail");
        let e = credentials(&no_email, p).unwrap_err().to_string();
        assert!(e.contains("client_email"), "{e}");
        let other = KEY_FILE.replace("\"service_account\"", "\"external_account\"");
        let e = credentials(&other, p).unwrap_err().to_string();
        assert!(e.contains("external_account"), "{e}");
    }
}
