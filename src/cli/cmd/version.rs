//! `litestream version [-verbose]`: prints the program's version; `-verbose` adds the
//! build's details (SQLite, target, features) as Litestream's adds Go's.

use crate::cli::flags::{self, Flag};
use crate::cli::{CliResult, Usage};

/// The version the daemon reports (`info`).
pub(crate) fn version() -> String {
    format!("litestream-rs {}", env!("CARGO_PKG_VERSION"))
}

/// Runs the command.
pub(crate) fn run(args: &[String]) -> CliResult {
    let spec = [Flag {
        name: "verbose",
        value: None,
        help: "Print detailed build metadata (SQLite version, OS/arch, features).",
    }];
    let p = flags::parse(args, &spec).map_err(|e| Usage(e.to_string()))?;
    if p.help {
        print!(
            "Prints the version.\n\nUsage:\n\n\tlitestream version [arguments]\n\nArguments:\n\n{}",
            flags::usage(&spec)
        );
        return Ok(0);
    }
    if !p.bool("verbose") {
        println!("{} (sqlite {})", version(), crate::sqlite::sqlite_version());
        return Ok(0);
    }
    let features: Vec<&str> = [
        ("s3", cfg!(feature = "s3")),
        ("gcs", cfg!(feature = "gcs")),
        ("azure", cfg!(feature = "azure")),
        ("webdav", cfg!(feature = "webdav")),
        ("nats", cfg!(feature = "nats")),
        ("sftp", cfg!(feature = "sftp")),
        ("tls", cfg!(feature = "tls")),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| n)
    .collect();
    println!("litestream-rs {}", env!("CARGO_PKG_VERSION"));
    println!("  SQLite:   {}", crate::sqlite::sqlite_version());
    println!(
        "  OS/Arch:  {}/{}",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    println!("  Features: {}", features.join(", "));
    println!(
        "  Build:    {}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    Ok(0)
}
