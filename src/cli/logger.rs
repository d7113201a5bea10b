//! A small `log` backend for the binary: one `time= level= msg=` line per record on stderr.

use std::io::Write;
use std::sync::OnceLock;

struct Logger {
    level: log::LevelFilter,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.level
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
        let line = format!("time={now} level={level} msg={:?}\n", r.args().to_string());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
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

/// Installs the logger (once; later calls only change nothing).
pub(crate) fn init(level: log::LevelFilter) {
    let logger = LOGGER.get_or_init(|| Logger { level });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(logger.level);
    }
}
