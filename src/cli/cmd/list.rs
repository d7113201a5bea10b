//! `litestream list`: the databases a running daemon manages, with their state and last
//! sync, over its control socket.

use crate::cli::cmd::daemon;
use crate::cli::CliResult;
use crate::wire::json::{quote, Value};

/// Runs the command.
pub(crate) fn run(args: &[String]) -> CliResult {
    let usage =
        "usage: litestream list [OPTIONS]\n\nList all managed databases from a running daemon.\n";
    let Some(c) = daemon::parse(args, &[], None, 10, usage)? else {
        return Ok(0);
    };
    let v = c.send("list", "GET", "/list", "")?;
    let dbs = v.get("databases").and_then(Value::as_array).unwrap_or(&[]);
    if c.json() {
        let items: Vec<String> = dbs
            .iter()
            .map(|d| {
                let mut s = format!(
                    "    {{\n      \"path\": {},\n      \"status\": {}",
                    quote(&daemon_str(d, "path")),
                    quote(&daemon_str(d, "status"))
                );
                if let Some(t) = d.get("last_sync_at").and_then(Value::as_str) {
                    s.push_str(&format!(",\n      \"last_sync_at\": {}", quote(t)));
                }
                s + "\n    }"
            })
            .collect();
        println!("{{\n  \"databases\": [\n{}\n  ]\n}}", items.join(",\n"));
    } else if dbs.is_empty() {
        println!("No databases configured");
    } else {
        for d in dbs {
            let sync = d
                .get("last_sync_at")
                .and_then(Value::as_str)
                .and_then(|t| crate::time::parse_rfc3339(t).ok())
                .map(crate::time::format_rfc3339_secs)
                .unwrap_or_else(|| "never".into());
            println!(
                "{} [{}] (last sync: {sync})",
                daemon_str(d, "path"),
                daemon_str(d, "status")
            );
        }
    }
    Ok(0)
}

fn daemon_str(v: &Value, name: &str) -> String {
    crate::cli::control::client::str_field(v, name)
}
