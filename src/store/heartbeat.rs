//! Heartbeats: a GET to a health-check URL (healthchecks.io, Cronitor, ...) whenever every
//! running database of the store has synced to all its replicas within the interval, as
//! Litestream's `heartbeat-url`. Checked every 15 s; a failed GET is logged and counted,
//! never fatal, and waits a whole interval like a successful one.

use std::time::{Duration, Instant, SystemTime};

use super::background::Background;
use super::StoreHandle;
use crate::error::{Error, Result};

/// Litestream's default heartbeat interval (5 min).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(300);
/// Litestream's shortest heartbeat interval in `litestream.yml` (1 min).
pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
/// How often the store checks whether a heartbeat is due (Litestream: 15 s).
pub const HEARTBEAT_CHECK_INTERVAL: Duration = Duration::from_secs(15);

/// A health-check URL and how often to ping it. Give it to
/// [`Store::heartbeat`](super::Store::heartbeat).
#[derive(Clone, Debug)]
pub struct Heartbeat {
    pub(crate) url: String,
    pub(crate) interval: Duration,
    pub(crate) check_every: Duration,
}

impl Heartbeat {
    /// Pings `url` (http or https) at most every `interval` while every database keeps
    /// syncing. The library takes any interval; `litestream.yml` refuses one under
    /// [`MIN_HEARTBEAT_INTERVAL`] as Litestream does.
    pub fn new(url: impl Into<String>, interval: Duration) -> Result<Heartbeat> {
        let url = url.into();
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) || url.len() < 9 {
            return Err(Error::Invalid(format!(
                "heartbeat-url {url:?}: want an http:// or https:// URL"
            )));
        }
        if interval.is_zero() {
            return Err(Error::Invalid(
                "heartbeat interval must be greater than zero".into(),
            ));
        }
        Ok(Heartbeat {
            url,
            interval,
            check_every: HEARTBEAT_CHECK_INTERVAL.min(interval),
        })
    }

    /// How often the store checks whether a heartbeat is due (default 15 s, or the
    /// interval if shorter).
    pub fn check_every(mut self, d: Duration) -> Self {
        self.check_every = d.max(Duration::from_millis(10));
        self
    }
}

/// True if there is a running database and every running one has all its replicas
/// caught up at some point since `since`.
pub(super) fn all_synced_since(store: &StoreHandle, since: SystemTime) -> bool {
    let running: Vec<_> = store.status().into_iter().filter(|d| d.running).collect();
    !running.is_empty()
        && running
            .iter()
            .all(|d| d.last_replicated().is_some_and(|t| t >= since))
}

/// Starts the heartbeat thread.
pub(super) fn start(h: Heartbeat, store: StoreHandle) -> Result<Background> {
    log::info!(
        "heartbeat: GET {} every {:?} while every database syncs",
        crate::url::redact(&h.url),
        h.interval
    );
    let shown = crate::url::redact(&h.url);
    let mut last: Option<Instant> = None;
    Background::start("litestream-heartbeat", h.check_every, move || {
        if last.is_some_and(|t| t.elapsed() < h.interval) {
            return;
        }
        let since = SystemTime::now()
            .checked_sub(h.interval)
            .unwrap_or(std::time::UNIX_EPOCH);
        if !all_synced_since(&store, since) {
            store.stats_mut(|s| s.heartbeats_skipped += 1);
            log::debug!(
                "heartbeat skipped: not every database synced within {:?}",
                h.interval
            );
            return;
        }
        last = Some(Instant::now());
        match crate::client::get_status(&h.url) {
            Ok(s) if (200..300).contains(&s) => {
                store.stats_mut(|st| st.heartbeats_sent += 1);
                log::debug!("heartbeat sent to {shown}");
            }
            Ok(s) => {
                store.stats_mut(|st| st.heartbeat_errors += 1);
                log::error!("heartbeat to {shown} failed: HTTP {s}");
            }
            Err(e) => {
                store.stats_mut(|st| st.heartbeat_errors += 1);
                log::error!("heartbeat to {shown} failed: {e}");
            }
        }
    })
}
