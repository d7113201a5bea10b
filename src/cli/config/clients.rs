//! From a replica's keys to its client: the URL (parsed once by the library's one client
//! factory, [`ClientConfig`]) or `type` gives the backend's configuration, and the other
//! `litestream.yml` keys overlay it.

use std::path::PathBuf;
use std::sync::Arc;

use super::reader::err;
use super::ReplicaConfig;
use crate::client::{not_built, ClientConfig, ReplicaClient};
use crate::error::{Error, Result};

/// Builds the replica client a replica config describes; `sub_path` is appended to its
/// path (a database found under a `dir` entry).
pub(crate) fn build_client(
    r: &ReplicaConfig,
    sub_path: Option<&str>,
) -> Result<Arc<dyn ReplicaClient>> {
    let mut c = base(r)?;
    let join = |base: &str| -> String {
        match sub_path {
            Some(s) if base.is_empty() => s.to_string(),
            Some(s) => format!("{}/{s}", base.trim_end_matches('/')),
            None => base.to_string(),
        }
    };
    overlay(&mut c, r, &join)?;
    c.build()
}

/// The configuration the replica's `url` describes, else the one its `type` and the keys
/// that name a place (`bucket`, `path`, `webdav-url`, `host`) describe.
fn base(r: &ReplicaConfig) -> Result<ClientConfig> {
    let at = |m: String| err(r.line, m);
    // GCS through its JSON API as Litestream; with HMAC keys, the S3-compatible one.
    let gcs_via_s3 = r.explicit_access_key;
    if let Some(u) = &r.url {
        return ClientConfig::parse(u, gcs_via_s3).map_err(|e| match e {
            Error::InvalidUrl { url, reason } => at(format!("replica url {url:?}: {reason}")),
            e => e,
        });
    }
    let kind = r.kind.as_deref().unwrap_or("file");
    let bucket = || {
        r.bucket
            .clone()
            .ok_or_else(|| at(format!("a {kind} replica needs a bucket or url")))
    };
    match kind {
        "file" => match &r.path {
            Some(p) => Ok(ClientConfig::File(PathBuf::from(p))),
            None => Err(at("a file replica needs a path or url".into())),
        },
        "s3" | "oss" | "gs" | "abs" => {
            ClientConfig::parse(&format!("{kind}://{}/", bucket()?), gcs_via_s3).map_err(
                |e| match e {
                    Error::InvalidUrl { reason, .. } => at(reason),
                    e => e,
                },
            )
        }
        #[cfg(feature = "webdav")]
        "webdav" | "webdavs" => match &r.webdav_url {
            Some(base) => Ok(ClientConfig::WebDav(crate::client::WebDavConfig {
                base_url: base.trim_end_matches('/').to_string(),
                ..Default::default()
            })),
            None => Err(at("a webdav replica needs a url or webdav-url".into())),
        },
        #[cfg(feature = "nats")]
        "nats" => Err(at(
            "a nats replica needs a url (nats://host:4222/bucket)".into()
        )),
        #[cfg(feature = "sftp")]
        "sftp" => Ok(ClientConfig::Sftp(crate::client::SftpConfig {
            port: 22,
            ..Default::default()
        })),
        other => Err(at(format!(
            "replica type {other:?}: {}",
            not_built(other, false)
        ))),
    }
}

/// Overlays the replica's keys on its backend's configuration.
fn overlay(c: &mut ClientConfig, r: &ReplicaConfig, join: &dyn Fn(&str) -> String) -> Result<()> {
    match c {
        // The place came from the url, else from `path`: only a sub-path is left to add.
        ClientConfig::File(p) => {
            let joined = join(&p.to_string_lossy());
            *p = crate::cli::paths::expand(&joined).map_err(|e| err(r.line, e))?;
            Ok(())
        }
        #[cfg(feature = "s3")]
        ClientConfig::S3(c) => {
            s3(c, r, join);
            Ok(())
        }
        #[cfg(feature = "gcs")]
        ClientConfig::Gcs(c) => {
            if let Some(p) = &r.path {
                c.path = p.trim_matches('/').to_string();
            }
            c.path = join(&c.path);
            if let Some(b) = &r.bucket {
                c.bucket = b.clone();
            }
            if let Some(e) = &r.endpoint {
                c.endpoint = Some(crate::url::normalize_endpoint(e));
            }
            Ok(())
        }
        #[cfg(feature = "azure")]
        ClientConfig::Azure(c) => {
            if let Some(b) = &r.bucket {
                c.container = b.clone();
            }
            if let Some(p) = &r.path {
                c.path = p.trim_matches('/').to_string();
            }
            c.path = join(&c.path);
            if let Some(v) = &r.account_name {
                c.account_name = v.clone();
            }
            if let Some(v) = &r.account_key {
                c.account_key = v.clone();
            }
            if let Some(v) = &r.sas_token {
                c.sas_token = Some(v.clone());
            }
            if let Some(e) = &r.endpoint {
                c.endpoint = Some(crate::url::normalize_endpoint(e));
            }
            Ok(())
        }
        #[cfg(feature = "webdav")]
        ClientConfig::WebDav(c) => {
            if let Some(p) = &r.path {
                c.path = p.clone();
            }
            c.path = join(&c.path);
            if let Some(v) = &r.webdav_username {
                c.username = Some(v.clone());
            }
            if let Some(v) = &r.webdav_password {
                c.password = Some(v.clone());
            }
            Ok(())
        }
        #[cfg(feature = "nats")]
        ClientConfig::Nats(c) => nats(c, r, join),
        #[cfg(feature = "sftp")]
        ClientConfig::Sftp(c) => sftp(c, r, join),
    }
}

