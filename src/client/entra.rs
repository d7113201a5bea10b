//! Microsoft Entra ID (Azure AD) access tokens for Azure Blob Storage, for replicas that
//! have neither an account key nor a SAS token, as Litestream's `DefaultAzureCredential`:
//!
//! 1. a service principal's secret: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//!    `AZURE_CLIENT_SECRET` (client-credentials grant);
//! 2. workload identity (AKS): `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//!    `AZURE_FEDERATED_TOKEN_FILE` (the file's token is the client assertion);
//! 3. a managed identity through the hosting service's endpoint (App Service, Functions,
//!    Container Apps, Arc): `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`;
//! 4. a managed identity through the VM's instance metadata service (IMDS); a
//!    user-assigned identity is chosen with `AZURE_CLIENT_ID`.
//!
//! `AZURE_AUTHORITY_HOST` replaces `https://login.microsoftonline.com` (sovereign clouds).
//! Tokens are cached until five minutes before they expire.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::client::s3::sigv4::uri_encode;
use crate::json::{self, Value};
use crate::{Error, Result};

const SCOPE: &str = "https://storage.azure.com/.default";
const RESOURCE: &str = "https://storage.azure.com";
const IMDS: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// Where tokens come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    ClientSecret {
        token_url: String,
        client_id: String,
        secret: Secret,
    },
    Workload {
        token_url: String,
        client_id: String,
        token_file: String,
    },
    AppService {
        endpoint: String,
        header: Secret,
        client_id: Option<String>,
    },
    Imds {
        url: String,
        client_id: Option<String>,
    },
}

/// A secret value, never printed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Source {
    /// The first source the environment (`env`) configures; IMDS when none does.
    pub(crate) fn from_env(env: impl Fn(&str) -> Option<String>) -> Source {
        let authority = env("AZURE_AUTHORITY_HOST")
            .unwrap_or_else(|| "https://login.microsoftonline.com".into());
        let token_url = |tenant: &str| {
            format!(
                "{}/{}/oauth2/v2.0/token",
                authority.trim_end_matches('/'),
                uri_encode(tenant, false)
            )
        };
        let client_id = env("AZURE_CLIENT_ID");
        if let (Some(tenant), Some(id)) = (env("AZURE_TENANT_ID"), client_id.clone()) {
            if let Some(secret) = env("AZURE_CLIENT_SECRET") {
                return Source::ClientSecret {
                    token_url: token_url(&tenant),
                    client_id: id,
                    secret: Secret(secret),
                };
            }
            if let Some(file) = env("AZURE_FEDERATED_TOKEN_FILE") {
                return Source::Workload {
                    token_url: token_url(&tenant),
                    client_id: id,
                    token_file: file,
                };
            }
        }
        if let (Some(endpoint), Some(header)) = (env("IDENTITY_ENDPOINT"), env("IDENTITY_HEADER")) {
            return Source::AppService {
                endpoint,
                header: Secret(header),
                client_id,
            };
        }
        Source::Imds {
            url: IMDS.into(),
            client_id,
        }
    }

    /// Names the source in errors (never a secret).
    pub(crate) fn describe(&self) -> String {
        match self {
            Source::ClientSecret { client_id, .. } => {
                format!("Entra ID service principal {client_id} (AZURE_CLIENT_SECRET)")
            }
            Source::Workload { client_id, .. } => {
                format!("Entra ID workload identity {client_id} (AZURE_FEDERATED_TOKEN_FILE)")
            }
            Source::AppService { .. } => "managed identity (IDENTITY_ENDPOINT)".into(),
            Source::Imds { .. } => "managed identity (instance metadata service)".into(),
        }
    }
}

/// Access tokens from one [`Source`], cached.
pub(crate) struct Tokens {
    source: Source,
    agent: ureq::Agent,
    cache: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    pub(crate) fn new(source: Source) -> Tokens {
        Tokens {
            source,
            agent: crate::client::http::agent(false),
            cache: Mutex::new(None),
        }
    }

    pub(crate) fn source(&self) -> &Source {
        &self.source
    }

