//! `litestream register -replica URL DB_PATH`: adds a database to a running daemon over
//! its control socket; it starts replicating at once.

use crate::cli::cmd::daemon::{self, print_fields};
use crate::cli::control::client::str_field;
use crate::cli::flags::Flag;
use crate::cli::{CliResult, Usage};
use crate::wire::json::quote;

/// Runs the command.
pub(crate) fn run(args: &[String]) -> CliResult {
    let usage =
        "usage: litestream register [OPTIONS] DB_PATH\n\nRegister a database for replication.\n";
    let own = [Flag {
        name: "replica",
        value: Some("URL"),
        help: "Replica destination URL (e.g., s3://bucket/prefix, file:///backup/path). Required.",
    }];
    let hint = "litestream register -replica s3://bucket/prefix /path/to/db";
    let Some(c) = daemon::parse(args, &own, Some(hint), 30, usage)? else {
        return Ok(0);
    };
    let Some(url) = c.p.get("replica").filter(|u| !u.is_empty()) else {
        return Err(Usage(format!("-replica is required\nhint: {hint}")).into());
    };
    let body = format!(
        "{{\"path\":{},\"replica_url\":{}}}",
        quote(c.db()),
        quote(url)
    );
    let v = c.send("register", "POST", "/register", &body)?;
    let status = str_field(&v, "status");
    let shown = if c.json() || status != "already_registered" {
        status
    } else {
        "already registered".into()
    };
    print_fields(
        c.json(),
        &[
            ("status", quote(&shown)),
            ("db_path", quote(&str_field(&v, "path"))),
            ("replica", quote(url)),
            ("socket", quote(&c.socket_text())),
        ],
    );
    Ok(0)
}