#[cfg(feature = "s3")]
fn s3(c: &mut crate::client::s3::S3Config, r: &ReplicaConfig, join: &dyn Fn(&str) -> String) {
    if let Some(p) = &r.path {
        c.path = p.clone();
    }
    c.path = join(&c.path);
    if let Some(b) = &r.bucket {
        c.bucket = b.clone();
    }
    if let Some(v) = &r.region {
        c.region = Some(v.clone());
    }
    if let Some(e) = &r.endpoint {
        c.endpoint = Some(crate::url::normalize_endpoint(e));
        c.force_path_style = true;
    }
    if let Some(v) = r.force_path_style {
        c.force_path_style = v;
    }
    if let Some(v) = r.sign_payload {
        c.sign_payload = v;
    }
    if let Some(v) = r.require_content_md5 {
        c.require_content_md5 = v;
    }
    if let Some(v) = r.skip_verify {
        c.skip_verify = v;
    }
    if let Some(v) = &r.storage_class {
        c.storage_class = Some(v.clone());
    }
    if let Some(v) = r.part_size {
        c.part_size = v;
    }
    if let Some(v) = r.concurrency {
        c.concurrency = v;
    }
    if let Some(v) = &r.sse_customer_key {
        c.sse_customer_key = Some(v.clone());
    }
    if let Some(v) = &r.sse_kms_key_id {
        c.sse_kms_key_id = Some(v.clone());
    }
    if let (Some(id), Some(secret)) = (&r.access_key_id, &r.secret_access_key) {
        c.credentials = Some(crate::client::s3::Credentials {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
            session_token: None,
        });
    }
    c.apply_provider_defaults();
}

#[cfg(feature = "nats")]
fn nats(
    c: &mut crate::client::NatsConfig,
    r: &ReplicaConfig,
    join: &dyn Fn(&str) -> String,
) -> Result<()> {
    let at = |m: String| err(r.line, m);
    if let Some(b) = &r.bucket {
        c.bucket = b.clone();
    }
    if let Some(p) = &r.path {
        c.path = p.clone();
    }
    c.path = join(&c.path);
    if let Some(v) = &r.username {
        c.username = Some(v.clone());
    }
    if let Some(v) = &r.password {
        c.password = Some(v.clone());
    }
    if let Some(v) = &r.token {
        c.token = Some(v.clone());
    }
    if let Some(v) = &r.seed {
        c.seed = Some(v.clone());
    }
    if let Some(v) = &r.jwt {
        c.jwt = Some(v.clone());
    }
    if let Some(p) = &r.creds {
        c.load_creds(std::path::Path::new(p))
            .map_err(|e| at(e.to_string()))?;
    }
    if let Some(t) = r.tls {
        c.tls = t;
    }
    c.root_cas = r.root_cas.iter().map(PathBuf::from).collect();
    match (&r.client_cert, &r.client_key) {
        (Some(cert), Some(key)) => c.client_cert = Some((PathBuf::from(cert), PathBuf::from(key))),
        (None, None) => {}
        _ => return Err(at("nats client-cert and client-key go together".to_string())),
    }
    if c.jwt.is_some() && c.seed.is_none() {
        return Err(at(
            "nats \"jwt\" needs its \"seed\" (or use a creds file)".into()
        ));
    }
    Ok(())
}

#[cfg(feature = "sftp")]
fn sftp(
    c: &mut crate::client::SftpConfig,
    r: &ReplicaConfig,
    join: &dyn Fn(&str) -> String,
) -> Result<()> {
    if let Some(h) = &r.host {
        // `host: name[:port]`
        match h
            .rsplit_once(':')
            .and_then(|(n, p)| Some((n, p.parse().ok()?)))
        {
            Some((n, p)) => {
                c.host = n.to_string();
                c.port = p;
            }
            None => c.host = h.clone(),
        }
    }
    if let Some(v) = &r.user {
        c.user = v.clone();
    }
    if let Some(v) = &r.password {
        c.password = Some(v.clone());
    }
    if let Some(v) = &r.key_path {
        c.key_path = Some(v.into());
    }
    if let Some(v) = &r.host_key {
        c.host_key = Some(v.clone());
    }
    if let Some(p) = &r.path {
        c.path = p.clone();
    }
    c.path = join(&c.path);
    if c.host.is_empty() || c.user.is_empty() {
        return Err(err(
            r.line,
            "an sftp replica needs a host and a user (or a url)",
        ));
    }
    Ok(())
}
