//! `litestream sync [-wait] DB_PATH`: a running daemon syncs the database now; with
//! `-wait` the answer comes once every replica holds the new TXID. Over its control socket.

use std::time::Instant;

use crate::cli::cmd::daemon::{self, print_fields};
use crate::cli::control::client::{str_field, u64_field};
use crate::cli::flags::Flag;
use crate::cli::CliResult;
use crate::wire::json::quote;

/// Runs the command.
pub(crate) fn run(args: &[String]) -> CliResult {
    let usage =
        "usage: litestream sync [OPTIONS] DB_PATH\n\nForce an immediate sync for a database.\n";
    let own = [Flag {
        name: "wait",
        value: None,
        help: "Block until sync completes including remote replication (default: false).",
    }];
    let Some(c) = daemon::parse(args, &own, Some("litestream sync /path/to/db"), 30, usage)? else {
        return Ok(0);
    };
    let wait = c.p.bool("wait");
    let started = Instant::now();
    let v = c.send(
        "sync",
        "POST",
        "/sync",
        &c.path_body(if wait { ",\"wait\":true" } else { "" }),
    )?;
    let ms = started.elapsed().as_millis();
    let mut fields = vec![
        ("db_path", quote(&str_field(&v, "path"))),
        ("txid", u64_field(&v, "txid").to_string()),
    ];
    if wait {
        fields.push(("replica_txid", u64_field(&v, "replicated_txid").to_string()));
    }
    fields.push(("duration_ms", ms.to_string()));
    print_fields(c.json(), &fields);
    Ok(0)
}
