//! `litestream info`: a running daemon's version, PID, uptime and database count, over
//! its control socket.

use crate::cli::cmd::daemon;
use crate::cli::control::client::{str_field, u64_field};
use crate::cli::CliResult;
use crate::wire::json::quote;

/// Runs the command.
pub(crate) fn run(args: &[String]) -> CliResult {
    let usage = "usage: litestream info [OPTIONS]\n\nShow daemon information from a running Litestream instance.\n";
    let Some(c) = daemon::parse(args, &[], None, 10, usage)? else {
        return Ok(0);
    };
    let v = c.send("info", "GET", "/info", "")?;
    let (version, pid, uptime, started, count) = (
        str_field(&v, "version"),
        u64_field(&v, "pid"),
        u64_field(&v, "uptime_seconds"),
        str_field(&v, "started_at"),
        u64_field(&v, "database_count"),
    );
    if c.json() {
        println!(
            "{{\n  \"version\": {},\n  \"pid\": {pid},\n  \"uptime_seconds\": {uptime},\n  \"started_at\": {},\n  \"database_count\": {count}\n}}",
            quote(&version),
            quote(&started)
        );
    } else {
        let started = crate::time::parse_rfc3339(&started)
            .map(crate::time::format_rfc3339_secs)
            .unwrap_or(started);
        println!("Litestream {version}");
        println!("  PID:        {pid}");
        println!("  Uptime:     {}", go_duration(uptime));
        println!("  Started at: {started}");
        println!("  Databases:  {count}");
    }
    Ok(0)
}

/// Whole seconds as Go prints a `time.Duration` (`1h2m3s`, `45s`).
fn go_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}
