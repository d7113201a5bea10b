//! What the HTTP backends share: one way to build a `ureq` agent and one retry pause.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Attempts per request before a transient failure is reported.
pub(crate) const MAX_ATTEMPTS: u32 = 10;

/// A blocking agent: statuses are answers (not errors), 30 s to connect, 120 s per read or
/// write, keep-alive, our user agent. `skip_verify` turns TLS verification off.
pub(crate) fn agent(skip_verify: bool) -> ureq::Agent {
    let mut tls = ureq::tls::TlsConfig::builder();
    if skip_verify {
        tls = tls.disable_verification(true);
    }
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .timeout_per_write(Some(Duration::from_secs(120)))
        .max_idle_connections_per_host(16)
        .allow_non_standard_methods(true)
        .user_agent(format!("litestream-rs/{}", env!("CARGO_PKG_VERSION")))
        .tls_config(tls.build())
        .build()
        .into()
}

/// A pseudo-random number below `max` (from the clock; for jitter and boundaries only).
pub(crate) fn jitter(max: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) % max.max(1)
}

/// Sleeps before retry number `attempt` (1-based): capped exponential backoff, 200 ms to
/// 10 s, with half of it random so clients do not retry in step.
pub(crate) fn backoff(attempt: u32) {
    let delay = (100u64 << attempt.min(7)).min(10_000);
    std::thread::sleep(Duration::from_millis(delay / 2 + jitter(delay / 2)));
}

#[cfg(test)]
mod tests {
    #[test]
    fn jitter_stays_below_its_bound() {
        for max in [1, 2, 7, 1000] {
            assert!(super::jitter(max) < max);
        }
        assert_eq!(super::jitter(0), 0);
    }
}
