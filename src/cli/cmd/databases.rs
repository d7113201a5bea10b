//! `litestream databases`: lists the configured databases and their replicas, as a table or
//! as JSON.

use crate::cli::config::databases::resolve_dbs;
use crate::cli::{describe, json_array, load_config, parse_or_usage, table, CliResult, JSON_FLAG};

/// Runs the command.
pub(crate) fn run(args: &[String]) -> CliResult {
    let usage = "The databases command lists all databases in the configuration file.\n\nUsage:\n\n\tlitestream databases [arguments]\n";
    let Some(p) = parse_or_usage(args, &[JSON_FLAG], usage)? else {
        return Ok(0);
    };
    let cfg = load_config(&p)?;
    let dbs = resolve_dbs(&cfg)?;
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
        json_array(&mut out, &items);
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
