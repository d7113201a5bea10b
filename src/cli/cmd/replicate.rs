//! `litestream replicate`: builds the store from the config (or from `DB_PATH REPLICA_URL...`),
//! optionally restores missing databases first, runs it until a signal or the `-exec` child
//! ends, and closes it.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::config::databases::{build_db, build_store, resolve_entry};
use crate::cli::config::DbConfig;
use crate::cli::flags::Flag;
use crate::cli::{
    config_path, control, load_config, logger, metrics, parse_or_usage, sys, watch, CliError,
    CliResult, Usage,
};
use crate::error::{Error, Result};
use crate::restore;
use crate::{CompactionLevels, Db, Replica, Store};

/// Runs the command.
pub(crate) fn run(args: &[String]) -> CliResult {
    let flags = [
        Flag { name: "exec", value: Some("CMD"), help: "Executes a subprocess (your application) and replicates until it exits;\nsignals are forwarded to it and its exit status is litestream's." },
        Flag { name: "log-level", value: Some("LEVEL"), help: "Log level: debug, info, warn or error." },
        Flag { name: "restore-if-db-not-exists", value: None, help: "Restores each database from its replica first if the file is missing." },
        Flag { name: "once", value: None, help: "Syncs every database once, uploads, and exits." },
        Flag { name: "force-snapshot", value: None, help: "Force a snapshot to be taken for all databases. Requires -once." },
        Flag { name: "enforce-retention", value: None, help: "Enforce retention policies for old snapshots. Requires -once." },
    ];
    let usage = "The replicate command starts a server to monitor & replicate databases.\n\nUsage:\n\n\tlitestream replicate [arguments]\n\n\tlitestream replicate [arguments] DB_PATH REPLICA_URL [REPLICA_URL...]\n";
    let Some(p) = parse_or_usage(args, &flags, usage)? else {
        return Ok(0);
    };
    let once = Once {
        on: p.bool("once"),
        force_snapshot: p.bool("force-snapshot"),
        enforce_retention: p.bool("enforce-retention"),
    };
    if once.force_snapshot && !once.on {
        return Err(Usage("cannot specify -force-snapshot flag without -once".into()).into());
    }
    if once.enforce_retention && !once.on {
        return Err(Usage("cannot specify -enforce-retention flag without -once".into()).into());
    }
    if once.on && p.get("exec").is_some() {
        return Err(Usage("cannot specify -once flag with -exec".into()).into());
    }
    // The watched entries, each with the databases the store starts with from it.
    let mut watched: Vec<(DbConfig, Vec<PathBuf>)> = Vec::new();
    let (dbs, cfg) = if p.positional.is_empty() {
        let cfg = load_config(&p)?;
        let mut resolved = Vec::new();
        for d in &cfg.dbs {
            let found = resolve_entry(d)?;
            if let (Some(dir), Some(pattern), false) = (&d.dir, &d.pattern, d.watch) {
                // As Litestream: nothing would ever replicate this entry.
                if found.is_empty() {
                    return Err(Error::Invalid(format!(
                        "no SQLite databases found in directory {} with pattern {pattern}",
                        dir.display()
                    ))
                    .into());
                }
            }
            if d.watch {
                watched.push((d.clone(), found.iter().map(|r| r.path.clone()).collect()));
            }
            resolved.extend(found);
        }
        if resolved.is_empty() {
            // Litestream logs this and runs on; a watched directory or the control socket
            // may add databases later, but with neither nothing ever could.
            if !cfg.socket.enabled && !cfg.dbs.iter().any(|d| d.watch) {
                return Err(Error::Invalid(format!(
                    "{}: no databases configured (and no watched directory or control socket to add any)",
                    config_path(&p).display()
                ))
                .into());
            }
            log::error!("no databases specified in configuration");
        }
        let mut dbs = Vec::new();
        for r in &resolved {
            let db = build_db(r)?;
            if r.cfg.restore_if_db_not_exists || p.bool("restore-if-db-not-exists") {
                restore_on_start(&db)?;
            }
            dbs.push(db);
        }
        (dbs, Some(cfg))
    } else {
        let (db_path, urls) = match p.positional.as_slice() {
            [db_path, urls @ ..] if !urls.is_empty() => (db_path, urls),
            _ => return Err(Usage("replicate: want DB_PATH REPLICA_URL".into()).into()),
        };
        let mut db = Db::new(db_path);
        for u in urls {
            db = db.replica(Replica::from_url(u)?);
        }
        if p.bool("restore-if-db-not-exists") {
            restore_on_start(&db)?;
        }
        (vec![db], None)
    };
    if let Some(l) = p.get("log-level") {
        let level =
            logger::parse_level(l).ok_or_else(|| Usage(format!("invalid -log-level {l:?}")))?;
        log::set_max_level(level);
    }
    let store = match &cfg {
        Some(c) => build_store(c, dbs)?,
        None => Store::new(dbs, CompactionLevels::default())?,
    };
    let exec = p
        .get("exec")
        .map(String::from)
        .or_else(|| cfg.as_ref().and_then(|c| c.exec.clone()));
    let addr = cfg.as_ref().and_then(|c| c.addr.clone());
    let socket = cfg.as_ref().map(|c| c.socket.clone()).filter(|s| s.enabled);
    run_store(
        store,
        exec.as_deref(),
        addr.as_deref(),
        socket,
        watched,
        once,
    )
}

