//! `litestream stop DB_PATH`: a running daemon syncs the database a last time and stops
//! replicating it (it stays registered), over its control socket.

use crate::cli::cmd::daemon;
use crate::cli::cmd::start::print_result;
use crate::cli::CliResult;

/// Runs the command.
pub(crate) fn run(args: &[String]) -> CliResult {
    let usage = "usage: litestream stop [OPTIONS] DB_PATH\n\nStop replication for a database.\nStop always waits for shutdown and final sync.\n";
    let Some(c) = daemon::parse(args, &[], Some("litestream stop /path/to/db"), 30, usage)? else {
        return Ok(0);
    };
    let v = c.send("stop", "POST", "/stop", &c.path_body(""))?;
    print_result(&c, &v, "stopped");
    Ok(0)
}
