//! A replica's keys (`replica:`, an entry of `replicas:`, or the global defaults) and the
//! replica client they describe.

use std::path::PathBuf;
use std::sync::Arc;

use super::reader::{err, Obj};
use super::ReplicaConfig;
use crate::cli::yaml::{Node, Value};
use crate::client::s3::{S3Client, S3Config};
use crate::client::{FileClient, ReplicaClient};
use crate::error::Result;

/// Reads one replica mapping over the global `defaults`.
pub(super) fn read_replica(
    node: &Node,
    defaults: &ReplicaConfig,
    warnings: &mut Vec<String>,
    ctx: &'static str,
) -> Result<ReplicaConfig> {
    let mut o = Obj::new(node, ctx)?;
    let mut r = defaults.clone();
    r.line = node.line;
    let inherited = r.access_key_id.take();
    read_replica_fields(&mut o, &mut r, warnings)?;
    r.explicit_access_key = r.access_key_id.is_some();
    if r.access_key_id.is_none() {
        r.access_key_id = inherited;
    }
    o.finish()?;
    Ok(r)
}

/// Reads the replica keys of a mapping into `r` (also the global defaults, at the top level).
pub(super) fn read_replica_fields(
    o: &mut Obj<'_>,
    r: &mut ReplicaConfig,
    warnings: &mut Vec<String>,
) -> Result<()> {
    macro_rules! set {
        ($field:ident, $v:expr) => {
            if let Some(v) = $v {
                r.$field = Some(v);
            }
        };
    }
    set!(kind, o.str("type")?);
    set!(url, o.str("url")?);
    set!(path, o.str("path")?);
    set!(sync_interval, o.duration("sync-interval")?);
    set!(bucket, o.str("bucket")?);
    set!(region, o.str("region")?);
    set!(endpoint, o.str("endpoint")?);
    set!(access_key_id, o.str("access-key-id")?);
    set!(secret_access_key, o.str("secret-access-key")?);
    set!(force_path_style, o.bool("force-path-style")?);
    set!(sign_payload, o.bool("sign-payload")?);
    set!(require_content_md5, o.bool("require-content-md5")?);
    set!(skip_verify, o.bool("skip-verify")?);
    set!(storage_class, o.str("storage-class")?);
    set!(part_size, o.size("part-size")?);
    if let Some(c) = o.int("concurrency")? {
        if c <= 0 {
            return Err(err(o.line, "concurrency must be greater than zero"));
        }
        r.concurrency = Some(c as usize);
    }
    set!(sse_customer_key, o.str("sse-customer-key")?);
    if let Some(p) = o.str("sse-customer-key-path")? {
        let key = std::fs::read_to_string(&p)
            .map_err(|e| err(o.line, format!("sse-customer-key-path {p}: {e}")))?;
        r.sse_customer_key = Some(key.trim().to_string());
    }
    if let Some(a) = o.str("sse-customer-algorithm")? {
        if a != "AES256" {
            return Err(err(
                o.line,
                format!("sse-customer-algorithm {a:?}: only AES256 exists"),
            ));
        }
    }
    set!(sse_kms_key_id, o.str("sse-kms-key-id")?);
    set!(account_name, o.str("account-name")?);
    set!(account_key, o.str("account-key")?);
    set!(sas_token, o.str("sas-token")?);
    set!(webdav_url, o.str("webdav-url")?);
    set!(webdav_username, o.str("webdav-username")?);
    set!(webdav_password, o.str("webdav-password")?);
    set!(host, o.str("host")?);
    set!(user, o.str("user")?);
    set!(password, o.str("password")?);
    set!(key_path, o.str("key-path")?);
    set!(host_key, o.str("host-key")?);
    set!(username, o.str("username")?);
    set!(token, o.str("token")?);
    set!(seed, o.str("seed")?);
    set!(jwt, o.str("jwt")?);
    set!(creds, o.str("creds")?);
    if o.get("nkey").is_some() {
        return Err(err(
            o.line,
            "nats \"nkey\" (a public key) cannot sign anything from a config file, in Litestream either: give the seed (`seed: SU...`) or a `creds` file".to_string(),
        ));
    }
    set!(tls, o.bool("tls")?);
    set!(client_cert, o.str("client-cert")?);
    set!(client_key, o.str("client-key")?);
    if let Some(n) = o.get("root-cas") {
        r.root_cas = match &n.value {
            Value::Str(one) => vec![one.clone()],
            Value::Seq(items) => items
                .iter()
                .map(|i| match &i.value {
                    Value::Str(v) => Ok(v.clone()),
                    _ => Err(err(i.line, "root-cas: each entry must be a file path")),
                })
                .collect::<Result<Vec<_>>>()?,
            _ => return Err(err(n.line, "root-cas must be a list of file paths")),
        };
    }
    o.ignored(
        warnings,
        &[
            "max-reconnects",
            "reconnect-wait",
            "reconnect-jitter",
            "timeout",
            "ping-interval",
            "max-pings-outstanding",
            "reconnect-buf-size",
        ],
        "the nats client reconnects on its own with bounded retries",
    );
    o.ignored(
        warnings,
        &["concurrent-writes"],
        "each upload uses its own temporary file and rename",
    );
    if o.get("age").is_some() {
        return Err(err(o.line, "age encryption is not currently supported"));
    }
    o.ignored(
        warnings,
        &["max-sync-ltx-files"],
        "uploads always drain the backlog",
    );
    o.ignored(
        warnings,
        &["auto-recover"],
        "recovery from damaged local state is always on",
    );
    o.ignored(
        warnings,
        &["validation-interval"],
        "Litestream does not use it either",
    );
    Ok(())
}

