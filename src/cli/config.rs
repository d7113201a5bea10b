//! `litestream.yml`, with the keys Litestream users already have. Unknown keys are errors
//! naming the key and line; keys Litestream itself parses but ignores give a warning.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::yaml::{self, Node, Value};
use crate::client::s3::{parse_size, S3Client, S3Config};
use crate::client::{FileClient, ReplicaClient};
use crate::{CompactionLevels, Db, Error, Replica, Result, Store};

/// The parsed configuration.
#[derive(Debug, Default)]
pub(crate) struct Config {
    pub dbs: Vec<DbConfig>,
    pub levels: Option<Vec<Duration>>,
    pub snapshot_interval: Option<Duration>,
    pub snapshot_retention: Option<Duration>,
    pub l0_retention: Option<Duration>,
    pub l0_retention_check_interval: Option<Duration>,
    pub retention_enabled: Option<bool>,
    pub shutdown_sync_timeout: Option<Duration>,
    pub addr: Option<String>,
    pub exec: Option<String>,
    pub log_level: Option<String>,
    pub log_json: bool,
    pub log_stdout: bool,
    pub warnings: Vec<String>,
}

/// One `dbs:` entry.
#[derive(Debug, Default, Clone)]
pub(crate) struct DbConfig {
    pub path: Option<PathBuf>,
    pub dir: Option<PathBuf>,
    pub pattern: Option<String>,
    pub recursive: bool,
    pub meta_path: Option<PathBuf>,
    pub meta_dir: Option<PathBuf>,
    pub monitor_interval: Option<Duration>,
    pub checkpoint_interval: Option<Duration>,
    pub busy_timeout: Option<Duration>,
    pub min_checkpoint_pages: Option<u32>,
    pub truncate_pages: Option<i64>,
    pub max_sync_wal_bytes: Option<u64>,
    pub restore_if_db_not_exists: bool,
    pub replicas: Vec<ReplicaConfig>,
}

/// One replica (`replica:` or an entry of `replicas:`), with global defaults merged in.
#[derive(Debug, Default, Clone)]
pub(crate) struct ReplicaConfig {
    pub line: usize,
    pub kind: Option<String>,
    pub url: Option<String>,
    pub path: Option<String>,
    pub sync_interval: Option<Duration>,
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    /// The replica itself sets `access-key-id` (not only the global default): for `gs`,
    /// that selects HMAC keys through the S3-compatible API.
    pub explicit_access_key: bool,
    /// abs: storage account.
    pub account_name: Option<String>,
    /// abs: storage account key.
    pub account_key: Option<String>,
    /// abs: shared access signature (a query string), used instead of the account key.
    pub sas_token: Option<String>,
    /// webdav: server URL (`http://host:port`).
    pub webdav_url: Option<String>,
    /// webdav: Basic-auth user.
    pub webdav_username: Option<String>,
    /// webdav: Basic-auth password.
    pub webdav_password: Option<String>,
    /// sftp: server host.
    pub host: Option<String>,
    /// sftp: login name.
    pub user: Option<String>,
    /// sftp: password.
    pub password: Option<String>,
    /// sftp: private key file.
    pub key_path: Option<String>,
    /// sftp: expected server key (`"ssh-ed25519 AAAA…"`).
    pub host_key: Option<String>,
    /// nats: user (password in `password`).
    pub username: Option<String>,
    /// nats: token authentication.
    pub token: Option<String>,
    /// nats: NKey seed (alone: NKey user; with `jwt`: signs for it).
    pub seed: Option<String>,
    /// nats: user JWT (with `seed`).
    pub jwt: Option<String>,
    /// nats: path of a `.creds` file (JWT and seed).
    pub creds: Option<String>,
    /// nats: require TLS.
    pub tls: Option<bool>,
    /// nats: CA certificate files (PEM).
    pub root_cas: Vec<String>,
    /// nats: client certificate and key files (PEM).
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub secret_access_key: Option<String>,
    pub force_path_style: Option<bool>,
    pub sign_payload: Option<bool>,
    pub require_content_md5: Option<bool>,
    pub skip_verify: Option<bool>,
    pub storage_class: Option<String>,
    pub part_size: Option<u64>,
    pub concurrency: Option<usize>,
    pub sse_customer_key: Option<String>,
    pub sse_kms_key_id: Option<String>,
}

