//! Log lines for failures that repeat every tick: at most one every 30 s per source, so a
//! replica that is down for an hour does not fill the log.

use std::time::{Duration, Instant};

/// How often a repeating failure is logged.
const EVERY: Duration = Duration::from_secs(30);

/// Logs `msg()` as an error unless the last one from this source (`last`) was logged less
/// than 30 s ago.
pub(crate) fn error_rate_limited(last: &mut Option<Instant>, msg: impl FnOnce() -> String) {
    if last.is_none_or(|t| t.elapsed() >= EVERY) {
        log::error!("{}", msg());
        *last = Some(Instant::now());
    }
}