/// Builds the replica client a replica config describes.
pub(crate) fn build_client(
    r: &ReplicaConfig,
    sub_path: Option<&str>,
) -> Result<Arc<dyn ReplicaClient>> {
    let scheme = r
        .url
        .as_deref()
        .and_then(|u| u.split_once("://").map(|(s, _)| s.to_ascii_lowercase()));
    let kind = scheme
        .clone()
        .or_else(|| r.kind.clone())
        .unwrap_or_else(|| "file".into());
    let at = |m: String| err(r.line, m);
    let join = |base: &str| -> String {
        match sub_path {
            Some(s) if base.is_empty() => s.to_string(),
            Some(s) => format!("{}/{s}", base.trim_end_matches('/')),
            None => base.to_string(),
        }
    };
    match kind.as_str() {
        "file" => {
            let base = match (&r.url, &r.path) {
                (Some(u), _) => crate::url::ReplicaUrl::parse(u)?.path,
                (None, Some(p)) => p.clone(),
                (None, None) => return Err(at("a file replica needs a path or url".into())),
            };
            Ok(Arc::new(FileClient::new(join(&base))))
        }
        // GCS through its JSON API as Litestream; with HMAC keys, the S3-compatible one.
        "gs" if !r.explicit_access_key => {
            let mut c = match &r.url {
                Some(u) => crate::client::GcsConfig::from_url(u)?,
                None => {
                    let bucket = r
                        .bucket
                        .clone()
                        .ok_or_else(|| at("a gs replica needs a bucket or url".into()))?;
                    crate::client::GcsConfig::from_url(&format!("gs://{bucket}/"))?
                }
            };
            if let Some(p) = &r.path {
                c.path = p.trim_matches('/').to_string();
            }
            c.path = join(&c.path);
            if let Some(b) = &r.bucket {
                c.bucket = b.clone();
            }
            if let Some(e) = &r.endpoint {
                c.endpoint = Some(crate::client::s3::normalize_endpoint(e));
            }
            Ok(Arc::new(crate::client::GcsClient::new(c)?))
        }
        "s3" | "oss" | "gs" => {
            let mut c = match &r.url {
                Some(u) => S3Config::from_url(u)?,
                None => {
                    let bucket = r
                        .bucket
                        .clone()
                        .ok_or_else(|| at(format!("an {kind} replica needs a bucket or url")))?;
                    let mut c = S3Config::from_url(&format!("{kind}://{bucket}/"))?;
                    c.path = r.path.clone().unwrap_or_default();
                    c
                }
            };
            if let Some(p) = &r.path {
                if r.url.is_some() {
                    c.path = p.clone();
                }
            }
            c.path = join(&c.path);
            if let Some(b) = &r.bucket {
                c.bucket = b.clone();
            }
            if let Some(v) = &r.region {
                c.region = Some(v.clone());
            }
            if let Some(e) = &r.endpoint {
                c.endpoint = Some(crate::client::s3::normalize_endpoint(e));
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
            Ok(Arc::new(S3Client::new(c)?))
        }
        "abs" => {
            let mut c = match &r.url {
                Some(u) => crate::client::AbsConfig::from_url(u)?,
                None => {
                    let bucket = r
                        .bucket
                        .clone()
                        .ok_or_else(|| at("an abs replica needs a bucket (container) or url".into()))?;
                    crate::client::AbsConfig::from_url(&format!("abs://{bucket}/"))?
                }
            };
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
                c.endpoint = Some(crate::client::s3::normalize_endpoint(e));
            }
            Ok(Arc::new(crate::client::AbsClient::new(c)?))
        }
        "webdav" | "webdavs" => {
            let mut c = match (&r.url, &r.webdav_url) {
                (Some(u), _) => crate::client::WebDavConfig::from_url(u)?,
                (None, Some(base)) => crate::client::WebDavConfig {
                    base_url: base.trim_end_matches('/').to_string(),
                    ..Default::default()
                },
                (None, None) => {
                    return Err(at("a webdav replica needs a url or webdav-url".into()))
                }
            };
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
            Ok(Arc::new(crate::client::WebDavClient::new(c)?))
        }
        "nats" => {
            let mut c = match &r.url {
                Some(u) => crate::client::NatsConfig::from_url(u)?,
                None => return Err(at("a nats replica needs a url (nats://host:4222/bucket)".into())),
            };
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
                (Some(cert), Some(key)) => {
                    c.client_cert = Some((PathBuf::from(cert), PathBuf::from(key)))
                }
                (None, None) => {}
                _ => {
                    return Err(at(
                        "nats client-cert and client-key go together".to_string(),
                    ))
                }
            }
            if c.jwt.is_some() && c.seed.is_none() {
                return Err(at("nats \"jwt\" needs its \"seed\" (or use a creds file)".into()));
            }
            Ok(Arc::new(crate::client::NatsClient::new(c)))
        }
        #[cfg(feature = "sftp")]
        "sftp" => {
            let mut c = match &r.url {
                Some(u) => crate::client::SftpConfig::from_url(u)?,
                None => crate::client::SftpConfig {
                    port: 22,
                    ..Default::default()
                },
            };
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
                return Err(at(
                    "an sftp replica needs a host and a user (or a url)".into()
                ));
            }
            Ok(Arc::new(crate::client::SftpClient::new(c)?))
        }
        #[cfg(not(feature = "sftp"))]
        "sftp" => Err(at(
            "sftp replicas need the `sftp` cargo feature (build with --features sftp)".into(),
        )),
        other => Err(at(format!(
            "replica type {other:?} is not supported by this version (file, s3, oss, gs, abs, sftp, webdav, nats are)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::config::databases::{build_db, resolve_dbs};
    use crate::cli::config::parse;

    #[test]
    fn webdav_keys_reach_the_client() {
        let doc = "dbs:\n  - path: /tmp/dav.db\n    replica:\n      type: webdav\n      webdav-url: http://127.0.0.1:9/\n      webdav-username: u\n      webdav-password: secret\n      path: /backups/dav\n";
        let cfg = parse(doc).unwrap();
        let resolved = resolve_dbs(&cfg).unwrap();
        let d = build_db(&resolved[0]).unwrap();
        let dbg = format!("{:?}", d.replicas[0].client);
        assert!(dbg.starts_with("WebDavClient"), "{dbg}");
        assert!(
            dbg.contains("http://127.0.0.1:9") && dbg.contains("/backups/dav"),
            "{dbg}"
        );
        assert!(!dbg.contains("secret"), "{dbg}");
    }

    #[test]
    fn abs_keys_reach_the_client() {
        let doc = "dbs:\n  - path: /tmp/abs-a.db\n    replica:\n      type: abs\n      account-name: acct\n      account-key: c2VjcmV0LWtleQ==\n      bucket: ctr\n      path: /backups/a\n      endpoint: http://127.0.0.1:9/acct\n  - path: /tmp/abs-b.db\n    replica:\n      url: abs://acct@ctr/b\n      sas-token: ?sv=2021-08-06&sig=SECRETSIG\n";
        let cfg = parse(doc).unwrap();
        let resolved = resolve_dbs(&cfg).unwrap();
        for (i, want) in [(0, "backups/a"), (1, "\"b\"")] {
            let d = build_db(&resolved[i]).unwrap();
            let dbg = format!("{:?}", d.replicas[0].client);
            assert!(dbg.starts_with("AbsClient"), "{dbg}");
            assert!(
                dbg.contains("\"acct\"") && dbg.contains("\"ctr\"") && dbg.contains(want),
                "{dbg}"
            );
            assert!(
                !dbg.contains("c2VjcmV0") && !dbg.contains("SECRETSIG"),
                "{dbg}"
            );
        }
    }

    #[test]
    fn gs_uses_the_json_api_unless_the_replica_has_hmac_keys() {
        let doc = "access-key-id: AK\nsecret-access-key: SK\ndbs:\n  - path: /tmp/gs-a.db\n    replica:\n      type: gs\n      bucket: bkt\n      path: a\n      endpoint: http://127.0.0.1:9\n  - path: /tmp/gs-b.db\n    replica:\n      url: gs://bkt/b\n      access-key-id: HMAC\n      secret-access-key: SECRET\n";
        let cfg = parse(doc).unwrap();
        let resolved = resolve_dbs(&cfg).unwrap();
        let a = build_db(&resolved[0]).unwrap();
        let b = build_db(&resolved[1]).unwrap();
        let dbg_a = format!("{:?}", a.replicas[0].client);
        let dbg_b = format!("{:?}", b.replicas[0].client);
        assert!(dbg_a.starts_with("GcsClient"), "{dbg_a}");
        assert!(dbg_a.contains("\"a\""), "{dbg_a}");
        assert!(dbg_b.starts_with("S3Client"), "{dbg_b}");
    }
}
