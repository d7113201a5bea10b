//! The `litestream` command-line program, over the same library: `main`, the dispatch to
//! the commands in `cmd/`, and what several commands share (flags, config loading, finding
//! a configured database and its replica clients, printing tables).
//!
//! Commands, flags and `litestream.yml` keys are spelled as Litestream's. Exit status: 0 on
//! success, 1 when the command failed (one line on stderr says why), 2 for usage errors,
//! and the child's status under `replicate -exec`.

mod cmd;
mod config;
mod control;
mod flags;
mod logger;
mod metrics;
mod paths;
#[allow(unsafe_code)] // signal(2), kill(2), isatty(3)
mod sys;
mod watch;
pub(crate) mod yaml;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use config::databases::{resolve_dbs, Resolved};
use config::{Config, ReplicaConfig};
use flags::{Flag, Parsed};

use crate::client::{self, ReplicaClient};
use crate::error::{Error, Result};

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
        "replicate" => cmd::replicate::run(rest),
        "restore" => cmd::restore::run(rest),
        "ltx" | "wal" => cmd::ltx::run(rest),
        "databases" => cmd::databases::run(rest),
        "status" => cmd::status::run(rest),
        "reset" => cmd::reset::run(rest),
        "version" => cmd::version::run(rest),
        "info" => cmd::info::run(rest),
        "list" => cmd::list::run(rest),
        "register" => cmd::register::run(rest),
        "unregister" => cmd::unregister::run(rest),
        "start" => cmd::start::run(rest),
        "stop" => cmd::stop::run(rest),
        "sync" => cmd::sync::run(rest),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(0)
        }
        other => Err(Usage(format!("litestream {other}: unknown command\n\n{USAGE}")).into()),
    }
}

/// The flags every command takes, ahead of its own.
const CONFIG_FLAGS: [Flag; 2] = [
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
];

/// `-json` of the commands that print a table or JSON.
const JSON_FLAG: Flag = Flag {
    name: "json",
    value: None,
    help: "Output JSON.",
};

/// Parses a command's arguments against [`CONFIG_FLAGS`] and its `own` flags; `None` when
/// `-h` asked for (and got) the usage text.
fn parse_or_usage(
    args: &[String],
    own: &[Flag],
    usage: &str,
) -> std::result::Result<Option<Parsed>, CliError> {
    let spec: Vec<Flag> = CONFIG_FLAGS.iter().chain(own).copied().collect();
    let p = flags::parse(args, &spec).map_err(|e| Usage(e.to_string()))?;
    if p.help {
        print!("{usage}\nArguments:\n\n{}", flags::usage(&spec));
        return Ok(None);
    }
    Ok(Some(p))
}

/// The config file: `-config`, else `$LITESTREAM_CONFIG`, else the default; `~` expanded.
fn config_path(p: &Parsed) -> PathBuf {
    let given = p
        .get("config")
        .map(String::from)
        .or_else(|| std::env::var("LITESTREAM_CONFIG").ok())
        .unwrap_or_else(|| DEFAULT_CONFIG.to_string());
    paths::expand(&given).unwrap_or_else(|_| PathBuf::from(given))
}

/// Loads the config file and applies its logging settings.
fn load_config(p: &Parsed) -> Result<Config> {
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

/// Whether `a` and `b` name the same file once absolute and clean ([`paths::clean`]).
fn same_path(a: &Path, b: &Path) -> bool {
    let abs = |p: &Path| paths::clean(&std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
    abs(a) == abs(b)
}

/// The configured database at `path`, if the config lists it.
fn listed_db(cfg: &Config, path: &Path) -> Result<Option<Resolved>> {
    Ok(resolve_dbs(cfg)?
        .into_iter()
        .find(|r| same_path(&r.path, path)))
}

/// The configured database at `path`.
fn find_db(cfg: &Config, path: &Path) -> Result<Resolved> {
    listed_db(cfg, path)?
        .ok_or_else(|| Error::Invalid(format!("database not found in config: {}", path.display())))
}

/// Where a configured database keeps its local state.
fn meta_path_of(d: &Resolved) -> PathBuf {
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
    find_db(&cfg, Path::new(target))?.clients()
}

/// Items already formatted as JSON, as a JSON array (one item a line).
fn json_array(out: &mut impl Write, items: &[String]) {
    let _ = writeln!(out, "[\n{}\n]", items.join(",\n"));
}

/// Rows as a table under `head`, each column as wide as its widest cell.
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

/// A replica described for people: kind and location, never credentials.
fn describe(rc: &ReplicaConfig) -> String {
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

/// Fuzz entry: parse a config document (errors are fine, panics are not).
#[cfg(fuzzing)]
pub(crate) fn fuzz_config(doc: &str) {
    let _ = config::parse(doc);
    let _ = yaml::expand_env(doc, &|_| Some("x".into()));
}
