//! `litestream restore`: picks the replica whose plan reaches furthest, then prints the plan
//! (`-dry-run`) or restores it, with a progress line on a terminal.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cli::flags::Flag;
use crate::cli::{clients_for, parse_or_usage, sys, table, CliResult, Usage};
use crate::client::{FileInfo, ReplicaClient};
use crate::error::{Error, Result};
use crate::ltx::Txid;
use crate::restore::{self, IntegrityCheck, RestoreOptions, RestoreProgress};

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

/// What a replica would restore: a chain of LTX files, or its Litestream v0.3 backups.
enum Choice {
    Ltx(Vec<FileInfo>),
    V3(restore::v3::Plan),
}

/// The replica to restore from: the one whose LTX plan reaches furthest; a replica whose
/// v0.3 backups the official would restore (see `restore::v3::preferred`) only when no
/// replica has an LTX plan.
fn best_replica(
    clients: &[Arc<dyn ReplicaClient>],
    opts: &RestoreOptions,
) -> Result<(Arc<dyn ReplicaClient>, Choice)> {
    let mut best: Option<(Txid, Arc<dyn ReplicaClient>, Vec<FileInfo>)> = None;
    let mut v3: Option<(Arc<dyn ReplicaClient>, restore::v3::Plan)> = None;
    let mut first_err = None;
    for c in clients {
        if opts.txid.is_none() && v3.is_none() {
            match restore::v3::preferred(c.as_ref(), opts.timestamp) {
                Ok(Some(p)) => {
                    v3 = Some((c.clone(), p));
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    log::debug!("replica {} cannot restore its v0.3 backups: {e}", c.kind());
                    first_err.get_or_insert(e);
                    continue;
                }
            }
        }
        match restore::plan(c.as_ref(), opts.txid, opts.timestamp) {
            Ok(files) => {
                let t = files.last().map(|f| f.max_txid).unwrap_or_default();
                if best.as_ref().is_none_or(|(b, _, _)| t > *b) {
                    best = Some((t, c.clone(), files));
                }
            }
            Err(e) => {
                log::debug!("replica {} cannot restore: {e}", c.kind());
                first_err.get_or_insert(e);
            }
        }
    }
    match (best, v3, first_err) {
        (Some((_, c, files)), _, _) => Ok((c, Choice::Ltx(files))),
        (None, Some((c, p)), _) => Ok((c, Choice::V3(p))),
        (None, None, Some(e)) => Err(e),
        (None, None, None) => Err(Error::NoSnapshots),
    }
}

