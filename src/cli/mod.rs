//! The `litestream` command-line program, over the same library.
//!
//! Commands, flags and `litestream.yml` keys are spelled as Litestream's. Exit status: 0 on
//! success, 1 when the command failed (one line on stderr says why), 2 for usage errors,
//! and the child's status under `replicate -exec`.

mod config;
mod flags;
mod logger;
mod metrics;
#[allow(unsafe_code)] // signal(2), kill(2), isatty(3)
mod sys;
pub(crate) mod yaml;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use flags::{Flag, Parsed};

use crate::client::{self, FileInfo, ReplicaClient, SNAPSHOT_LEVEL};
use crate::restore::{self, IntegrityCheck, RestoreOptions, RestoreProgress};
use crate::{Error, Result, Txid};

const USAGE: &str = "litestream is a tool for replicating SQLite databases.

Usage:

\tlitestream <command> [arguments]

The commands are:

\tdatabases    list databases specified in config file
\tltx          list available LTX files for a database
\treplicate    runs a server to replicate databases
\treset        reset local state for a database
\trestore      recovers database backup from a replica
\tstatus       show replication status of databases
\tversion      prints the binary version
";

const DEFAULT_CONFIG: &str = "/etc/litestream.yml";

/// A usage error (exit status 2) as opposed to a failure (exit status 1).
struct Usage(String);

enum CliError {
    Usage(Usage),
    Failed(Error),
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Failed(e)
    }
}

impl From<Usage> for CliError {
    fn from(u: Usage) -> Self {
        CliError::Usage(u)
    }
}

/// Ok(exit status).
type CliResult = std::result::Result<u8, CliError>;

/// Runs the program with `std::env::args()` and returns its exit status.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let level = std::env::var("LOG_LEVEL")
        .ok()
        .and_then(|l| logger::parse_level(&l))
        .unwrap_or(log::LevelFilter::Info);
    logger::init(level);
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(CliError::Usage(Usage(m))) => {
            eprintln!("error: {m}");
            ExitCode::from(2)
        }
        Err(CliError::Failed(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &[String]) -> CliResult {
    let Some(cmd) = args.first() else {
        print!("{USAGE}");
        return Ok(0);
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "replicate" => cmd_replicate(rest),
        "restore" => cmd_restore(rest),
        "ltx" | "wal" => cmd_ltx(rest),
        "databases" => cmd_databases(rest),
        "status" => cmd_status(rest),
        "reset" => cmd_reset(rest),
        "version" => {
            println!(
                "litestream-rs {} (sqlite {})",
                env!("CARGO_PKG_VERSION"),
                crate::sqlite::sqlite_version()
            );
            Ok(0)
        }
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(0)
        }
        other => Err(Usage(format!("litestream {other}: unknown command\n\n{USAGE}")).into()),
    }
}

fn parse_or_usage(
    args: &[String],
    spec: &[Flag],
    usage: &str,
) -> std::result::Result<Option<Parsed>, CliError> {
    let p = flags::parse(args, spec).map_err(|e| Usage(e.to_string()))?;
    if p.help {
        print!("{usage}\nArguments:\n\n{}", flags::usage(spec));
        return Ok(None);
    }
    Ok(Some(p))
}

fn config_flags() -> [Flag; 2] {
    [
        Flag {
            name: "config",
            value: Some("PATH"),
            help: "Specifies the configuration file.\nDefaults to /etc/litestream.yml (or $LITESTREAM_CONFIG)",
        },
        Flag {
            name: "no-expand-env",
            value: None,
            help: "Disables environment variable expansion in configuration file.",
        },
    ]
}

