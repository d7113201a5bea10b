//! `litestream unregister DB_PATH`: a running daemon syncs the database a last time and
//! forgets it, over its control socket.

use crate::cli::cmd::daemon::{self, print_fields};
use crate::cli::control::client::{str_field, u64_field};
use crate::cli::flags::Flag;
use crate::cli::CliResult;
use crate::wire::json::quote;

/// Runs the command.
pub(crate) fn run(args: &[String]) -> CliResult {
    let usage = "usage: litestream unregister [OPTIONS] DB_PATH\n\nUnregister a database from replication.\n";
    let own = [Flag {
        name: "dry-run",
        value: None,
        help: "Preview what would be unregistered without changing the daemon.",
    }];
    let Some(c) = daemon::parse(
        args,
        &own,
        Some("litestream unregister /path/to/db"),
        30,
        usage,
    )?
    else {
        return Ok(0);
    };
    if c.p.bool("dry-run") {
        println!("Dry run: unregister request preview");
        println!("  database: {}", c.db());
        println!("  socket: {}", c.socket_text());
        println!("  replicas: daemon-managed replica for this database");
        println!("  final sync: daemon close will sync the database and replica before the command completes");
        println!("  timeout: {}s", c.timeout.as_secs());
        println!("No unregister request was sent.");
        return Ok(0);
    }
    let v = c.send("unregister", "POST", "/unregister", &c.path_body(""))?;
    print_fields(
        c.json(),
        &[
            ("status", quote(&str_field(&v, "status"))),
            ("db_path", quote(&str_field(&v, "path"))),
            ("final_txid", u64_field(&v, "txid").to_string()),
            ("socket", quote(&c.socket_text())),
        ],
    );
    Ok(0)
}