fn err(line: usize, msg: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("config line {line}: {msg}"))
}

/// A mapping being read: remembers which keys were used so the rest can be reported.
struct Obj<'a> {
    line: usize,
    entries: &'a [(String, Node)],
    used: HashSet<&'a str>,
    ctx: &'static str,
}

impl<'a> Obj<'a> {
    fn new(node: &'a Node, ctx: &'static str) -> Result<Obj<'a>> {
        match &node.value {
            Value::Map(m) => Ok(Obj {
                line: node.line,
                entries: m,
                used: HashSet::new(),
                ctx,
            }),
            Value::Null => Ok(Obj {
                line: node.line,
                entries: &[],
                used: HashSet::new(),
                ctx,
            }),
            _ => Err(err(node.line, format!("{ctx} must be a mapping of keys"))),
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Node> {
        let n = self
            .entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, n)| n)?;
        self.used.insert(key);
        if n.value == Value::Null {
            return None;
        }
        Some(n)
    }

    fn str(&mut self, key: &'static str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Node {
                value: Value::Str(s),
                ..
            }) => Ok(Some(s.clone())),
            Some(n) => Err(err(n.line, format!("{key} must be a single value"))),
        }
    }

    fn path(&mut self, key: &'static str) -> Result<Option<PathBuf>> {
        Ok(self.str(key)?.map(|s| {
            let s = s
                .strip_prefix("sqlite3://")
                .or_else(|| s.strip_prefix("sqlite://"))
                .unwrap_or(&s)
                .to_string();
            PathBuf::from(s)
        }))
    }

    fn bool(&mut self, key: &'static str) -> Result<Option<bool>> {
        let line = self
            .entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, n)| n.line)
            .unwrap_or(self.line);
        match self.str(key)?.as_deref() {
            None => Ok(None),
            Some("true" | "True" | "TRUE" | "yes" | "on") => Ok(Some(true)),
            Some("false" | "False" | "FALSE" | "no" | "off") => Ok(Some(false)),
            Some(v) => Err(err(line, format!("{key}: invalid boolean {v:?}"))),
        }
    }

    fn duration(&mut self, key: &'static str) -> Result<Option<Duration>> {
        let line = self
            .entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, n)| n.line)
            .unwrap_or(self.line);
        match self.str(key)? {
            None => Ok(None),
            Some(v) => parse_duration(&v).map(Some).ok_or_else(|| {
                err(
                    line,
                    format!("{key}: invalid duration {v:?} (use e.g. 500ms, 10s, 5m, 24h)"),
                )
            }),
        }
    }

    fn int(&mut self, key: &'static str) -> Result<Option<i64>> {
        let line = self
            .entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, n)| n.line)
            .unwrap_or(self.line);
        match self.str(key)? {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| err(line, format!("{key}: invalid number {v:?}"))),
        }
    }

    fn size(&mut self, key: &'static str) -> Result<Option<u64>> {
        let line = self
            .entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, n)| n.line)
            .unwrap_or(self.line);
        match self.str(key)? {
            None => Ok(None),
            Some(v) => parse_size(&v).map(Some).ok_or_else(|| {
                err(
                    line,
                    format!("{key}: invalid size {v:?} (use e.g. 5MiB, 10MB)"),
                )
            }),
        }
    }

    /// Keys Litestream parses but that have no effect here: warn.
    fn ignored(&mut self, warnings: &mut Vec<String>, keys: &[&'static str], why: &str) {
        for k in keys {
            if let Some(n) = self.entries.iter().find(|(e, _)| e == k).map(|(_, n)| n) {
                self.used.insert(k);
                warnings.push(format!("config line {}: {k} is ignored: {why}", n.line));
            }
        }
    }

    /// Fails on any key not read.
    fn finish(self) -> Result<()> {
        for (k, n) in self.entries {
            if !self.used.contains(k.as_str()) {
                return Err(err(n.line, format!("unknown key {k:?} in {}", self.ctx)));
            }
        }
        Ok(())
    }
}

