//! The one client factory: [`ClientConfig`] is a backend's configuration, built from a
//! replica URL (parsed once) — and, in the CLI, overlaid with `litestream.yml` keys —
//! then [`ClientConfig::build`] makes the client. A URL whose backend this build leaves
//! out is a clear error naming the cargo feature that brings it.

use std::path::PathBuf;
use std::sync::Arc;

#[cfg(feature = "azure")]
use super::azure::{AbsClient, AbsConfig};
use super::file::FileClient;
#[cfg(feature = "gcs")]
use super::gcs::{GcsClient, GcsConfig};
#[cfg(feature = "nats")]
use super::nats::{NatsClient, NatsConfig};
#[cfg(feature = "s3")]
use super::s3::{S3Client, S3Config};
#[cfg(feature = "sftp")]
use super::sftp::{SftpClient, SftpConfig};
#[cfg(feature = "webdav")]
use super::webdav::{WebDavClient, WebDavConfig};
use super::ReplicaClient;
use crate::error::{Error, Result};
use crate::url::{clean_path, ReplicaUrl};

/// A replica client's configuration, one variant per backend compiled into this build.
#[derive(Debug, Clone)]
#[non_exhaustive]
// Built once per replica; boxing the larger variants would only cost their users a `Box`.
#[allow(clippy::large_enum_variant)]
pub enum ClientConfig {
    /// `file:///PATH`: a directory on a local file system.
    File(PathBuf),
    /// `s3://`, `oss://`, and `gs://` with HMAC keys (feature `s3`).
    #[cfg(feature = "s3")]
    S3(S3Config),
    /// `gs://` through the JSON API (feature `gcs`).
    #[cfg(feature = "gcs")]
    Gcs(GcsConfig),
    /// `abs://`: Azure Blob Storage (feature `azure`).
    #[cfg(feature = "azure")]
    Azure(AbsConfig),
    /// `webdav://`, `webdavs://` (feature `webdav`).
    #[cfg(feature = "webdav")]
    WebDav(WebDavConfig),
    /// `nats://`: a JetStream object store (feature `nats`).
    #[cfg(feature = "nats")]
    Nats(NatsConfig),
    /// `sftp://` (feature `sftp`, off by default).
    #[cfg(feature = "sftp")]
    Sftp(SftpConfig),
}

impl ClientConfig {
    /// The configuration a replica URL describes.
    pub fn from_url(url: &str) -> Result<ClientConfig> {
        Self::parse(url, false)
    }

    /// Like [`ClientConfig::from_url`]; `gcs_via_s3` reads a `gs://` URL for the
    /// S3-compatible API (HMAC keys) instead of the JSON API.
    pub fn parse(url: &str, gcs_via_s3: bool) -> Result<ClientConfig> {
        let u = ReplicaUrl::parse(url)?;
        let scheme = u.scheme.clone();
        match (scheme.as_str(), gcs_via_s3) {
            ("file", _) => {
                let path = clean_path(&u.path);
                if path == "." || path.is_empty() {
                    return Err(Error::InvalidUrl {
                        url: url.to_string(),
                        reason: "file url has no path".into(),
                    });
                }
                Ok(ClientConfig::File(path.into()))
            }
            #[cfg(feature = "s3")]
            ("s3" | "oss", _) | ("gs", true) => {
                Ok(ClientConfig::S3(S3Config::from_parsed(url, u)?))
            }
            #[cfg(feature = "gcs")]
            ("gs", false) => Ok(ClientConfig::Gcs(GcsConfig::from_parsed(url, u)?)),
            #[cfg(feature = "azure")]
            ("abs", _) => Ok(ClientConfig::Azure(AbsConfig::from_parsed(url, u)?)),
            #[cfg(feature = "webdav")]
            ("webdav" | "webdavs", _) => {
                Ok(ClientConfig::WebDav(WebDavConfig::from_parsed(url, u)?))
            }
            #[cfg(feature = "nats")]
            ("nats", _) => Ok(ClientConfig::Nats(NatsConfig::from_parsed(url, u)?)),
            #[cfg(feature = "sftp")]
            ("sftp", _) => Ok(ClientConfig::Sftp(SftpConfig::from_parsed(url, u)?)),
            (other, via) => Err(Error::InvalidUrl {
                url: url.to_string(),
                reason: not_built(other, via),
            }),
        }
    }