fn config_path(p: &Parsed) -> PathBuf {
    p.get("config")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("LITESTREAM_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

/// Loads the config file and applies its logging settings.
fn load_config(p: &Parsed) -> Result<config::Config> {
    let path = config_path(p);
    let cfg = config::load(&path, !p.bool("no-expand-env"))?;
    if std::env::var("LOG_LEVEL").is_err() {
        if let Some(l) = &cfg.log_level {
            let level = logger::parse_level(l).ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: logging level {l:?}: want debug, info, warn or error",
                    path.display()
                ))
            })?;
            log::set_max_level(level);
        }
    }
    logger::set_format(cfg.log_json, cfg.log_stdout);
    for w in &cfg.warnings {
        log::warn!("{}: {w}", path.display());
    }
    Ok(cfg)
}

fn same_path(a: &Path, b: &Path) -> bool {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    abs(a) == abs(b)
}

/// The configured database at `path`.
fn find_db(cfg: &config::Config, path: &Path) -> Result<config::Resolved> {
    config::resolve_dbs(cfg)?
        .into_iter()
        .find(|r| same_path(&r.path, path))
        .ok_or_else(|| Error::Invalid(format!("database not found in config: {}", path.display())))
}

/// Where a configured database keeps its local state.
fn meta_path_of(d: &config::Resolved) -> PathBuf {
    d.meta_path
        .clone()
        .unwrap_or_else(|| crate::db::default_meta_path(&d.path))
}

/// The replica clients of a `DB_PATH|REPLICA_URL` argument.
fn clients_for(target: &str, p: &Parsed) -> Result<Vec<Arc<dyn ReplicaClient>>> {
    if crate::url::is_url(target) {
        return Ok(vec![client::from_url(target)?]);
    }
    let cfg = load_config(p)?;
    let r = find_db(&cfg, Path::new(target))?;
    r.cfg
        .replicas
        .iter()
        .map(|rc| config::build_client(rc, r.sub_path.as_deref()))
        .collect()
}

fn cmd_replicate(args: &[String]) -> CliResult {
    let [c0, c1] = config_flags();
    let spec = [
        c0,
        c1,
        Flag { name: "exec", value: Some("CMD"), help: "Executes a subprocess (your application) and replicates until it exits;\nsignals are forwarded to it and its exit status is litestream's." },
        Flag { name: "log-level", value: Some("LEVEL"), help: "Log level: debug, info, warn or error." },
        Flag { name: "restore-if-db-not-exists", value: None, help: "Restores each database from its replica first if the file is missing." },
        Flag { name: "once", value: None, help: "Syncs every database once, uploads, and exits." },
    ];
    let usage = "The replicate command starts a server to monitor & replicate databases.\n\nUsage:\n\n\tlitestream replicate [arguments]\n\n\tlitestream replicate [arguments] DB_PATH REPLICA_URL [REPLICA_URL...]\n";
    let Some(p) = parse_or_usage(args, &spec, usage)? else {
        return Ok(0);
    };
    let (dbs, cfg) = if p.positional.is_empty() {
        let cfg = load_config(&p)?;
        let resolved = config::resolve_dbs(&cfg)?;
        if resolved.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: no databases configured",
                config_path(&p).display()
            ))
            .into());
        }
        let mut dbs = Vec::new();
        for r in &resolved {
            let db = config::build_db(r)?;
            if (r.cfg.restore_if_db_not_exists || p.bool("restore-if-db-not-exists"))
                && !r.path.exists()
            {
                restore_on_start(&r.path, db.replicas.first().map(|r| r.client().clone()))?;
            }
            dbs.push(db);
        }
        (dbs, Some(cfg))
    } else {
        let [db_path, urls @ ..] = p.positional.as_slice() else {
            return Err(Usage("replicate: want DB_PATH REPLICA_URL".into()).into());
        };
        if urls.is_empty() {
            return Err(Usage("replicate: want DB_PATH REPLICA_URL".into()).into());
        }
        let mut db = crate::Db::new(db_path);
        for u in urls {
            db = db.replica(crate::Replica::from_url(u)?);
        }
        if p.bool("restore-if-db-not-exists") && !Path::new(db_path).exists() {
            restore_on_start(
                Path::new(db_path),
                db.replicas.first().map(|r| r.client().clone()),
            )?;
        }
        (vec![db], None)
    };
    if let Some(l) = p.get("log-level") {
        let level =
            logger::parse_level(l).ok_or_else(|| Usage(format!("invalid -log-level {l:?}")))?;
        log::set_max_level(level);
    }
    let store = match &cfg {
        Some(c) => config::build_store(c, dbs)?,
        None => crate::Store::new(dbs, crate::CompactionLevels::default())?,
    };
    let exec = p
        .get("exec")
        .map(String::from)
        .or_else(|| cfg.as_ref().and_then(|c| c.exec.clone()));
    let addr = cfg.as_ref().and_then(|c| c.addr.clone());
    run_store(store, exec.as_deref(), addr.as_deref(), p.bool("once"))
}

