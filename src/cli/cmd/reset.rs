//! `litestream reset`: removes a database's local LTX files so that its next sync starts
//! with a snapshot (`-dry-run` lists them).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::flags::Flag;
use crate::cli::{
    config_path, find_db, listed_db, load_config, meta_path_of, parse_or_usage, CliResult, Usage,
};
use crate::error::{Error, Result};

/// Runs the command.
pub(crate) fn run(args: &[String]) -> CliResult {
    let flags = [Flag {
        name: "dry-run",
        value: None,
        help: "Print the local LTX files that would be removed without deleting them.",
    }];
    let usage = "The reset command clears local Litestream state for a database: it removes the\nlocal LTX files from its metadata directory, so the next sync starts with a fresh\nsnapshot (numbered after whatever its replicas hold). The database file itself is\nnot modified. Use it when local state is damaged; stop replicate first.\n\nUsage:\n\n\tlitestream reset [arguments] <path>\n";
    let Some(p) = parse_or_usage(args, &flags, usage)? else {
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
            listed_db(&cfg, db)?
        }
    } else {
        None
    };
    let meta = match &listed {
        Some(d) => meta_path_of(d),
        None => crate::db::default_meta_path(&std::path::absolute(db).unwrap_or(db.into())),
    };
    let ltx_dir = crate::db::ltx_dir(&meta);
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
