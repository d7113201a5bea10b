//! The `litestream` command-line program, over the same library.
//!
//! Commands and flags are spelled as Litestream's. Exit status: 0 on success, 1 when the
//! command failed (one line on stderr says why), 2 for usage errors.

mod flags;
mod logger;
mod signal;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use flags::{Flag, Parsed};

use crate::client::{self, FileInfo, ReplicaClient, SNAPSHOT_LEVEL};
use crate::restore::{self, IntegrityCheck, RestoreOptions};
use crate::{Error, Result, Txid};

const USAGE: &str = "litestream is a tool for replicating SQLite databases.

Usage:

\tlitestream <command> [arguments]

The commands are:

\tdatabases    list databases specified in config file
\tltx          list available LTX files for a database
\treplicate    runs a server to replicate databases
\trestore      recovers database backup from a replica
\tversion      prints the binary version
";

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

type CliResult = std::result::Result<(), CliError>;

/// Runs the program with `std::env::args()` and returns its exit status.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let level = std::env::var("LOG_LEVEL")
        .ok()
        .and_then(|l| logger::parse_level(&l))
        .unwrap_or(log::LevelFilter::Info);
    logger::init(level);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
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
        return Ok(());
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "restore" => cmd_restore(rest),
        "replicate" => cmd_replicate(rest),
        "ltx" | "wal" => cmd_ltx(rest),
        "version" => {
            println!(
                "litestream-rs {} (sqlite {})",
                env!("CARGO_PKG_VERSION"),
                crate::sqlite_version()
            );
            Ok(())
        }
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
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

/// Resolves a `DB_PATH|REPLICA_URL` argument to a replica client.
fn client_for(arg: &str) -> Result<std::sync::Arc<dyn ReplicaClient>> {
    if crate::is_url(arg) {
        client::from_url(arg)
    } else {
        Err(Error::Invalid(format!(
            "{arg:?} is not a replica URL; restoring by database path needs a config file, which this version does not read yet"
        )))
    }
}

const CONFIG_FLAGS: [Flag; 2] = [
    Flag {
        name: "config",
        value: Some("PATH"),
        help: "Specifies the configuration file.\nDefaults to /etc/litestream.yml",
    },
    Flag {
        name: "no-expand-env",
        value: None,
        help: "Disables environment variable expansion in configuration file.",
    },
];

fn cmd_restore(args: &[String]) -> CliResult {
    let spec = [
        CONFIG_FLAGS[0].clone_flag(),
        CONFIG_FLAGS[1].clone_flag(),
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
    let usage = "The restore command recovers a database from a replica.\n\nUsage:\n\n\tlitestream restore [arguments] REPLICA_URL\n";
    let Some(p) = parse_or_usage(args, &spec, usage)? else {
        return Ok(());
    };
    let [target] = p.positional.as_slice() else {
        return Err(Usage("restore: want exactly one DB_PATH or REPLICA_URL".into()).into());
    };
    let client = client_for(target)?;
    let output = match p.get("o") {
        Some(o) => PathBuf::from(o),
        None if crate::is_url(target) => {
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
        opts.timestamp = Some(crate::parse_rfc3339(ts).map_err(|e| Usage(e.to_string()))?);
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
        return Ok(());
    }
    if p.bool("dry-run") {
        let files = match restore::plan(client.as_ref(), opts.txid, opts.timestamp) {
            Err(e) if e.is_no_backup() && p.bool("if-replica-exists") => {
                log::info!("no matching backups found");
                return Ok(());
            }
            r => r?,
        };
        print_plan(target, &output, client.kind(), &files);
        return Ok(());
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
    let started = std::time::Instant::now();
    match restore::restore(client.as_ref(), &opts) {
        Ok(r) => {
            log::info!(
                "restored {} to txid {} from {} files, {} bytes in {:.3}s",
                output.display(),
                r.txid,
                r.files.len(),
                r.bytes_read,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Err(e) if e.is_no_backup() && p.bool("if-replica-exists") => {
            log::info!("no matching backups found");
            Ok(())
        }
        Err(e) if e.is_no_backup() => {
            Err(Error::State(format!("no matching backup files available ({e})")).into())
        }
        Err(e) => Err(e.into()),
    }
}

fn cmd_replicate(args: &[String]) -> CliResult {
    let spec = [
        CONFIG_FLAGS[0].clone_flag(),
        CONFIG_FLAGS[1].clone_flag(),
        Flag {
            name: "log-level",
            value: Some("LEVEL"),
            help: "Log level: debug, info, warn or error.",
        },
    ];
    let usage = "The replicate command starts a server to monitor & replicate databases.\n\nUsage:\n\n\tlitestream replicate [arguments] DB_PATH REPLICA_URL [REPLICA_URL...]\n";
    let Some(p) = parse_or_usage(args, &spec, usage)? else {
        return Ok(());
    };
    if let Some(l) = p.get("log-level") {
        let level =
            logger::parse_level(l).ok_or_else(|| Usage(format!("invalid -log-level {l:?}")))?;
        log::set_max_level(level);
    }
    if p.get("config").is_some() {
        return Err(Error::Invalid(
            "replicate: -config is not supported yet; pass DB_PATH REPLICA_URL".into(),
        )
        .into());
    }
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
    let store = crate::Store::new(vec![db], crate::CompactionLevels::default())?;
    run_store(store)
}

/// Runs a store until SIGINT/SIGTERM, then closes it gracefully; a second signal aborts
/// the shutdown.
fn run_store(mut store: crate::Store) -> CliResult {
    signal::install();
    log::info!("litestream-rs {}", env!("CARGO_PKG_VERSION"));
    store.open()?;
    for p in store.paths() {
        log::info!("replicating {}", p.display());
    }
    while signal::count() == 0 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    log::info!(
        "signal received ({}), litestream shutting down",
        signal::last_name()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(store.close());
    });
    loop {
        match rx.recv_timeout(std::time::Duration::from_millis(50)) {
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
                if signal::count() >= 2 {
                    return Err(
                        Error::Shutdown("second signal received, shutdown aborted".into()).into(),
                    );
                }
            }
            Err(_) => return Err(Error::Shutdown("shutdown thread failed".into()).into()),
        }
    }
}

fn print_plan(source: &str, output: &std::path::Path, kind: &str, files: &[FileInfo]) {
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
    let spec = [
        CONFIG_FLAGS[0].clone_flag(),
        CONFIG_FLAGS[1].clone_flag(),
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
    let usage = "The ltx command lists all LTX files available for a database.\n\nUsage:\n\n\tlitestream ltx [arguments] REPLICA_URL\n";
    let Some(p) = parse_or_usage(args, &spec, usage)? else {
        return Ok(());
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
    let client = client_for(target)?;
    let mut files = Vec::new();
    for level in levels {
        files.extend(client.ltx_files(level, Txid::ZERO, false)?);
    }
    let mut out = std::io::stdout().lock();
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
        return Ok(());
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
    Ok(())
}

impl Flag {
    const fn clone_flag(&self) -> Flag {
        Flag {
            name: self.name,
            value: self.value,
            help: self.help,
        }
    }
}