fn restore_on_start(path: &Path, client: Option<Arc<dyn ReplicaClient>>) -> Result<()> {
    let Some(client) = client else { return Ok(()) };
    match restore::restore_if_not_exists(client.as_ref(), path)? {
        Some(r) => log::info!(
            "restored {} to transaction {} before replicating",
            path.display(),
            r.txid
        ),
        None => log::info!("no backup of {} yet, starting fresh", path.display()),
    }
    Ok(())
}

/// Splits a command line into words (quotes and backslashes, no shell).
fn shell_words(s: &str) -> std::result::Result<Vec<String>, Usage> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => match chars.next() {
                Some(n @ ('"' | '\\' | '$' | '`')) => cur.push(n),
                Some(n) => {
                    cur.push('\\');
                    cur.push(n);
                }
                None => return Err(Usage("-exec: trailing backslash".into())),
            },
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => {
                cur.push(
                    chars
                        .next()
                        .ok_or_else(|| Usage("-exec: trailing backslash".into()))?,
                );
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(Usage("-exec: unterminated quote".into()));
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Runs a store until SIGINT/SIGTERM (or until the `-exec` child exits), then closes it
/// gracefully; a second signal aborts the shutdown.
fn run_store(
    mut store: crate::Store,
    exec: Option<&str>,
    addr: Option<&str>,
    once: bool,
) -> CliResult {
    sys::install();
    log::info!("litestream-rs {}", env!("CARGO_PKG_VERSION"));
    store.open()?;
    for p in store.paths() {
        log::info!("replicating {}", p.display());
    }
    if let Some(addr) = addr {
        let local = metrics::serve(addr, store.monitor())?;
        log::info!("serving metrics on http://{local}/metrics");
    }
    if once {
        for p in store.paths() {
            store.sync(&p)?;
        }
        return close_store(store).map(|()| 0);
    }
    let mut child = match exec {
        Some(cmd) => {
            let words = shell_words(cmd)?;
            let (prog, args) = words
                .split_first()
                .ok_or_else(|| Usage("-exec: empty command".into()))?;
            log::info!("starting subprocess: {cmd}");
            Some(
                std::process::Command::new(prog)
                    .args(args)
                    .spawn()
                    .map_err(|e| Error::io(format!("start -exec {prog}"), e))?,
            )
        }
        None => None,
    };
    let mut forwarded = false;
    let code = loop {
        if let Some(c) = child.as_mut() {
            match c.try_wait() {
                Ok(Some(status)) => {
                    log::info!("subprocess exited ({status}), litestream shutting down");
                    break status.code().unwrap_or(1).clamp(0, 255) as u8;
                }
                Ok(None) => {}
                Err(e) => return Err(Error::io("wait for -exec subprocess", e).into()),
            }
            if sys::count() > 0 && !forwarded {
                log::info!(
                    "signal received ({}), forwarding SIGTERM to the subprocess",
                    sys::last_name()
                );
                sys::terminate(c.id());
                forwarded = true;
            }
        } else if sys::count() > 0 {
            log::info!(
                "signal received ({}), litestream shutting down",
                sys::last_name()
            );
            break 0;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    close_store(store).map(|()| code)
}

fn close_store(mut store: crate::Store) -> std::result::Result<(), CliError> {
    let seen = sys::count();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(store.close());
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(r) => {
                let report = r?;
                if report.is_complete() {
                    log::info!("litestream shut down");
                    return Ok(());
                }
                return Err(Error::Shutdown(format!(
                    "shut down with changes not replicated: {}",
                    report.missing().join("; ")
                ))
                .into());
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if sys::count() > seen.max(1) {
                    return Err(
                        Error::Shutdown("second signal received, shutdown aborted".into()).into(),
                    );
                }
            }
            Err(_) => return Err(Error::Shutdown("shutdown thread failed".into()).into()),
        }
    }
}

/// A progress line on stderr when it is a terminal.
fn progress_printer() -> Option<restore::ProgressFn> {
    if !sys::stderr_is_terminal() {
        return None;
    }
    let started = std::time::Instant::now();
    Some(Arc::new(move |p: &RestoreProgress| {
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let rate = p.bytes_done as f64 / secs;
        let eta = if rate > 0.0 {
            (p.bytes_total.saturating_sub(p.bytes_done)) as f64 / rate
        } else {
            0.0
        };
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        eprint!(
            "\rrestoring: {}/{} files, {:.1}/{:.1} MiB, {:.1} MiB/s, ETA {:.0}s   ",
            p.files_done,
            p.files_total,
            mib(p.bytes_done),
            mib(p.bytes_total),
            rate / (1 << 20) as f64,
            eta
        );
        if p.files_done == p.files_total {
            eprintln!();
        }
    }))
}

/// The replica to restore from: the one whose plan reaches furthest.
fn best_replica(
    clients: &[Arc<dyn ReplicaClient>],
    opts: &RestoreOptions,
) -> Result<Arc<dyn ReplicaClient>> {
    let mut best: Option<(Txid, Arc<dyn ReplicaClient>)> = None;
    let mut first_err = None;
    for c in clients {
        match restore::plan(c.as_ref(), opts.txid, opts.timestamp) {
            Ok(files) => {
                let t = files.last().map(|f| f.max_txid).unwrap_or_default();
                if best.as_ref().is_none_or(|(b, _)| t > *b) {
                    best = Some((t, c.clone()));
                }
            }
            Err(e) => {
                log::debug!("replica {} cannot restore: {e}", c.kind());
                first_err.get_or_insert(e);
            }
        }
    }
    match (best, first_err) {
        (Some((_, c)), _) => Ok(c),
        (None, Some(e)) => Err(e),
        (None, None) => Err(Error::NoSnapshots),
    }
}

fn cmd_restore(args: &[String]) -> CliResult {
    let [c0, c1] = config_flags();
    let spec = [
        c0,
        c1,
        Flag { name: "o", value: Some("PATH"), help: "Output path of the restored database.\nDefaults to original DB path." },
        Flag { name: "txid", value: Some("TXID"), help: "Restore up to a specific hex-encoded transaction ID (inclusive).\nDefaults to use the highest available transaction." },
        Flag { name: "timestamp", value: Some("TIMESTAMP"), help: "Restore to a specific point-in-time (RFC 3339).\nDefaults to use the latest available backup." },
        Flag { name: "if-db-not-exists", value: None, help: "Returns exit code of 0 if the database already exists." },
        Flag { name: "if-replica-exists", value: None, help: "Returns exit code of 0 if no backups found." },
        Flag { name: "dry-run", value: None, help: "Print the restore plan and exit without writing a database." },
        Flag { name: "force", value: None, help: "Overwrite an existing output database and SQLite sidecar files." },
        Flag { name: "integrity-check", value: Some("MODE"), help: "Run an integrity check after restore: none, quick or full.\nDefaults to none." },
        Flag { name: "parallelism", value: Some("NUM"), help: "Accepted for compatibility; restores stream files in order." },
    ];
    let usage = "The restore command recovers a database from a replica.\n\nUsage:\n\n\tlitestream restore [arguments] DB_PATH\n\n\tlitestream restore [arguments] REPLICA_URL\n";
    let Some(p) = parse_or_usage(args, &spec, usage)? else {
        return Ok(0);
    };
    let [target] = p.positional.as_slice() else {
        return Err(Usage("restore: want exactly one DB_PATH or REPLICA_URL".into()).into());
    };
    let output = match p.get("o") {
        Some(o) => PathBuf::from(o),
        None if crate::url::is_url(target) => {
            return Err(Usage(
                "restore: output path required: use -o PATH when restoring from a URL".into(),
            )
            .into())
        }
        None => PathBuf::from(target),
    };
    let mut opts = RestoreOptions::new(&output);
    if let Some(t) = p.get("txid") {
        opts.txid = Some(t.parse::<Txid>().map_err(|e| Usage(e.to_string()))?);
    }
    if let Some(ts) = p.get("timestamp") {
        opts.timestamp = Some(crate::time::parse_rfc3339(ts).map_err(|e| Usage(e.to_string()))?);
    }
    if opts.txid.is_some() && opts.timestamp.is_some() {
        return Err(Usage("restore: cannot specify both -txid and -timestamp".into()).into());
    }
    if let Some(m) = p.get("integrity-check") {
        opts.integrity_check = m
            .parse::<IntegrityCheck>()
            .map_err(|e| Usage(e.to_string()))?;
    }
    if p.bool("if-db-not-exists") && output.exists() {
        log::info!("database already exists, skipping: {}", output.display());
        return Ok(0);
    }
    let clients = clients_for(target, &p)?;
    let client = match best_replica(&clients, &opts) {
        Ok(c) => c,
        Err(e) if e.is_no_backup() && p.bool("if-replica-exists") => {
            log::info!("no matching backups found");
            return Ok(0);
        }
        Err(e) if e.is_no_backup() => {
            return Err(Error::State(format!("no matching backup files available ({e})")).into())
        }
        Err(e) => return Err(e.into()),
    };
    if p.bool("dry-run") {
        let files = restore::plan(client.as_ref(), opts.txid, opts.timestamp)?;
        print_plan(target, &output, client.kind(), &files);
        return Ok(0);
    }
    if p.bool("force") {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut s = output.as_os_str().to_owned();
            s.push(suffix);
            match std::fs::remove_file(&s) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(
                        Error::io(format!("remove {}", PathBuf::from(s).display()), e).into(),
                    )
                }
            }
        }
    }
    opts.progress = progress_printer();
    let started = std::time::Instant::now();
    let r = restore::restore(client.as_ref(), &opts)?;
    log::info!(
        "restored {} to txid {} from {} files, {} bytes in {:.3}s",
        output.display(),
        r.txid,
        r.files.len(),
        r.bytes_read,
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

fn print_plan(source: &str, output: &Path, kind: &str, files: &[FileInfo]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Restore plan:");
    let _ = writeln!(out, "  source: {source}");
    let _ = writeln!(out, "  target: {}", output.display());
    let _ = writeln!(out, "  replica: {kind}");
    if let (Some(f), Some(l)) = (files.first(), files.last()) {
        let _ = writeln!(out, "  txid range: {} - {}", f.min_txid, l.max_txid);
    }
    let _ = writeln!(out, "\nFiles to fetch:");
    let rows: Vec<[String; 6]> = files
        .iter()
        .map(|f| {
            [
                f.level.to_string(),
                f.name(),
                f.min_txid.to_string(),
                f.max_txid.to_string(),
                f.size.to_string(),
                crate::time::format_rfc3339_secs(f.created_at),
            ]
        })
        .collect();
    table(
        &mut out,
        &["level", "file", "min_txid", "max_txid", "size", "timestamp"],
        &rows,
    );
}

fn table<const N: usize>(out: &mut impl Write, head: &[&str; N], rows: &[[String; N]]) {
    let mut widths = head.map(|h| h.len());
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s
    };
    let _ = writeln!(out, "{}", line(head.to_vec()));
    for r in rows {
        let _ = writeln!(out, "{}", line(r.iter().map(|s| s.as_str()).collect()));
    }
}