    /// Makes the client. No request is made until its first operation.
    pub fn build(self) -> Result<Arc<dyn ReplicaClient>> {
        Ok(match self {
            ClientConfig::File(p) => Arc::new(FileClient::new(p)),
            #[cfg(feature = "s3")]
            ClientConfig::S3(c) => Arc::new(S3Client::new(c)?),
            #[cfg(feature = "gcs")]
            ClientConfig::Gcs(c) => Arc::new(GcsClient::new(c)?),
            #[cfg(feature = "azure")]
            ClientConfig::Azure(c) => Arc::new(AbsClient::new(c)?),
            #[cfg(feature = "webdav")]
            ClientConfig::WebDav(c) => Arc::new(WebDavClient::new(c)?),
            #[cfg(feature = "nats")]
            ClientConfig::Nats(c) => Arc::new(NatsClient::new(c)),
            #[cfg(feature = "sftp")]
            ClientConfig::Sftp(c) => Arc::new(SftpClient::new(c)?),
        })
    }
}

/// Builds a client from a replica URL: `file:///path`, `s3://bucket/path`, `gs://`,
/// `abs://`, `webdav[s]://`, `nats://`, `sftp://` (each backend behind its cargo feature).
pub fn from_url(url: &str) -> Result<Arc<dyn ReplicaClient>> {
    ClientConfig::from_url(url)?.build()
}

/// The cargo feature that brings the backend of `scheme`, if one does.
pub(crate) fn feature_for(scheme: &str, gcs_via_s3: bool) -> Option<&'static str> {
    match scheme {
        "s3" | "oss" => Some("s3"),
        "gs" if gcs_via_s3 => Some("s3"),
        "gs" => Some("gcs"),
        "abs" => Some("azure"),
        "webdav" | "webdavs" => Some("webdav"),
        "nats" => Some("nats"),
        "sftp" => Some("sftp"),
        _ => None,
    }
}

/// Why a scheme has no client in this build: the feature to enable, or that there is none.
pub(crate) fn not_built(scheme: &str, gcs_via_s3: bool) -> String {
    match feature_for(scheme, gcs_via_s3) {
        Some(f) => format!(
            "{scheme}:// replicas need the `{f}` cargo feature, which this build leaves out \
             (build with `--features {f}`)"
        ),
        None => format!(
            "unsupported scheme {scheme:?} (file, s3, oss, gs, abs, webdav, webdavs, nats, sftp are)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_their_backend_and_a_missing_one_names_its_feature() {
        assert!(matches!(
            ClientConfig::from_url("file:///tmp/x"),
            Ok(ClientConfig::File(_))
        ));
        assert!(ClientConfig::from_url("file://").is_err());
        let e = ClientConfig::from_url("ftp://host/x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsupported scheme"), "{e}");
        #[cfg(not(feature = "nats"))]
        {
            let e = ClientConfig::from_url("nats://127.0.0.1/b")
                .unwrap_err()
                .to_string();
            assert!(e.contains("`nats` cargo feature"), "{e}");
        }
        #[cfg(feature = "s3")]
        assert!(matches!(
            ClientConfig::parse("gs://bkt/p", true),
            Ok(ClientConfig::S3(_))
        ));
        #[cfg(feature = "gcs")]
        assert!(matches!(
            ClientConfig::from_url("gs://bkt/p"),
            Ok(ClientConfig::Gcs(_))
        ));
        #[cfg(not(feature = "s3"))]
        {
            let e = ClientConfig::from_url("s3://bkt/p")
                .unwrap_err()
                .to_string();
            assert!(e.contains("`s3` cargo feature"), "{e}");
        }
    }
}
