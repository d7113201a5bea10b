//! `litestream ltx`: lists the LTX files of a database's replicas (or of a replica URL), as a
//! table or as JSON.

use std::io::Write;

use crate::cli::flags::Flag;
use crate::cli::{clients_for, json_array, parse_or_usage, table, CliResult, Usage};
use crate::client::SNAPSHOT_LEVEL;
use crate::ltx::Txid;

/// Runs the command.
pub(crate) fn run(args: &[String]) -> CliResult {
    let flags = [
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
    let Some(p) = parse_or_usage(args, &flags, usage)? else {
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
            json_array(&mut out, &items);
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