/// `-once` and what it does besides syncing.
struct Once {
    on: bool,
    force_snapshot: bool,
    enforce_retention: bool,
}

/// Restores `db` from its first replica when its file is missing.
fn restore_on_start(db: &Db) -> Result<()> {
    let path = db.path();
    if path.exists() {
        return Ok(());
    }
    let Some(replica) = db.replicas.first() else {
        return Ok(());
    };
    match restore::restore_if_not_exists(replica.client().as_ref(), path)? {
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
    mut store: Store,
    exec: Option<&str>,
    addr: Option<&str>,
    socket: Option<control::SocketConfig>,
    watched: Vec<(DbConfig, Vec<PathBuf>)>,
    once: Once,
) -> CliResult {
    sys::install();
    sys::fewer_malloc_arenas();
    crate::sqlite::no_page_cache_slabs();
    log::info!("litestream-rs {}", env!("CARGO_PKG_VERSION"));
    store.open()?;
    for p in store.paths() {
        log::info!("replicating {}", p.display());
    }
    if let Some(addr) = addr {
        let local = metrics::serve(addr, store.monitor())?;
        log::info!("serving metrics on http://{local}/metrics");
    }
    let _server = match &socket {
        Some(s) => Some(control::serve(s, store.handle())?),
        None => None,
    };
    let mut watchers = Vec::new();
    if !once.on {
        for (d, initial) in watched {
            watchers.push(watch::watch(d, initial, store.handle())?);
        }
    }
    if once.on {
        for p in store.paths() {
            store.sync(&p)?;
            if let Err(e) = store.wait_replicated(&p, None, store.config.shutdown_timeout) {
                log::warn!("{e}");
            }
        }
        if once.force_snapshot {
            log::info!("taking snapshots");
            store.handle().force_snapshot()?;
        }
        if once.enforce_retention {
            log::info!("enforcing retention");
            let retention = store.config.compaction_settings.snapshot_retention;
            store.handle().enforce_retention(retention)?;
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
        // Idle, the command sleeps until a signal; an `-exec` child is looked at every 50 ms.
        sys::sleep_until_signal(child.is_some().then_some(Duration::from_millis(50)));
    };
    drop(watchers);
    close_store(store).map(|()| code)
}

/// Closes the store on a thread, giving up when a second signal arrives.
fn close_store(mut store: Store) -> std::result::Result<(), CliError> {
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
