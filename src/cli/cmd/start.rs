//! `litestream start DB_PATH`: a running daemon resumes replicating a stopped database,
//! over its control socket. `stop` shares the printing.

use crate::cli::cmd::daemon::{self, print_fields, Call};
use crate::cli::control::client::{str_field, u64_field};
use crate::cli::CliResult;
use crate::wire::json::quote;

/// Runs the command.
pub(crate) fn run(args: &[String]) -> CliResult {
    let usage = "usage: litestream start [OPTIONS] DB_PATH\n\nStart replication for a database.\n";
    let Some(c) = daemon::parse(args, &[], Some("litestream start /path/to/db"), 30, usage)? else {
        return Ok(0);
    };
    let v = c.send("start", "POST", "/start", &c.path_body(""))?;
    print_result(&c, &v, "running");
    Ok(0)
}

/// Prints a `start` or `stop` answer as Litestream does.
pub(crate) fn print_result(c: &Call, v: &crate::wire::json::Value, state: &str) {
    print_fields(
        c.json(),
        &[
            ("status", quote(&str_field(v, "status"))),
            ("db_path", quote(&str_field(v, "path"))),
            ("state", quote(state)),
            ("txid", u64_field(v, "txid").to_string()),
            ("socket", quote(&c.socket_text())),
        ],
    );
}