    /// A valid access token for Azure Storage.
    pub(crate) fn token(&self) -> Result<String> {
        let mut g = self
            .cache
            .lock()
            .map_err(|_| Error::State("abs token lock poisoned".into()))?;
        if let Some((t, until)) = g.as_ref() {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        let (url, form, headers): (String, Option<String>, Vec<(&str, String)>) = match &self.source
        {
            Source::ClientSecret {
                token_url,
                client_id,
                secret,
            } => (
                token_url.clone(),
                Some(format!(
                    "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
                    uri_encode(client_id, false),
                    uri_encode(&secret.0, false),
                    uri_encode(SCOPE, false)
                )),
                Vec::new(),
            ),
            Source::Workload {
                token_url,
                client_id,
                token_file,
            } => {
                let assertion = std::fs::read_to_string(token_file).map_err(|e| {
                    Error::io(format!("read AZURE_FEDERATED_TOKEN_FILE {token_file}"), e)
                })?;
                (
                    token_url.clone(),
                    Some(format!(
                        "grant_type=client_credentials&client_id={}&scope={}\
                             &client_assertion_type={}&client_assertion={}",
                        uri_encode(client_id, false),
                        uri_encode(SCOPE, false),
                        uri_encode(
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                            false
                        ),
                        uri_encode(assertion.trim(), false)
                    )),
                    Vec::new(),
                )
            }
            Source::AppService {
                endpoint,
                header,
                client_id,
            } => {
                let mut url = format!(
                    "{endpoint}?api-version=2019-08-01&resource={}",
                    uri_encode(RESOURCE, false)
                );
                if let Some(id) = client_id {
                    url.push_str(&format!("&client_id={}", uri_encode(id, false)));
                }
                (url, None, vec![("x-identity-header", header.0.clone())])
            }
            Source::Imds { url, client_id } => {
                let mut url = format!(
                    "{url}?api-version=2018-02-01&resource={}",
                    uri_encode(RESOURCE, false)
                );
                if let Some(id) = client_id {
                    url.push_str(&format!("&client_id={}", uri_encode(id, false)));
                }
                (url, None, vec![("metadata", "true".into())])
            }
        };
        let shown = url.split('?').next().unwrap_or(&url).to_string();
        let fail = |status: Option<u16>, m: String| Error::Backend {
            backend: "abs",
            op: "token",
            target: shown.clone(),
            status,
            code: String::new(),
            message: format!("{}: {m}", self.source.describe()),
        };
        let result = match &form {
            Some(f) => self
                .agent
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .send(f.as_bytes()),
            None => {
                let mut req = self.agent.get(&url);
                for (k, v) in &headers {
                    req = req.header(*k, v.as_str());
                }
                req.call()
            }
        };
        let mut resp = result.map_err(|e| fail(None, format!("no access token: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| fail(None, format!("reading the token failed: {e}")))?;
        if status != 200 {
            return Err(fail(
                Some(status),
                format!(
                    "no access token: {}",
                    text.chars().take(300).collect::<String>()
                ),
            ));
        }
        let doc = json::parse(&text).map_err(|e| fail(None, format!("token answer: {e}")))?;
        let token = doc
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| fail(None, "token answer has no access_token".into()))?
            .to_string();
        // expires_in is a number from Entra ID and a string from managed identity.
        let secs = doc
            .get("expires_in")
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .unwrap_or(300);
        *g = Some((
            token.clone(),
            Instant::now() + Duration::from_secs(secs.saturating_sub(300).max(30)),
        ));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::http::stand_in::{form_value, Server};
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn sources_in_order_of_precedence() {
        let sp = Source::from_env(env_of(&[
            ("AZURE_TENANT_ID", "t1"),
            ("AZURE_CLIENT_ID", "c1"),
            ("AZURE_CLIENT_SECRET", "s1"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
            ("IDENTITY_ENDPOINT", "http://e"),
            ("IDENTITY_HEADER", "h"),
        ]));
        assert_eq!(
            sp,
            Source::ClientSecret {
                token_url: "https://login.microsoftonline.com/t1/oauth2/v2.0/token".into(),
                client_id: "c1".into(),
                secret: Secret("s1".into()),
            }
        );
        assert!(!format!("{sp:?}").contains("s1"), "a secret in Debug");
        let wi = Source::from_env(env_of(&[
            ("AZURE_TENANT_ID", "t1"),
            ("AZURE_CLIENT_ID", "c1"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us/"),
        ]));
        assert!(matches!(&wi, Source::Workload { token_url, .. }
            if token_url == "https://login.microsoftonline.us/t1/oauth2/v2.0/token"));
        let app = Source::from_env(env_of(&[
            ("IDENTITY_ENDPOINT", "http://e"),
            ("IDENTITY_HEADER", "h"),
        ]));
        assert!(matches!(
            app,
            Source::AppService {
                client_id: None,
                ..
            }
        ));
        let imds = Source::from_env(env_of(&[("AZURE_CLIENT_ID", "user-assigned")]));
        assert_eq!(
            imds,
            Source::Imds {
                url: IMDS.into(),
                client_id: Some("user-assigned".into())
            }
        );
    }

    /// A stand-in for the token endpoints: Entra ID's (`POST .../token`) and a managed
    /// identity endpoint (`GET /msi`), each answering `tok-N` when `ok` accepts.
    fn stand_in(
        ok: impl Fn(&crate::client::http::stand_in::Request) -> bool + Send + 'static,
    ) -> Server {
        let n = std::sync::atomic::AtomicUsize::new(0);
        Server::start(Box::new(move |req| {
            if !ok(req) {
                return ("401 Unauthorized", r#"{"error":"invalid_client"}"#.into());
            }
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            // Entra ID answers expires_in as a number, managed identity as a string.
            let expires = if req.line.starts_with("GET") {
                r#""3600""#
            } else {
                "3600"
            };
            (
                "200 OK",
                format!(
                    r#"{{"access_token":"tok-{i}","expires_in":{expires},"token_type":"Bearer"}}"#
                ),
            )
        }))
    }

    #[test]
    fn client_secret_grant_and_cache() {
        let s = stand_in(|r| {
            r.line == "POST /t1/oauth2/v2.0/token"
                && form_value(&r.body, "grant_type") == Some("client_credentials")
                && form_value(&r.body, "client_id") == Some("c1")
                && form_value(&r.body, "client_secret") == Some("s%2F1")
                && form_value(&r.body, "scope")
                    == Some("https%3A%2F%2Fstorage.azure.com%2F.default")
        });
        let t = Tokens::new(Source::from_env(env_of(&[
            ("AZURE_TENANT_ID", "t1"),
            ("AZURE_CLIENT_ID", "c1"),
            ("AZURE_CLIENT_SECRET", "s/1"),
            ("AZURE_AUTHORITY_HOST", &s.url),
        ])));
        assert_eq!(t.token().unwrap(), "tok-1");
        assert_eq!(t.token().unwrap(), "tok-1", "cached");
        assert_eq!(s.requests().len(), 1);
    }

    #[test]
    fn workload_identity_sends_the_federated_token() {
        let file = std::env::temp_dir().join(format!("lsrs-wi-{}", std::process::id()));
        std::fs::write(&file, "eyJfederated.token.sig\n").unwrap();
        let s = stand_in(|r| {
            form_value(&r.body, "client_assertion") == Some("eyJfederated.token.sig")
                && form_value(&r.body, "client_assertion_type")
                    == Some("urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer")
        });
        let t = Tokens::new(Source::from_env(env_of(&[
            ("AZURE_TENANT_ID", "t1"),
            ("AZURE_CLIENT_ID", "c1"),
            ("AZURE_FEDERATED_TOKEN_FILE", &file.display().to_string()),
            ("AZURE_AUTHORITY_HOST", &s.url),
        ])));
        let r = t.token();
        let _ = std::fs::remove_file(&file);
        assert_eq!(r.unwrap(), "tok-1");
    }

    #[test]
    fn managed_identity_endpoint_and_imds() {
        let s = stand_in(|r| {
            r.line.starts_with(
                "GET /msi?api-version=2019-08-01&resource=https%3A%2F%2Fstorage.azure.com",
            ) && r.headers.get("x-identity-header").map(String::as_str) == Some("h1")
        });
        let t = Tokens::new(Source::from_env(env_of(&[
            ("IDENTITY_ENDPOINT", &format!("{}/msi", s.url)),
            ("IDENTITY_HEADER", "h1"),
        ])));
        assert_eq!(t.token().unwrap(), "tok-1");

        let s = stand_in(|r| {
            r.line.starts_with("GET /imds?api-version=2018-02-01")
                && r.line.ends_with("&client_id=ua1")
                && r.headers.get("metadata").map(String::as_str) == Some("true")
        });
        let t = Tokens::new(Source::Imds {
            url: format!("{}/imds", s.url),
            client_id: Some("ua1".into()),
        });
        assert_eq!(t.token().unwrap(), "tok-1");
    }

    #[test]
    fn a_refused_token_names_the_source_not_the_secret() {
        let s = stand_in(|_| false);
        let t = Tokens::new(Source::from_env(env_of(&[
            ("AZURE_TENANT_ID", "t1"),
            ("AZURE_CLIENT_ID", "c1"),
            ("AZURE_CLIENT_SECRET", "very-secret"),
            ("AZURE_AUTHORITY_HOST", &s.url),
        ])));
        let e = t.token().unwrap_err().to_string();
        assert!(
            e.contains("service principal c1") && e.contains("invalid_client"),
            "{e}"
        );
        assert!(!e.contains("very-secret"), "{e}");
    }
}
