//! `litestream status`: compares each configured database's local position with what its
//! replicas hold, as a table or as JSON.

use std::path::Path;

use crate::cli::config::databases::resolve_dbs;
use crate::cli::{
    describe, json_array, load_config, meta_path_of, parse_or_usage, same_path, table, CliResult,
    JSON_FLAG,
};
use crate::client::SNAPSHOT_LEVEL;
use crate::error::{Error, Result};
use crate::ltx::Txid;

/// Runs the command.
pub(crate) fn run(args: &[String]) -> CliResult {
    let usage = "The status command compares each database's local position with its replicas\n(works whether or not replicate is running).\n\nUsage:\n\n\tlitestream status [arguments] [DB_PATH]\n";
    let Some(p) = parse_or_usage(args, &[JSON_FLAG], usage)? else {
        return Ok(0);
    };
    let cfg = load_config(&p)?;
    let mut dbs = resolve_dbs(&cfg)?;
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
        let (local, last_sync) = crate::db::newest_l0(&meta)?;
        let wal = crate::durable::sibling(&d.path, "-wal");
        let wal_size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        for (rc, client) in d.cfg.replicas.iter().zip(d.clients()?) {
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
        json_array(&mut out, &json);
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