/// Runs the command.
pub(crate) fn run(args: &[String]) -> CliResult {
    let flags = [
        Flag { name: "o", value: Some("PATH"), help: "Output path of the restored database.\nDefaults to original DB path." },
        Flag { name: "txid", value: Some("TXID"), help: "Restore up to a specific hex-encoded transaction ID (inclusive).\nDefaults to use the highest available transaction." },
        Flag { name: "timestamp", value: Some("TIMESTAMP"), help: "Restore to a specific point-in-time (RFC 3339).\nDefaults to use the latest available backup." },
        Flag { name: "if-db-not-exists", value: None, help: "Returns exit code of 0 if the database already exists." },
        Flag { name: "if-replica-exists", value: None, help: "Returns exit code of 0 if no backups found." },
        Flag { name: "dry-run", value: None, help: "Print the restore plan and exit without writing a database." },
        Flag { name: "force", value: None, help: "Overwrite an existing output database and SQLite sidecar files." },
        Flag { name: "json", value: None, help: "Output raw JSON summary on successful restore." },
        Flag { name: "integrity-check", value: Some("MODE"), help: "Run an integrity check after restore: none, quick or full.\nDefaults to none." },
        Flag { name: "f", value: None, help: "Follow mode. After restoring, continuously poll for and apply\nnew changes. Similar to tail -f. The restored database should\nonly be opened in read-only mode by consumers.\nCannot be used with -txid or -timestamp." },
        Flag { name: "follow-interval", value: Some("DURATION"), help: "Polling interval for follow mode.\nDefaults to 1s." },
        Flag { name: "parallelism", value: Some("NUM"), help: "Ranged downloads in flight for a file over 4 MiB of a remote replica\n(1: one stream per file). Defaults to 4." },
    ];
    let usage = "The restore command recovers a database from a replica.\n\nUsage:\n\n\tlitestream restore [arguments] DB_PATH\n\n\tlitestream restore [arguments] REPLICA_URL\n";
    let Some(p) = parse_or_usage(args, &flags, usage)? else {
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
    if let Some(n) = p.get("parallelism") {
        opts.parallelism = n.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
            Usage(format!(
                "restore: invalid -parallelism {n:?}: want a number from 1"
            ))
        })?;
    }
    if opts.txid.is_some() && opts.timestamp.is_some() {
        return Err(Usage("restore: cannot specify both -txid and -timestamp".into()).into());
    }
    if let Some(m) = p.get("integrity-check") {
        opts.integrity_check = m
            .parse::<IntegrityCheck>()
            .map_err(|e| Usage(e.to_string()))?;
    }
    // The restored database gets the permission bits of the one it replaces (-force) or
    // is restored beside (the configured database, restored to -o), never wider; else
    // owner-only.
    opts.mode = [
        Some(output.clone()),
        (!crate::url::is_url(target)).then(|| PathBuf::from(target)),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file())
    .map(|p| crate::durable::mode_like(&p, restore::DEFAULT_MODE))
    .unwrap_or(restore::DEFAULT_MODE);
    if p.bool("f") {
        return run_follow(target, &p, &opts);
    }
    if p.get("follow-interval").is_some() {
        return Err(Usage("restore: -follow-interval needs -f".into()).into());
    }
    if p.bool("if-db-not-exists") && output.exists() {
        log::info!("database already exists, skipping: {}", output.display());
        return Ok(0);
    }
    let clients = clients_for(target, &p)?;
    let (client, choice) = match best_replica(&clients, &opts) {
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
    let json = p.bool("json");
    if p.bool("dry-run") {
        match &choice {
            Choice::Ltx(files) if json => print_plan_json(target, &output, client.kind(), files),
            Choice::Ltx(files) => print_plan(target, &output, client.kind(), files),
            Choice::V3(plan) if json => print_v3_plan_json(target, &output, client.kind(), plan),
            Choice::V3(plan) => print_v3_plan(target, &output, client.kind(), plan),
        }
        return Ok(0);
    }
    if p.bool("force") {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let s = crate::durable::sibling(&output, suffix);
            match std::fs::remove_file(&s) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("remove {}", s.display()), e).into()),
            }
        }
    }
    if !json {
        opts.progress = progress_printer();
    }
    let started = std::time::Instant::now();
    let r = match &choice {
        Choice::Ltx(_) => restore::restore(client.as_ref(), &opts)?,
        Choice::V3(_) => restore::v3::restore(client.as_ref(), &opts)?,
    };
    if json {
        // As the official: the TXID asked for, else the plan's last; none for v0.3 backups.
        let txid = match (opts.txid, &r.v3) {
            (Some(t), _) => t.to_string(),
            (None, Some(_)) => String::new(),
            (None, None) => r.txid.to_string(),
        };
        print_result_json(
            &output,
            client.kind(),
            &txid,
            started.elapsed(),
            p.get("integrity-check").unwrap_or("none"),
        );
    }
    if let Some(v3) = &r.v3 {
        log::info!(
            "restored {} from v0.3 generation {} (snapshot {:08x}, {} WAL segments), {} bytes in {:.3}s",
            output.display(),
            v3.snapshot.generation,
            v3.snapshot.index,
            v3.segments.len(),
            r.bytes_read,
            started.elapsed().as_secs_f64()
        );
        return Ok(0);
    }
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

/// `restore -f`: restores (or resumes) and follows until SIGINT or SIGTERM.
fn run_follow(target: &str, p: &crate::cli::flags::Parsed, opts: &RestoreOptions) -> CliResult {
    if opts.txid.is_some() {
        return Err(Usage("restore: cannot use follow mode with -txid".into()).into());
    }
    if opts.timestamp.is_some() {
        return Err(Usage("restore: cannot use follow mode with -timestamp".into()).into());
    }
    let mut fo = restore::FollowOptions::new(&opts.output);
    fo.integrity_check = opts.integrity_check;
    fo.mode = opts.mode;
    if let Some(i) = p.get("follow-interval") {
        fo.interval = crate::cli::config::parse_duration(i)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| Usage(format!("restore: invalid -follow-interval {i:?}")))?;
    }
    let clients = clients_for(target, p)?;
    // The first replica that has LTX files to follow.
    let mut chosen = None;
    let mut first_err = None;
    for c in &clients {
        match restore::plan(c.as_ref(), None, None) {
            Ok(_) => {
                chosen = Some(c.clone());
                break;
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let client = match (chosen, first_err) {
        (Some(c), _) => c,
        (None, Some(e)) if e.is_no_backup() && p.bool("if-replica-exists") => {
            log::info!("no matching backups found");
            return Ok(0);
        }
        (None, Some(e)) => return Err(e.into()),
        (None, None) => return Err(Error::NoSnapshots.into()),
    };
    sys::install();
    let started = std::time::Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if sys::count() > 0 {
                    log::info!("{}: stopping follow mode", sys::last_name());
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                sys::sleep_until_signal(Some(std::time::Duration::from_millis(50)));
            }
        })
    };
    let r = restore::follow(client.as_ref(), &fo, &stop);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = watcher.join();
    let r = r?;
    if p.bool("json") {
        // The official prints no TXID for follow mode.
        print_result_json(
            &fo.output,
            client.kind(),
            "",
            started.elapsed(),
            p.get("integrity-check").unwrap_or("none"),
        );
    }
    log::info!(
        "follow mode of {} stopped at txid {} after applying {} files",
        fo.output.display(),
        r.txid,
        r.files_applied
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

fn print_v3_plan(source: &str, output: &Path, kind: &str, plan: &restore::v3::Plan) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Restore plan (Litestream v0.3 backup):");
    let _ = writeln!(out, "  source: {source}");
    let _ = writeln!(out, "  target: {}", output.display());
    let _ = writeln!(out, "  replica: {kind}");
    let _ = writeln!(out, "  generation: {}", plan.snapshot.generation);
    let _ = writeln!(out, "\nFiles to fetch:");
    let snap = &plan.snapshot;
    let rows: Vec<[String; 3]> = std::iter::once([
        snap.path.clone(),
        snap.size.to_string(),
        crate::time::format_rfc3339_secs(snap.created_at),
    ])
    .chain(plan.segments.iter().map(|s| {
        [
            s.path.clone(),
            s.size.to_string(),
            crate::time::format_rfc3339_secs(s.created_at),
        ]
    }))
    .collect();
    table(&mut out, &["file", "size", "timestamp"], &rows);
}

