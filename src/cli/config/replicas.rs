//! A replica's keys (`replica:`, an entry of `replicas:`, or the global defaults).

use super::reader::{err, Obj};
use super::ReplicaConfig;
use crate::cli::yaml::{Node, Value};
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
    if let Some(n) = o.entry("name") {
        o.str("name")?;
        warnings.push(format!(
            "config line {}: the replica \"name\" key is deprecated and has no effect; remove it",
            n.line
        ));
    }
    o.ignored(
        warnings,
        &["validation-interval"],
        "Litestream does not use it either",
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::cli::config::databases::{build_db, resolve_dbs};
    use crate::cli::config::parse;

    #[cfg(feature = "webdav")]
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

    #[cfg(feature = "azure")]
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

    #[cfg(all(feature = "gcs", feature = "s3"))]
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
