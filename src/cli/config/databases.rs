//! The `dbs:` entries: reading them, discovering the databases of a `dir` entry
//! (`pattern`, `recursive`), and building the engine's `Db`s and `Store` from them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::clients::build_client;
use super::reader::{err, Obj};
use super::replicas::read_replica;
use super::{Config, DbConfig, ReplicaConfig};
use crate::cli::yaml::{Node, Value};
use crate::client::ReplicaClient;
use crate::error::{Error, Result};
use crate::{CompactionLevels, Db, Replica, Store};

/// Reads one `dbs:` entry; a `snapshot:` in it sets the global one.
pub(super) fn read_db(node: &Node, defaults: &ReplicaConfig, cfg: &mut Config) -> Result<DbConfig> {
    let mut o = Obj::new(node, "a database")?;
    let mut d = DbConfig {
        path: o.path("path")?,
        dir: o.path("dir")?,
        pattern: o.str("pattern")?,
        recursive: o.bool("recursive")?.unwrap_or(false),
        watch: false,
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
    d.watch = o.bool("watch")?.unwrap_or(false);
    if d.watch && d.dir.is_none() {
        return Err(err(o.line, "watch: true needs a dir: entry"));
    }
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

/// Whether the file `name` could be a database of a `dir` entry with `pattern`: it matches,
/// is not hidden, and is no WAL, shared-memory or rollback-journal file (Litestream's
/// `shouldSkipPath`).
fn candidate(pattern: &str, name: &str) -> bool {
    !name.starts_with('.')
        && glob_match(pattern, name)
        && !["-wal", "-shm", "-journal"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// Whether the file at `path` starts with SQLite's header, "SQLite format 3\0": an empty
/// file an application has just created is not a database yet (Litestream's
/// `IsSQLiteDatabase`).
pub(crate) fn is_sqlite_db(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok_and(|()| &header == b"SQLite format 3\0")
}

/// The databases a `dir` entry matches, relative to the dir. A file `known` names is taken
/// without reading its header (see [`resolve_entry_known`]).
fn discover(
    dir: &Path,
    pattern: &str,
    recursive: bool,
    known: &dyn Fn(&Path) -> bool,
) -> Result<Vec<PathBuf>> {
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
            } else if candidate(pattern, &name) && (known(&p) || is_sqlite_db(&p)) {
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

impl Resolved {
    /// The replica clients of this database, in the order the config lists its replicas.
    pub(crate) fn clients(&self) -> Result<Vec<Arc<dyn ReplicaClient>>> {
        self.cfg
            .replicas
            .iter()
            .map(|rc| build_client(rc, self.sub_path.as_deref()))
            .collect()
    }
}

/// Expands directory entries into databases.
pub(crate) fn resolve_dbs(cfg: &Config) -> Result<Vec<Resolved>> {
    let mut out = Vec::new();
    for d in &cfg.dbs {
        out.extend(resolve_entry(d)?);
    }
    Ok(out)
}

/// The databases of one `dbs:` entry (a directory's, as found now).
pub(crate) fn resolve_entry(d: &DbConfig) -> Result<Vec<Resolved>> {
    resolve_entry_known(d, &|_| false)
}

/// [`resolve_entry`], taking the files `known` names (those this process replicates
/// already) without opening them to read their header: closing a descriptor on a live
/// database drops every POSIX lock the process holds on it.
pub(crate) fn resolve_entry_known(
    d: &DbConfig,
    known: &dyn Fn(&Path) -> bool,
) -> Result<Vec<Resolved>> {
    let mut out = Vec::new();
    if let Some(p) = &d.path {
        out.push(Resolved {
            path: p.clone(),
            cfg: d.clone(),
            meta_path: d.meta_path.clone(),
            sub_path: None,
        });
        return Ok(out);
    }
    let (Some(dir), Some(pattern)) = (&d.dir, &d.pattern) else {
        return Ok(out);
    };
    if d.meta_path.is_some() && d.meta_dir.is_some() {
        return Err(Error::Invalid(format!(
            "{}: cannot specify both 'meta-path' and 'meta-dir'",
            dir.display()
        )));
    }
    for rel in discover(dir, pattern, d.recursive, known)? {
        let rel_s = rel.to_string_lossy().into_owned();
        let meta_path = match (&d.meta_dir, &d.meta_path) {
            (Some(m), _) => Some(m.join(format!("{rel_s}-litestream"))),
            (None, Some(m)) => Some(entry_meta_path(m, &rel)),
            (None, None) => None,
        };
        out.push(Resolved {
            path: dir.join(&rel),
            cfg: d.clone(),
            meta_path,
            sub_path: Some(rel_s),
        });
    }
    Ok(out)
}

/// The meta path of the database at `rel` under a `dir` entry whose `meta-path` is `base`:
/// `base/<rel's dir>/.<file>-litestream`, one per database (Litestream's
/// `deriveMetaPathForDirectoryEntry`).
fn entry_meta_path(base: &Path, rel: &Path) -> PathBuf {
    match (rel.parent(), rel.file_name()) {
        (Some(dir), Some(file)) => base
            .join(dir)
            .join(format!(".{}-litestream", file.to_string_lossy())),
        _ => base.join(rel),
    }
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
    for (rc, client) in d.replicas.iter().zip(r.clients()?) {
        let mut rep = Replica::new(client);
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
    if let Some(url) = &cfg.heartbeat_url {
        let interval = cfg
            .heartbeat_interval
            .unwrap_or(crate::store::DEFAULT_HEARTBEAT_INTERVAL);
        s = s.heartbeat(crate::Heartbeat::new(url.clone(), interval)?);
    }
    if let Some(v) = cfg.validation_interval {
        s = s.validation_interval(v);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cli::config::parse;
    use crate::client::FileClient;

    #[cfg(feature = "s3")]
    #[test]
    fn every_key_reaches_the_engine() {
        let dir = std::env::temp_dir().join(format!("lsrs-cfg-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("many/sub")).unwrap();
        for f in ["many/a.db", "many/sub/b.db", "many/skip.txt"] {
            std::fs::write(dir.join(f), b"SQLite format 3\0").unwrap();
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
        let sc = &store.config.compaction_settings;
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
        assert_eq!(store.config.shutdown_timeout, Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A scratch directory with the files `files` (name, contents).
    fn scratch(name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lsrs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (f, body) in files {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        dir
    }

    /// Fails without the fix: the empty file and the journal were taken as databases.
    #[test]
    fn only_sqlite_files_are_discovered() {
        let db: &[u8] = b"SQLite format 3\0 and pages";
        let dir = scratch(
            "discover",
            &[
                ("real.db", db),
                ("empty.db", b""),
                ("short.db", b"SQLite"),
                ("text.db", b"not a database at all"),
                ("real.db-journal", db),
                ("real.db-wal", db),
            ],
        );
        let cfg = parse(&format!(
            "dbs:\n  - dir: {}\n    pattern: \"*\"\n    replica:\n      path: /r\n",
            dir.display()
        ))
        .unwrap();
        let found: Vec<_> = resolve_dbs(&cfg)
            .unwrap()
            .into_iter()
            .map(|r| r.path)
            .collect();
        assert_eq!(found, vec![dir.join("real.db")]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Fails without the fix: `meta-path` on a `dir:` entry was ignored (every database
    /// kept its state beside itself).
    #[test]
    fn meta_path_on_a_directory_is_one_per_database() {
        let db: &[u8] = b"SQLite format 3\0";
        let dir = scratch("metapath", &[("a.db", db), ("sub/b.db", db)]);
        let cfg = parse(&format!(
            "dbs:\n  - dir: {d}\n    pattern: \"*.db\"\n    recursive: true\n    meta-path: {d}/meta\n    replica:\n      path: /r\n",
            d = dir.display()
        ))
        .unwrap();
        let metas: Vec<_> = resolve_dbs(&cfg)
            .unwrap()
            .iter()
            .map(|r| build_db(r).unwrap().resolved_meta_path())
            .collect();
        assert_eq!(
            metas,
            vec![
                dir.join("meta/.a.db-litestream"),
                dir.join("meta/sub/.b.db-litestream")
            ]
        );
        let both = parse(&format!(
            "dbs:\n  - dir: {d}\n    pattern: \"*.db\"\n    meta-path: /m\n    meta-dir: /n\n    replica:\n      path: /r\n",
            d = dir.display()
        ))
        .unwrap();
        assert!(resolve_dbs(&both).is_err());
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