/// Parses a Go duration (`1h30m`, `500ms`, `1.5s`, `0`).
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * secs;
    }
    Duration::try_from_secs_f64(total).ok()
}

fn read_replica(
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

fn read_replica_fields(
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

/// Parses a config document (after environment expansion).
pub(crate) fn parse(doc: &str) -> Result<Config> {
    let root = yaml::parse(doc)?;
    let mut cfg = Config::default();
    let mut o = Obj::new(&root, "the configuration")?;
    // Global replica defaults.
    let mut defaults = ReplicaConfig::default();
    read_replica_fields(&mut o, &mut defaults, &mut cfg.warnings)?;
    if let Some(n) = o.get("levels") {
        let Value::Seq(items) = &n.value else {
            return Err(err(n.line, "levels must be a list of {interval: ...}"));
        };
        let mut v = Vec::new();
        for it in items {
            let mut lo = Obj::new(it, "a level")?;
            let d = lo
                .duration("interval")?
                .ok_or_else(|| err(it.line, "a level needs an interval"))?;
            lo.finish()?;
            v.push(d);
        }
        cfg.levels = Some(v);
    }
    if let Some(n) = o.get("snapshot") {
        let mut so = Obj::new(n, "snapshot")?;
        cfg.snapshot_interval = so.duration("interval")?;
        cfg.snapshot_retention = so.duration("retention")?;
        so.finish()?;
    }
    cfg.l0_retention = o.duration("l0-retention")?;
    cfg.l0_retention_check_interval = o.duration("l0-retention-check-interval")?;
    if let Some(n) = o.get("retention") {
        let mut ro = Obj::new(n, "retention")?;
        cfg.retention_enabled = ro.bool("enabled")?;
        ro.finish()?;
    }
    cfg.shutdown_sync_timeout = o.duration("shutdown-sync-timeout")?;
    o.ignored(
        &mut cfg.warnings,
        &["shutdown-sync-interval"],
        "uploads are retried every 500 ms at shutdown",
    );
    o.ignored(
        &mut cfg.warnings,
        &["verify-compaction"],
        "levels are kept free of gaps and overlaps by construction",
    );
    cfg.addr = o.str("addr")?;
    cfg.exec = o.str("exec")?;
    if let Some(n) = o.get("logging") {
        let mut lo = Obj::new(n, "logging")?;
        cfg.log_level = lo.str("level")?;
        match lo.str("type")?.as_deref() {
            None | Some("text") => {}
            Some("json") => cfg.log_json = true,
            Some(t) => {
                return Err(err(
                    n.line,
                    format!("logging type {t:?}: want text or json"),
                ))
            }
        }
        if let Some(e) = lo.bool("stderr")? {
            cfg.log_stdout = !e;
        }
        lo.ignored(
            &mut cfg.warnings,
            &["source"],
            "source locations are not logged",
        );
        lo.finish()?;
    }
    for key in [
        "socket",
        "mcp-addr",
        "heartbeat-url",
        "heartbeat-interval",
        "validation",
    ] {
        if let Some(n) = o.entries.iter().find(|(k, _)| k == key).map(|(_, n)| n) {
            return Err(err(
                n.line,
                format!("{key} is not supported by this version"),
            ));
        }
    }
    if let Some(n) = o.get("dbs") {
        let Value::Seq(items) = &n.value else {
            return Err(err(n.line, "dbs must be a list"));
        };
        for it in items {
            let db = read_db(it, &defaults, &mut cfg)?;
            cfg.dbs.push(db);
        }
    }
    o.finish()?;
    Ok(cfg)
}

fn read_db(node: &Node, defaults: &ReplicaConfig, cfg: &mut Config) -> Result<DbConfig> {
    let mut o = Obj::new(node, "a database")?;
    let mut d = DbConfig {
        path: o.path("path")?,
        dir: o.path("dir")?,
        pattern: o.str("pattern")?,
        recursive: o.bool("recursive")?.unwrap_or(false),
        meta_path: o.path("meta-path")?,
        meta_dir: o.path("meta-dir")?,
        monitor_interval: o.duration("monitor-interval")?,
        checkpoint_interval: o.duration("checkpoint-interval")?,
        busy_timeout: o.duration("busy-timeout")?,
        min_checkpoint_pages: None,
        truncate_pages: o.int("truncate-page-n")?,
        max_sync_wal_bytes: o.size("max-sync-wal-bytes")?,
        restore_if_db_not_exists: o.bool("restore-if-db-not-exists")?.unwrap_or(false),
        replicas: Vec::new(),
    };
    if let Some(n) = o.int("min-checkpoint-page-count")? {
        if n <= 0 {
            return Err(err(
                node.line,
                "min-checkpoint-page-count must be greater than zero",
            ));
        }
        d.min_checkpoint_pages = Some(n as u32);
    }
    if let Some(n) = o.get("snapshot") {
        let mut so = Obj::new(n, "snapshot")?;
        for (val, key) in [
            (so.duration("interval")?, "interval"),
            (so.duration("retention")?, "retention"),
        ] {
            let slot = if key == "interval" {
                &mut cfg.snapshot_interval
            } else {
                &mut cfg.snapshot_retention
            };
            if let Some(v) = val {
                if slot.is_some_and(|s| s != v) {
                    return Err(err(
                        n.line,
                        format!("snapshot {key} must be the same for every database"),
                    ));
                }
                *slot = Some(v);
            }
        }
        so.finish()?;
    }
    o.ignored(
        &mut cfg.warnings,
        &["watch"],
        "directories are scanned once at start-up",
    );
    if let Some(n) = o.get("replica") {
        d.replicas
            .push(read_replica(n, defaults, &mut cfg.warnings, "a replica")?);
    }
    if let Some(n) = o.get("replicas") {
        let Value::Seq(items) = &n.value else {
            return Err(err(n.line, "replicas must be a list"));
        };
        for it in items {
            d.replicas
                .push(read_replica(it, defaults, &mut cfg.warnings, "a replica")?);
        }
    }
    o.finish()?;
    match (&d.path, &d.dir) {
        (Some(_), Some(_)) => {
            return Err(err(
                node.line,
                "a database takes either path or dir, not both",
            ))
        }
        (None, None) => {
            return Err(err(
                node.line,
                "a database needs a path (or dir and pattern)",
            ))
        }
        (None, Some(_)) if d.pattern.is_none() => {
            return Err(err(node.line, "dir needs a pattern (e.g. \"*.db\")"))
        }
        _ => {}
    }
    if d.replicas.is_empty() {
        return Err(err(
            node.line,
            "a database needs a replica (replica: or replicas:)",
        ));
    }
    Ok(d)
}

/// Reads, expands and parses a config file.
pub(crate) fn load(path: &Path, expand: bool) -> Result<Config> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("read config {}", path.display()), e))?;
    let text = if expand {
        yaml::expand_env(&text, &|k| std::env::var(k).ok())
    } else {
        text
    };
    parse(&text).map_err(|e| match e {
        Error::Invalid(m) => Error::Invalid(format!("{}: {m}", path.display())),
        e => e,
    })
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