fn cmd_ltx(args: &[String]) -> CliResult {
    let [c0, c1] = config_flags();
    let spec = [
        c0,
        c1,
        Flag {
            name: "level",
            value: Some("LEVEL"),
            help: "Compaction level to list (0-9 or \"all\").\nDefaults to 0.",
        },
        Flag {
            name: "json",
            value: None,
            help: "Output raw JSON instead of human-readable text.",
        },
    ];
    let usage = "The ltx command lists all LTX files available for a database.\n\nUsage:\n\n\tlitestream ltx [arguments] DB_PATH\n\n\tlitestream ltx [arguments] REPLICA_URL\n";
    let Some(p) = parse_or_usage(args, &spec, usage)? else {
        return Ok(0);
    };
    let [target] = p.positional.as_slice() else {
        return Err(Usage("ltx: want exactly one DB_PATH or REPLICA_URL".into()).into());
    };
    let levels: Vec<u8> = match p.get("level").unwrap_or("0") {
        "all" => (0..=SNAPSHOT_LEVEL).collect(),
        l => match l.parse::<u8>() {
            Ok(n) if n <= SNAPSHOT_LEVEL => vec![n],
            _ => return Err(Usage(format!("ltx: invalid -level {l:?}: want 0-9 or all")).into()),
        },
    };
    let clients = clients_for(target, &p)?;
    let mut out = std::io::stdout().lock();
    for (i, client) in clients.iter().enumerate() {
        if clients.len() > 1 {
            let _ = writeln!(
                out,
                "{}replica {i} ({}):",
                if i > 0 { "\n" } else { "" },
                client.kind()
            );
        }
        let mut files = Vec::new();
        for level in &levels {
            files.extend(client.ltx_files(*level, Txid::ZERO, false)?);
        }
        if p.bool("json") {
            let items: Vec<String> = files
                .iter()
                .map(|f| {
                    format!(
                        "  {{\n    \"level\": {},\n    \"min_txid\": \"{}\",\n    \"max_txid\": \"{}\",\n    \"size\": {},\n    \"timestamp\": \"{}\"\n  }}",
                        f.level,
                        f.min_txid,
                        f.max_txid,
                        f.size,
                        crate::time::format_rfc3339(f.created_at)
                    )
                })
                .collect();
            let _ = writeln!(out, "[\n{}\n]", items.join(",\n"));
            continue;
        }
        let rows: Vec<[String; 5]> = files
            .iter()
            .map(|f| {
                [
                    f.level.to_string(),
                    f.min_txid.to_string(),
                    f.max_txid.to_string(),
                    f.size.to_string(),
                    crate::time::format_rfc3339_secs(f.created_at),
                ]
            })
            .collect();
        table(
            &mut out,
            &["level", "min_txid", "max_txid", "size", "created"],
            &rows,
        );
    }
    Ok(0)
}

