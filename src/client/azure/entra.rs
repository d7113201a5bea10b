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
//! Tokens are cached until five minutes before they expire ([`TokenCache`]).

use crate::client::http::{TokenCache, TokenRequest};
use crate::error::{Error, Result};
use crate::wire::uri;

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
                uri::encode(tenant, false)
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

/// Access tokens from one [`Source`], cached until five minutes before they expire.
pub(crate) struct Tokens {
    source: Source,
    agent: ureq::Agent,
    cache: TokenCache,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    pub(crate) fn new(source: Source) -> Result<Tokens> {
        Ok(Tokens {
            source,
            agent: crate::client::http::agent(false)?,
            cache: TokenCache::new(300, 30),
        })
    }

    pub(crate) fn source(&self) -> &Source {
        &self.source
    }

    /// A valid access token for Azure Storage.
    pub(crate) fn token(&self) -> Result<String> {
        self.cache
            .get(&self.agent, "abs", &self.source.describe(), || {
                self.request()
            })
    }

    /// The token request of the source.
    fn request(&self) -> Result<TokenRequest> {
        let with_client_id = |mut url: String, client_id: &Option<String>| {
            if let Some(id) = client_id {
                url.push_str(&format!("&client_id={}", uri::encode(id, false)));
            }
            url
        };
        Ok(match &self.source {
            Source::ClientSecret {
                token_url,
                client_id,
                secret,
            } => TokenRequest::Form {
                url: token_url.clone(),
                body: format!(
                    "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
                    uri::encode(client_id, false),
                    uri::encode(&secret.0, false),
                    uri::encode(SCOPE, false)
                ),
            },
            Source::Workload {
                token_url,
                client_id,
                token_file,
            } => {
                let assertion = std::fs::read_to_string(token_file).map_err(|e| {
                    Error::io(format!("read AZURE_FEDERATED_TOKEN_FILE {token_file}"), e)
                })?;
                TokenRequest::Form {
                    url: token_url.clone(),
                    body: format!(
                        "grant_type=client_credentials&client_id={}&scope={}\
                         &client_assertion_type={}&client_assertion={}",
                        uri::encode(client_id, false),
                        uri::encode(SCOPE, false),
                        uri::encode(
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                            false
                        ),
                        uri::encode(assertion.trim(), false)
                    ),
                }
            }
            Source::AppService {
                endpoint,
                header,
                client_id,
            } => TokenRequest::Get {
                url: with_client_id(
                    format!(
                        "{endpoint}?api-version=2019-08-01&resource={}",
                        uri::encode(RESOURCE, false)
                    ),
                    client_id,
                ),
                headers: vec![("x-identity-header", header.0.clone())],
            },
            Source::Imds { url, client_id } => TokenRequest::Get {
                url: with_client_id(
                    format!(
                        "{url}?api-version=2018-02-01&resource={}",
                        uri::encode(RESOURCE, false)
                    ),
                    client_id,
                ),
                headers: vec![("metadata", "true".into())],
            },
        })
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
        ])))
        .unwrap();
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
        ])))
        .unwrap();
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
        ])))
        .unwrap();
        assert_eq!(t.token().unwrap(), "tok-1");

        let s = stand_in(|r| {
            r.line.starts_with("GET /imds?api-version=2018-02-01")
                && r.line.ends_with("&client_id=ua1")
                && r.headers.get("metadata").map(String::as_str) == Some("true")
        });
        let t = Tokens::new(Source::Imds {
            url: format!("{}/imds", s.url),
            client_id: Some("ua1".into()),
        })
        .unwrap();
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
        ])))
        .unwrap();
        let e = t.token().unwrap_err().to_string();
        assert!(
            e.contains("service principal c1") && e.contains("invalid_client"),
            "{e}"
        );
        assert!(!e.contains("very-secret"), "{e}");
    }
}
