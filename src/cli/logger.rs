//! A small `log` backend for the binary: one line per record, `time= level= msg=` text or
//! JSON, on stderr (or stdout), reconfigurable after start-up (the config file may set the
//! level and format). Other crates' lines pass at warn and above only: the HTTP and TLS
//! libraries log request URIs and headers at debug and trace level, and a URI can hold a
//! secret (an Azure SAS token), so `-log-level debug` never shows them.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

struct Logger;

static JSON: AtomicBool = AtomicBool::new(false);
static STDOUT: AtomicBool = AtomicBool::new(false);
static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level() && (ours(m.target()) || m.level() <= log::Level::Warn)
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let now = crate::time::format_rfc3339_millis(std::time::SystemTime::now());
        let level = match r.level() {
            log::Level::Error => "ERROR",
            log::Level::Warn => "WARN",
            log::Level::Info => "INFO",
            log::Level::Debug | log::Level::Trace => "DEBUG",
        };
        let msg = r.args().to_string();
        let line = if JSON.load(Ordering::Relaxed) {
            format!(
                "{{\"time\":\"{now}\",\"level\":\"{level}\",\"msg\":{}}}\n",
                crate::wire::json::quote(&msg)
            )
        } else {
            format!("time={now} level={level} msg={msg:?}\n")
        };
        if STDOUT.load(Ordering::Relaxed) {
            let _ = std::io::stdout().lock().write_all(line.as_bytes());
        } else {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// True for a log target of this crate (the library's and the binary's modules).
fn ours(target: &str) -> bool {
    target == "litestream" || target.starts_with("litestream::")
}

/// Parses a level name as Litestream spells them.
pub(crate) fn parse_level(s: &str) -> Option<log::LevelFilter> {
    match s.to_ascii_lowercase().as_str() {
        "debug" | "trace" => Some(log::LevelFilter::Debug),
        "info" | "" => Some(log::LevelFilter::Info),
        "warn" | "warning" => Some(log::LevelFilter::Warn),
        "error" => Some(log::LevelFilter::Error),
        _ => None,
    }
}

/// Installs the logger.
pub(crate) fn init(level: log::LevelFilter) {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// Switches between text and JSON lines, stderr and stdout.
pub(crate) fn set_format(json: bool, stdout: bool) {
    JSON.store(json, Ordering::Relaxed);
    STDOUT.store(stdout, Ordering::Relaxed);
}