/// A replica described for people: kind and location, never credentials.
fn describe(rc: &config::ReplicaConfig) -> String {
    if let Some(u) = &rc.url {
        let u = u.split('?').next().unwrap_or(u);
        return match u
            .split_once("://")
            .and_then(|(s, rest)| rest.split_once('@').map(|(_, h)| format!("{s}://{h}")))
        {
            Some(clean) => clean,
            None => u.to_string(),
        };
    }
    let kind = rc.kind.as_deref().unwrap_or("file");
    match kind {
        "file" => format!("file://{}", rc.path.as_deref().unwrap_or("")),
        k => format!(
            "{k}://{}/{}",
            rc.bucket.as_deref().unwrap_or(""),
            rc.path.as_deref().unwrap_or("")
        ),
    }
}

fn cmd_databases(args: &[String]) -> CliResult {
    let [c0, c1] = config_flags();
    let spec = [
        c0,
        c1,
        Flag {
            name: "json",
            value: None,
            help: "Output JSON.",
        },
    ];
    let usage = "The databases command lists all databases in the configuration file.\n\nUsage:\n\n\tlitestream databases [arguments]\n";
    let Some(p) = parse_or_usage(args, &spec, usage)? else {
        return Ok(0);
    };
    let cfg = load_config(&p)?;
    let dbs = config::resolve_dbs(&cfg)?;
    let mut out = std::io::stdout().lock();
    if p.bool("json") {
        let items: Vec<String> = dbs
            .iter()
            .map(|d| {
                let reps: Vec<String> = d
                    .cfg
                    .replicas
                    .iter()
                    .map(|r| crate::wire::json::quote(&describe(r)))
                    .collect();
                format!(
                    "  {{\"path\": {}, \"replicas\": [{}]}}",
                    crate::wire::json::quote(&d.path.display().to_string()),
                    reps.join(", ")
                )
            })
            .collect();
        let _ = writeln!(out, "[\n{}\n]", items.join(",\n"));
        return Ok(0);
    }
    let rows: Vec<[String; 2]> = dbs
        .iter()
        .map(|d| {
            [
                d.path.display().to_string(),
                d.cfg
                    .replicas
                    .iter()
                    .map(describe)
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    table(&mut out, &["path", "replicas"], &rows);
    Ok(0)
}

fn cmd_reset(args: &[String]) -> CliResult {
    let [c0, c1] = config_flags();
    let spec = [
        c0,
        c1,
        Flag {
            name: "dry-run",
            value: None,
            help: "Print the local LTX files that would be removed without deleting them.",
        },
    ];
    let usage = "The reset command clears local Litestream state for a database: it removes the\nlocal LTX files from its metadata directory, so the next sync starts with a fresh\nsnapshot (numbered after whatever its replicas hold). The database file itself is\nnot modified. Use it when local state is damaged; stop replicate first.\n\nUsage:\n\n\tlitestream reset [arguments] <path>\n";
    let Some(p) = parse_or_usage(args, &spec, usage)? else {
        return Ok(0);
    };
    let [db] = p.positional.as_slice() else {
        return Err(Usage("reset: exactly one database path required".into()).into());
    };
    let db = Path::new(db);
    // The database's meta-path from the config when it lists it; without a config file,
    // the default meta-path.
    let explicit = p.get("config").is_some() || std::env::var_os("LITESTREAM_CONFIG").is_some();
    let listed = if explicit || config_path(&p).exists() {
        let cfg = load_config(&p)?;
        if explicit {
            Some(find_db(&cfg, db)?)
        } else {
            config::resolve_dbs(&cfg)?
                .into_iter()
                .find(|d| same_path(&d.path, db))
        }
    } else {
        None
    };
    let meta = match &listed {
        Some(d) => meta_path_of(d),
        None => crate::db::default_meta_path(&std::path::absolute(db).unwrap_or(db.into())),
    };
    let ltx_dir = meta.join("ltx");
    let mut files = Vec::new();
    collect_files(&ltx_dir, &mut files)?;
    files.sort();
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let mut out = std::io::stdout().lock();
    for f in &files {
        let _ = writeln!(out, "{}", f.display());
    }
    if p.bool("dry-run") {
        let _ = writeln!(
            out,
            "would remove {} local LTX files ({bytes} bytes) from {}",
            files.len(),
            ltx_dir.display()
        );
        return Ok(0);
    }
    if ltx_dir.exists() {
        std::fs::remove_dir_all(&ltx_dir)
            .map_err(|e| Error::io(format!("remove {}", ltx_dir.display()), e))?;
    }
    let _ = writeln!(
        out,
        "removed {} local LTX files ({bytes} bytes) from {}; the next sync of {} starts with a snapshot",
        files.len(),
        ltx_dir.display(),
        db.display()
    );
    Ok(0)
}

/// Every file under `dir` (none when it does not exist).
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
    };
    for e in rd {
        let e = e.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

fn cmd_status(args: &[String]) -> CliResult {
    let [c0, c1] = config_flags();
    let spec = [
        c0,
        c1,
        Flag {
            name: "json",
            value: None,
            help: "Output JSON.",
        },
    ];
    let usage = "The status command compares each database's local position with its replicas\n(works whether or not replicate is running).\n\nUsage:\n\n\tlitestream status [arguments] [DB_PATH]\n";
    let Some(p) = parse_or_usage(args, &spec, usage)? else {
        return Ok(0);
    };
    let cfg = load_config(&p)?;
    let mut dbs = config::resolve_dbs(&cfg)?;
    if let Some(t) = p.positional.first() {
        dbs.retain(|d| same_path(&d.path, Path::new(t)));
        if dbs.is_empty() {
            return Err(Error::Invalid(format!("database not found in config: {t}")).into());
        }
    }
    let mut rows: Vec<[String; 7]> = Vec::new();
    let mut json = Vec::new();
    for d in &dbs {
        let meta = meta_path_of(d);
        let l0 = meta.join("ltx").join("0");
        let local = crate::db::max_local_txid(&l0)?;
        let last_sync = std::fs::metadata(l0.join(crate::ltx::file_name(local, local)))
            .and_then(|m| m.modified())
            .ok();
        let mut wal = d.path.as_os_str().to_owned();
        wal.push("-wal");
        let wal_size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        for rc in &d.cfg.replicas {
            let client = config::build_client(rc, d.sub_path.as_deref())?;
            let remote = [0u8, SNAPSHOT_LEVEL]
                .iter()
                .map(|l| {
                    client
                        .ltx_files(*l, Txid::ZERO, false)
                        .map(|v| v.iter().map(|f| f.max_txid).max().unwrap_or_default())
                })
                .collect::<Result<Vec<_>>>()
                .map(|v| v.into_iter().max().unwrap_or_default());
            let (remote_s, lag) = match &remote {
                Ok(r) => (r.to_string(), local.0.saturating_sub(r.0).to_string()),
                Err(e) => (format!("error: {e}"), "?".into()),
            };
            let sync = last_sync
                .map(crate::time::format_rfc3339_secs)
                .unwrap_or_else(|| "-".into());
            json.push(format!(
                "  {{\"path\": {}, \"local_txid\": \"{local}\", \"wal_size\": {wal_size}, \"last_sync\": {}, \"replica\": {}, \"replica_txid\": {}, \"lag_txids\": {}}}",
                crate::wire::json::quote(&d.path.display().to_string()),
                crate::wire::json::quote(&sync),
                crate::wire::json::quote(&describe(rc)),
                crate::wire::json::quote(&remote_s),
                if lag == "?" { "null".to_string() } else { lag.clone() }
            ));
            rows.push([
                d.path.display().to_string(),
                local.to_string(),
                wal_size.to_string(),
                sync,
                describe(rc),
                remote_s,
                lag,
            ]);
        }
    }
    let mut out = std::io::stdout().lock();
    if p.bool("json") {
        let _ = writeln!(out, "[\n{}\n]", json.join(",\n"));
    } else {
        table(
            &mut out,
            &[
                "path",
                "local_txid",
                "wal_size",
                "last_sync",
                "replica",
                "replica_txid",
                "lag",
            ],
            &rows,
        );
    }
    Ok(0)
}

/// Fuzz entry: parse a config document (errors are fine, panics are not).
#[cfg(fuzzing)]
pub(crate) fn fuzz_config(doc: &str) {
    let _ = config::parse(doc);
    let _ = yaml::expand_env(doc, &|_| Some("x".into()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_word_splitting() {
        let w = |s: &str| shell_words(s).ok().unwrap();
        assert_eq!(w("app --port 8080"), vec!["app", "--port", "8080"]);
        assert_eq!(
            w(r#"sh -c 'echo "hi there"; exit 3'"#),
            vec!["sh", "-c", "echo \"hi there\"; exit 3"]
        );
        assert_eq!(w(r#"a "b \"c\" d" e\ f"#), vec!["a", "b \"c\" d", "e f"]);
        assert!(shell_words("a 'b").is_err());
    }
}
