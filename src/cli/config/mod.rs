//! `litestream.yml`: its schema and the reading of a whole file, with the keys Litestream
//! users already have. Unknown keys are errors naming the key and line; keys Litestream
//! itself parses but ignores give a warning.
//!
//! [`reader`] reads one mapping's typed keys; [`replicas`] a replica's keys and the client
//! they describe; [`databases`] the `dbs:` entries, directory discovery and the engine
//! built from them.

mod clients;
pub(crate) mod databases;
mod reader;
pub(crate) use reader::parse_duration;
pub(super) mod replicas;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::yaml::{self, Value};
use crate::error::{Error, Result};
use databases::read_db;
use reader::{err, Obj};
use replicas::read_replica_fields;

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
    pub socket: crate::cli::control::SocketConfig,
    pub heartbeat_url: Option<String>,
    pub heartbeat_interval: Option<Duration>,
    pub validation_interval: Option<Duration>,
    pub warnings: Vec<String>,
}

/// One `dbs:` entry.
#[derive(Debug, Default, Clone)]
pub(crate) struct DbConfig {
    pub path: Option<PathBuf>,
    pub dir: Option<PathBuf>,
    pub pattern: Option<String>,
    pub recursive: bool,
    /// `dir` entries: replicate databases created later, stop removed ones.
    pub watch: bool,
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
    if let Some(n) = o.get("socket") {
        let mut so = Obj::new(n, "socket")?;
        cfg.socket.enabled = so.bool("enabled")?.unwrap_or(false);
        if let Some(p) = so.str("path")? {
            cfg.socket.path = PathBuf::from(p);
        }
        if let Some(p) = so.str("permissions")? {
            // As Go's YAML reads integers: 0600 and 0o600 are octal, 0x.. hex.
            let t = p.trim();
            let v = if let Some(h) = t.strip_prefix("0x") {
                u32::from_str_radix(h, 16).ok()
            } else if let Some(o) = t.strip_prefix("0o") {
                u32::from_str_radix(o, 8).ok()
            } else if t.len() > 1 && t.starts_with('0') {
                u32::from_str_radix(&t[1..], 8).ok()
            } else {
                t.parse().ok()
            };
            cfg.socket.permissions = v.filter(|v| *v <= 0o7777).ok_or_else(|| {
                err(
                    n.line,
                    format!("socket permissions {p:?}: want an octal mode such as 0600"),
                )
            })?;
        }
        so.finish()?;
    }
    if let Some(n) = o.entry("heartbeat-url") {
        let url = o.str("heartbeat-url")?.unwrap_or_default();
        let lower = url.to_ascii_lowercase();
        if !(url.is_empty() || lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(err(
                n.line,
                format!(
                    "heartbeat-url: heartbeat URL must be a valid HTTP or HTTPS URL (got {url})"
                ),
            ));
        }
        cfg.heartbeat_url = Some(url).filter(|u| !u.is_empty());
    }
    if let Some(n) = o.entry("heartbeat-interval") {
        let d = o.duration("heartbeat-interval")?;
        if d.is_some_and(|d| d < crate::store::MIN_HEARTBEAT_INTERVAL) {
            return Err(err(
                n.line,
                "heartbeat-interval: heartbeat interval must be at least 1 minute",
            ));
        }
        cfg.heartbeat_interval = d;
    }
    if let Some(n) = o.get("validation") {
        let mut vo = Obj::new(n, "validation")?;
        cfg.validation_interval = vo.duration("interval")?;
        vo.finish()?;
    }
    for key in ["mcp-addr"] {
        if let Some(n) = o.entry(key) {
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

/// A variable of the config file: `$PID` is this process's id (as Litestream since 0.5.10,
/// whatever the environment says), the others come from the environment.
fn env_var(k: &str) -> Option<String> {
    if k == "PID" {
        return Some(std::process::id().to_string());
    }
    std::env::var(k).ok()
}

/// Reads, expands and parses a config file.
pub(crate) fn load(path: &Path, expand: bool) -> Result<Config> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("read config {}", path.display()), e))?;
    let text = if expand {
        yaml::expand_env(&text, &env_var)
    } else {
        text
    };
    parse(&text).map_err(|e| match e {
        Error::Invalid(m) => Error::Invalid(format!("{}: {m}", path.display())),
        e => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CompactionLevels;

    /// Fails without the fix: `$PID` expanded from the environment (to nothing).
    #[test]
    fn pid_in_the_config_is_the_process_id() {
        let dir = std::env::temp_dir().join(format!("lsrs-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("litestream.yml");
        std::fs::write(
            &file,
            "dbs:\n  - path: /data/app-$PID.db\n    replica:\n      path: /backups/${PID}\n",
        )
        .unwrap();
        let pid = std::process::id();
        let cfg = load(&file, true).unwrap();
        assert_eq!(
            cfg.dbs[0].path,
            Some(PathBuf::from(format!("/data/app-{pid}.db")))
        );
        assert_eq!(
            cfg.dbs[0].replicas[0].path.as_deref(),
            Some(format!("/backups/{pid}").as_str())
        );
        let raw = load(&file, false).unwrap();
        assert_eq!(raw.dbs[0].path, Some(PathBuf::from("/data/app-$PID.db")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Fails without the fix: `~` was kept as a directory name.
    #[test]
    fn tilde_in_config_paths_is_the_home_directory() {
        let Some(home) = crate::cli::paths::home().map(PathBuf::from) else {
            return;
        };
        let cfg = parse(
            "dbs:\n  - path: ~/a.db\n    meta-path: ~/meta\n    replica:\n      path: ~/backups\n  - dir: sqlite://~/many/../d\n    pattern: \"*.db\"\n    meta-dir: \"~\"\n    replica:\n      url: file:///r\n",
        )
        .unwrap();
        let a = &cfg.dbs[0];
        assert_eq!(a.path, Some(home.join("a.db")));
        assert_eq!(a.meta_path, Some(home.join("meta")));
        assert_eq!(
            format!(
                "{:?}",
                crate::cli::config::clients::build_client(&a.replicas[0], None).unwrap()
            ),
            format!("{:?}", crate::client::FileClient::new(home.join("backups")))
        );
        assert_eq!(cfg.dbs[1].dir, Some(home.join("d")));
        assert_eq!(cfg.dbs[1].meta_dir, Some(home.clone()));
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
            ("mcp-addr: \":3001\"\n", "line 1: mcp-addr is not supported"),
            (
                "heartbeat-interval: 30s\n",
                "line 1: heartbeat-interval: heartbeat interval must be at least 1 minute",
            ),
            ("heartbeat-url: ftp://x\n", "line 1: heartbeat-url"),
            (
                "dbs:\n  - path: /a\n    watch: true\n    replica: {url: file:///b}\n",
                "watch: true needs a dir",
            ),
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
}
