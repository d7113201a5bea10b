//! `litestream version`: prints the program's and SQLite's versions.

use crate::cli::CliResult;

/// Runs the command.
pub(crate) fn run() -> CliResult {
    println!(
        "litestream-rs {} (sqlite {})",
        env!("CARGO_PKG_VERSION"),
        crate::sqlite::sqlite_version()
    );
    Ok(0)
}
