//! Where an `abs://` replica lives and with which credentials: the URL
//! (`abs://[ACCOUNT@]CONTAINER/PATH[?endpoint=URL]`) and the environment variables
//! Litestream reads.

use crate::error::{Error, Result};

/// Where an `abs://` replica lives.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AbsConfig {
    /// Storage account name.
    pub account_name: String,
    /// Storage account key (base64, as the portal shows it).
    pub account_key: String,
    /// Shared access signature (`sv=...&sig=...`, with or without a leading `?`); when
    /// set, it is used instead of the account key, which may then be empty.
    pub sas_token: Option<String>,
    /// Container.
    pub container: String,
    /// Path inside the container.
    pub path: String,
    /// Blob service URL; default `https://<account>.blob.core.windows.net`. For Azurite:
    /// `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: Option<String>,
    /// Files above this go up in blocks of this size (default 4 MiB).
    pub block_size: u64,
    /// Blobs per listing page (at most 5000; default 5000).
    pub page_size: u32,
}

impl std::fmt::Debug for AbsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbsConfig")
            .field("account_name", &self.account_name)
            .field("account_key", &"***")
            .field("sas_token", &self.sas_token.as_ref().map(|_| "***"))
            .field("container", &self.container)
            .field("path", &self.path)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl AbsConfig {
    /// Parses `abs://[ACCOUNT@]CONTAINER/PATH[?endpoint=URL]`, taking the key (and the
    /// account, when the URL has none) from the environment.
    pub fn from_url(url: &str) -> Result<AbsConfig> {
        Self::from_parsed(url, crate::url::ReplicaUrl::parse(url)?)
    }

    /// [`AbsConfig::from_url`] for a URL already parsed (the client factory parses it once).
    pub(crate) fn from_parsed(url: &str, u: crate::url::ReplicaUrl) -> Result<AbsConfig> {
        if u.scheme != "abs" {
            return Err(Error::InvalidUrl {
                url: url.into(),
                reason: "not an abs:// url".into(),
            });
        }
        if u.host.is_empty() {
            return Err(Error::InvalidUrl {
                url: url.into(),
                reason: "abs url needs a container: abs://[ACCOUNT@]CONTAINER/PATH".into(),
            });
        }
        Ok(AbsConfig {
            account_name: u
                .username
                .clone()
                .filter(|s| !s.is_empty())
                .or_else(|| env("LITESTREAM_AZURE_ACCOUNT_NAME"))
                .or_else(|| env("AZURE_STORAGE_ACCOUNT"))
                .unwrap_or_default(),
            account_key: env("LITESTREAM_AZURE_ACCOUNT_KEY")
                .or_else(|| env("AZURE_STORAGE_KEY"))
                .unwrap_or_default(),
            sas_token: env("LITESTREAM_AZURE_SAS_TOKEN"),
            container: u.host.clone(),
            path: u.path.trim_matches('/').to_string(),
            endpoint: u
                .query("endpoint")
                .map(|e| e.trim_end_matches('/').to_string()),
            block_size: 4 << 20,
            page_size: 5000,
        })
    }
}