/// A JSON string as Go's `encoding/json` writes it (`<`, `>` and `&` escaped too).
fn json_str(s: &str) -> String {
    crate::wire::json::quote(s)
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// `restore -json`: the summary the official prints after a restore, field for field.
fn print_result_json(
    output: &Path,
    kind: &str,
    txid: &str,
    took: std::time::Duration,
    integrity_check: &str,
) {
    println!(
        "{{\n  \"db_path\": {},\n  \"replica\": {},\n  \"txid\": {},\n  \"duration_ms\": {},\n  \"integrity_check\": {}\n}}",
        json_str(&output.to_string_lossy()),
        json_str(kind),
        json_str(txid),
        took.as_millis(),
        json_str(integrity_check)
    );
}

/// The head of a `-dry-run -json` plan, up to its `"files"` array (left open).
fn plan_json_head(source: &str, output: &Path, kind: &str, min: &str, max: &str) -> String {
    format!(
        "{{\n  \"source\": {},\n  \"target_path\": {},\n  \"replica\": {},\n  \"min_txid\": {},\n  \"max_txid\": {},\n  \"files\": [",
        json_str(source),
        json_str(&output.to_string_lossy()),
        json_str(kind),
        json_str(min),
        json_str(max)
    )
}

/// Objects (each given as its `"key": value` lines) closing a plan's `"files"` array.
fn plan_json_files(head: String, files: Vec<Vec<String>>) -> String {
    if files.is_empty() {
        return format!("{head}]\n}}");
    }
    let items: Vec<String> = files
        .iter()
        .map(|f| format!("    {{\n      {}\n    }}", f.join(",\n      ")))
        .collect();
    format!("{head}\n{}\n  ]\n}}", items.join(",\n"))
}

/// `restore -dry-run -json`: the plan as the official prints it.
fn print_plan_json(source: &str, output: &Path, kind: &str, files: &[FileInfo]) {
    let (min, max) = match (files.first(), files.last()) {
        (Some(f), Some(l)) => (f.min_txid.to_string(), l.max_txid.to_string()),
        _ => Default::default(),
    };
    let head = plan_json_head(source, output, kind, &min, &max);
    let files = files
        .iter()
        .map(|f| {
            vec![
                format!("\"level\": {}", f.level),
                format!("\"name\": {}", json_str(&f.name())),
                format!("\"min_txid\": \"{}\"", f.min_txid),
                format!("\"max_txid\": \"{}\"", f.max_txid),
                format!("\"size\": {}", f.size),
                format!(
                    "\"timestamp\": {}",
                    json_str(&crate::time::format_rfc3339_secs(f.created_at))
                ),
            ]
        })
        .collect();
    println!("{}", plan_json_files(head, files));
}

/// `restore -dry-run -json` of v0.3 backups (which the official cannot plan): the same
/// shape, with no TXIDs, a `generation`, and each file's path as its name.
fn print_v3_plan_json(source: &str, output: &Path, kind: &str, plan: &restore::v3::Plan) {
    let head = plan_json_head(source, output, kind, "", "");
    let head = head.replacen(
        "\n  \"files\": [",
        &format!(
            "\n  \"generation\": {},\n  \"files\": [",
            json_str(&plan.snapshot.generation)
        ),
        1,
    );
    let file = |path: &str, size: u64, at| {
        vec![
            format!("\"name\": {}", json_str(path)),
            format!("\"size\": {size}"),
            format!(
                "\"timestamp\": {}",
                json_str(&crate::time::format_rfc3339_secs(at))
            ),
        ]
    };
    let snap = &plan.snapshot;
    let files = std::iter::once(file(&snap.path, snap.size, snap.created_at))
        .chain(
            plan.segments
                .iter()
                .map(|s| file(&s.path, s.size, s.created_at)),
        )
        .collect();
    println!("{}", plan_json_files(head, files));
}
