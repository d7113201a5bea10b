//! A small `log` backend for the binary: one line per record on stderr, text or JSON.

use std::io::Write;
use std::sync::OnceLock;

/// Output format of log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Text,
    Json,
}

struct Logger {
    level: log::LevelFilter,
    format: Format,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

fn json_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o
}

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
        let line = match self.format {
            Format::Text => format!("time={now} level={level} msg={:?}\n", r.args().to_string()),
            Format::Json => format!(
                "{{\"time\":\"{now}\",\"level\":\"{level}\",\"msg\":\"{}\"}}\n",
                json_escape(&r.args().to_string())
            ),
        };
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
pub(crate) fn init(level: log::LevelFilter, format: Format) {
    let logger = LOGGER.get_or_init(|| Logger { level, format });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(logger.level);
    }
}