/// Simple glob: `*` (any run) and `?` (one character) on a file name.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The databases a `dir` entry matches, relative to the dir.
fn discover(dir: &Path, pattern: &str, recursive: bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd =
            std::fs::read_dir(&d).map_err(|e| Error::io(format!("list {}", d.display()), e))?;
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let ft = match e.file_type() {
                Ok(t) => t,
                Err(_) => continue,
            };
            if ft.is_dir() {
                if recursive {
                    stack.push(p);
                }
            } else if glob_match(pattern, &name)
                && !name.ends_with("-wal")
                && !name.ends_with("-shm")
            {
                if let Ok(rel) = p.strip_prefix(dir) {
                    out.push(rel.to_path_buf());
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A database to replicate: its path, options and replica configs (with sub-paths).
pub(crate) struct Resolved {
    pub path: PathBuf,
    pub cfg: DbConfig,
    pub meta_path: Option<PathBuf>,
    /// Replica sub-path (directory mode).
    pub sub_path: Option<String>,
}

/// Expands directory entries into databases.
pub(crate) fn resolve_dbs(cfg: &Config) -> Result<Vec<Resolved>> {
    let mut out = Vec::new();
    for d in &cfg.dbs {
        if let Some(p) = &d.path {
            out.push(Resolved {
                path: p.clone(),
                cfg: d.clone(),
                meta_path: d.meta_path.clone(),
                sub_path: None,
            });
            continue;
        }
        let (Some(dir), Some(pattern)) = (&d.dir, &d.pattern) else {
            continue;
        };
        for rel in discover(dir, pattern, d.recursive)? {
            let rel_s = rel.to_string_lossy().into_owned();
            out.push(Resolved {
                path: dir.join(&rel),
                cfg: d.clone(),
                meta_path: d
                    .meta_dir
                    .as_ref()
                    .map(|m| m.join(format!("{rel_s}-litestream"))),
                sub_path: Some(rel_s),
            });
        }
    }
    Ok(out)
}

/// Builds a `Db` for a resolved database.
pub(crate) fn build_db(r: &Resolved) -> Result<Db> {
    let d = &r.cfg;
    let mut db = Db::new(&r.path);
    if let Some(v) = d.monitor_interval {
        db = db.monitor_interval(v);
    }
    if let Some(v) = d.checkpoint_interval {
        db = db.checkpoint_interval(v);
    }
    if let Some(v) = d.busy_timeout {
        db = db.busy_timeout(v);
    }
    if let Some(v) = d.min_checkpoint_pages {
        db = db.min_checkpoint_pages(v);
    }
    match d.truncate_pages {
        Some(n) if n < 0 => db = db.truncate_pages(None),
        Some(n) if n > 0 => db = db.truncate_pages(Some(n as u32)),
        _ => {}
    }
    if let Some(v) = d.max_sync_wal_bytes {
        db = db.max_sync_wal_bytes(v);
    }
    if let Some(m) = &r.meta_path {
        db = db.meta_path(m);
    }
    for rc in &d.replicas {
        let mut rep = Replica::new(build_client(rc, r.sub_path.as_deref())?);
        if let Some(v) = rc.sync_interval {
            rep = rep.sync_interval(v);
        }
        db = db.replica(rep);
    }
    Ok(db)
}

/// Builds the store for a configuration.
pub(crate) fn build_store(cfg: &Config, dbs: Vec<Db>) -> Result<Store> {
    let levels = match &cfg.levels {
        Some(v) => CompactionLevels::from_intervals(v)?,
        None => CompactionLevels::default(),
    };
    let mut s = Store::new(dbs, levels)?;
    if let Some(v) = cfg.snapshot_interval {
        s = s.snapshot_interval(v);
    }
    if let Some(v) = cfg.snapshot_retention {
        s = s.snapshot_retention(v);
    }
    if let Some(v) = cfg.l0_retention {
        s = s.l0_retention(v);
    }
    if let Some(v) = cfg.l0_retention_check_interval {
        s = s.l0_retention_check_interval(v);
    }
    if let Some(v) = cfg.retention_enabled {
        s = s.retention(v);
    }
    if let Some(v) = cfg.shutdown_sync_timeout {
        s = s.shutdown_timeout(v);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (s, ms) in [
            ("1s", 1000u128),
            ("500ms", 500),
            ("1m30s", 90_000),
            ("24h", 86_400_000),
            ("1.5s", 1500),
            ("0", 0),
            ("1h0m0s", 3_600_000),
        ] {
            assert_eq!(parse_duration(s).unwrap().as_millis(), ms, "{s}");
        }
        for bad in ["", "1", "s", "1x", "-1s"] {
            assert!(parse_duration(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_litestream_config() {
        let cfg = parse(
            "access-key-id: AK\nsecret-access-key: SK\nlevels:\n  - interval: 10s\n  - interval: 1m\nsnapshot:\n  interval: 1h\n  retention: 2h\nl0-retention: 1m\ndbs:\n  - path: /data/a.db\n    monitor-interval: 250ms\n    min-checkpoint-page-count: 500\n    replica:\n      url: s3://bkt/a?endpoint=http://127.0.0.1:9000\n      sync-interval: 2s\n  - dir: /data/many\n    pattern: \"*.sqlite\"\n    recursive: true\n    replicas:\n      - type: file\n        path: /backups/many\n      - type: s3\n        bucket: bkt\n        path: many\n",
        )
        .unwrap();
        assert_eq!(
            cfg.levels,
            Some(vec![Duration::from_secs(10), Duration::from_secs(60)])
        );
        assert_eq!(cfg.snapshot_interval, Some(Duration::from_secs(3600)));
        assert_eq!(cfg.dbs.len(), 2);
        let a = &cfg.dbs[0];
        assert_eq!(a.monitor_interval, Some(Duration::from_millis(250)));
        assert_eq!(a.min_checkpoint_pages, Some(500));
        assert_eq!(
            a.replicas[0].access_key_id.as_deref(),
            Some("AK"),
            "global defaults apply"
        );
        assert_eq!(a.replicas[0].sync_interval, Some(Duration::from_secs(2)));
        assert_eq!(cfg.dbs[1].replicas.len(), 2);
        assert!(cfg.dbs[1].recursive);
    }

    #[test]
    fn bad_configs_name_line_and_key() {
        for (doc, want) in [
            (
                "dbs:\n  - path: /a\n    replica:\n      url: file:///b\n      bogus: 1\n",
                "line 5: unknown key \"bogus\"",
            ),
            (
                "dbs:\n  - path: /a\n    monitor-interval: fast\n    replica: {url: file:///b}\n",
                "line 3: monitor-interval: invalid duration",
            ),
            (
                "dbs:\n  - monitor-interval: 1s\n    replica: {url: file:///b}\n",
                "line 2: a database needs a path",
            ),
            ("dbs:\n  - path: /a\n", "line 2: a database needs a replica"),
            ("levels:\n  - interval: 0s\n", ""),
            (
                "snapshot:\n  interval: 1h\n  every: 2h\n",
                "line 3: unknown key \"every\"",
            ),
            (
                "dbs:\n  - path: /a\n    replica:\n      type: nats\n      nkey: UDXU\n",
                "line 4: nats \"nkey\" (a public key) cannot sign",
            ),
            (
                "dbs:\n  - path: /a\n    replica:\n      url: file:///b\n      age: {}\n",
                "age encryption",
            ),
            ("socket:\n  enabled: true\n", "line 2"),
        ] {
            match parse(doc) {
                Err(e) => assert!(e.to_string().contains(want), "{doc:?}: {e}"),
                Ok(c) if want.is_empty() => {
                    // Validated when the store is built.
                    assert!(
                        CompactionLevels::from_intervals(c.levels.as_deref().unwrap_or(&[]))
                            .is_err()
                    );
                }
                Ok(_) => panic!("{doc:?} parsed"),
            }
        }
    }

    #[test]
    fn warnings_for_ignored_keys() {
        let cfg = parse("dbs:\n  - path: /a\n    replica:\n      url: file:///b\n      max-sync-ltx-files: 10\n").unwrap();
        assert!(
            cfg.warnings[0].contains("line 5: max-sync-ltx-files is ignored"),
            "{:?}",
            cfg.warnings
        );
    }

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

    #[test]
    fn every_key_reaches_the_engine() {
        let dir = std::env::temp_dir().join(format!("lsrs-cfg-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("many/sub")).unwrap();
        for f in ["many/a.db", "many/sub/b.db", "many/skip.txt"] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let doc = format!(
            "levels:\n  - interval: 10s\n  - interval: 2m\nsnapshot:\n  interval: 6h\n  retention: 12h\nl0-retention: 2m\nl0-retention-check-interval: 20s\nretention:\n  enabled: false\nshutdown-sync-timeout: 5s\nregion: eu-west-1\naccess-key-id: AK\nsecret-access-key: SK\ndbs:\n  - path: {d}/one.db\n    meta-path: {d}/meta-one\n    monitor-interval: 250ms\n    checkpoint-interval: 30s\n    busy-timeout: 3s\n    min-checkpoint-page-count: 500\n    truncate-page-n: 5000\n    max-sync-wal-bytes: 8MiB\n    replicas:\n      - url: file://{d}/rep-one\n        sync-interval: 3s\n      - type: s3\n        bucket: bkt\n        path: one\n        endpoint: 127.0.0.1:9000\n        force-path-style: false\n        sign-payload: false\n        require-content-md5: false\n        skip-verify: true\n        storage-class: STANDARD_IA\n        part-size: 8MiB\n        concurrency: 2\n        sse-kms-key-id: key-1\n  - path: {d}/two.db\n    truncate-page-n: -1\n    replica:\n      path: {d}/rep-two\n  - dir: {d}/many\n    pattern: \"*.db\"\n    recursive: true\n    meta-dir: {d}/meta-many\n    replica:\n      type: file\n      path: {d}/rep-many\n",
            d = dir.display()
        );
        let cfg = parse(&doc).unwrap();
        let resolved = resolve_dbs(&cfg).unwrap();
        let paths: Vec<_> = resolved
            .iter()
            .map(|r| r.path.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        assert_eq!(
            paths,
            vec!["one.db", "two.db", "many/a.db", "many/sub/b.db"]
        );
        let one = build_db(&resolved[0]).unwrap();
        let o = &one.opts;
        assert_eq!(o.monitor_interval, Duration::from_millis(250));
        assert_eq!(o.checkpoint_interval, Duration::from_secs(30));
        assert_eq!(o.busy_timeout, Duration::from_secs(3));
        assert_eq!(o.min_checkpoint_pages, 500);
        assert_eq!(o.truncate_pages, Some(5000));
        assert_eq!(o.max_sync_wal_bytes, 8 << 20);
        assert_eq!(one.resolved_meta_path(), dir.join("meta-one"));
        assert_eq!(one.replicas.len(), 2);
        assert_eq!(one.replicas[0].sync_interval, Duration::from_secs(3));
        let rc = &cfg.dbs[0].replicas[1];
        assert_eq!(rc.region.as_deref(), Some("eu-west-1"), "global default");
        let s3 = crate::client::s3::S3Config::from_url("s3://bkt/one").unwrap();
        let _ = s3;
        let c = build_client(rc, None).unwrap();
        let dbg = format!("{c:?}");
        assert!(
            dbg.contains("\"bkt\"")
                && dbg.contains("\"one\"")
                && dbg.contains("http://127.0.0.1:9000"),
            "{dbg}"
        );
        assert!(!dbg.contains("SK"), "secrets must not print: {dbg}");
        let two = build_db(&resolved[1]).unwrap();
        assert_eq!(two.opts.truncate_pages, None);
        let many = build_db(&resolved[3]).unwrap();
        assert_eq!(
            many.resolved_meta_path(),
            dir.join("meta-many/sub/b.db-litestream")
        );
        assert_eq!(
            format!("{:?}", many.replicas[0].client()),
            format!("{:?}", FileClient::new(dir.join("rep-many/sub/b.db")))
        );
        let store = build_store(&cfg, vec![one]).unwrap();
        assert_eq!(
            store.levels,
            CompactionLevels::from_intervals(&[Duration::from_secs(10), Duration::from_secs(120)])
                .unwrap()
        );
        let sc = &store.config;
        assert_eq!(
            (sc.snapshot_interval, sc.snapshot_retention),
            (
                Duration::from_secs(6 * 3600),
                Duration::from_secs(12 * 3600)
            )
        );
        assert_eq!(
            (sc.l0_retention, sc.l0_retention_check_interval),
            (Duration::from_secs(120), Duration::from_secs(20))
        );
        assert!(!sc.retention);
        assert_eq!(sc.shutdown_timeout, Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.db", "app.db"));
        assert!(!glob_match("*.db", "app.db-wal"));
        assert!(glob_match("a?c*", "abcdef"));
        assert!(!glob_match("a?c", "ac"));
    }
}
