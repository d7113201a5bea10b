//! Retrying: the one policy every replica client follows when a request fails in a way a
//! second try may fix: how many attempts, how long to pause between them, and which
//! failures count as transient.
//!
//! * **Attempts**: [`MAX_ATTEMPTS`] per request (the first try and nine retries).
//! * **Back-off**: before retry `n`, `min(100 ms × 2ⁿ, 10 s)`, half of it random ([`delay`]):
//!   about 0.2, 0.4, 0.8, 1.6, 3.2, 6.4 s, then 10 s; a request that keeps failing gives up
//!   after 30 to 45 s, and clients that failed together do not retry in step.
//! * **Transient** is [`Error::is_transient`], nothing else: no answer at all (connection
//!   refused, reset or timed out), an answer cut off while its body was read whatever its
//!   status line said (see [`cut_off`]), HTTP 408, 429 and 5xx, and S3's throttling codes
//!   (`SlowDown`, `RequestTimeout`, ...). Any other answer is the server's verdict and final.
//!
//! An attempt is the whole exchange: the credentials or access token it needs, the request
//! (a body streamed from a file is read again from its start with positioned reads, see
//! `ReadAt`), and, unless the caller streams it, the answer read to its end. Token fetches
//! are part of the attempt that needs them and are not retried on their own, so retry
//! loops never nest. A streamed download hands its body over after the status line; when
//! it breaks later, `ResumableReader` reopens it at its offset under the same policy.

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// Attempts per request before a transient failure is reported.
pub(crate) const MAX_ATTEMPTS: u32 = 10;

/// Runs `attempt` (given its 1-based number) until it succeeds, fails with an error that
/// is not transient, or [`MAX_ATTEMPTS`] attempts failed; pauses with [`backoff`] between
/// attempts. `backend` and `op` name the request in the debug log.
pub(crate) fn run<T>(
    backend: &str,
    op: &str,
    mut attempt: impl FnMut(u32) -> Result<T>,
) -> Result<T> {
    let mut n = 0;
    loop {
        n += 1;
        match attempt(n) {
            Err(e) if e.is_transient() && n < MAX_ATTEMPTS => {
                log::debug!("{backend}: {op} attempt {n} failed: {e}; retrying");
                backoff(n);
            }
            r => return r,
        }
    }
}

/// The pause before retry number `attempt` (1-based): capped exponential back-off, 200 ms
/// to 10 s, with half of it random.
pub(crate) fn delay(attempt: u32) -> Duration {
    let ms = (100u64 << attempt.min(7)).min(10_000);
    Duration::from_millis(ms / 2 + jitter(ms / 2))
}

/// Sleeps [`delay`]`(attempt)`.
pub(crate) fn backoff(attempt: u32) {
    std::thread::sleep(delay(attempt));
}

/// A pseudo-random number below `max` (from the clock; for jitter and multipart
/// boundaries only).
pub(crate) fn jitter(max: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) % max.max(1)
}

/// A request that got no (complete) answer: it could not be sent, or the connection
/// failed before the status line. Transient.
pub(crate) fn transport(
    backend: &'static str,
    op: &'static str,
    target: impl Into<String>,
    message: String,
) -> Error {
    Error::Backend {
        backend,
        op,
        target: target.into(),
        status: None,
        code: String::new(),
        message,
    }
}

/// An answer whose body broke off while it was read (a connection cut by a proxy, a
/// server that died mid-answer): transient whatever its status line said, since the
/// answer is incomplete. The status goes into the message, not into `status`.
pub(crate) fn cut_off(
    backend: &'static str,
    op: &'static str,
    target: impl Into<String>,
    status: u16,
    e: &io::Error,
) -> Error {
    transport(
        backend,
        op,
        target,
        format!("the answer (HTTP {status}) broke off while its body was read: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_below_its_bound() {
        for max in [1, 2, 7, 1000] {
            assert!(jitter(max) < max);
        }
        assert_eq!(jitter(0), 0);
    }

    #[test]
    fn delays_grow_to_their_cap_with_half_random() {
        for (attempt, full) in [(1, 200), (2, 400), (6, 6400), (7, 10_000), (30, 10_000)] {
            let d = delay(attempt).as_millis() as u64;
            assert!(d >= full / 2 && d < full, "attempt {attempt}: {d} ms");
        }
    }

    /// Transient failures are retried until one attempt succeeds; a final one stops at
    /// once.
    #[test]
    fn retries_transient_failures_only() {
        let mut seen = Vec::new();
        let got = run("test", "op", |n| {
            seen.push(n);
            if n < 3 {
                Err(cut_off(
                    "test",
                    "op",
                    "t",
                    200,
                    &io::Error::from(io::ErrorKind::UnexpectedEof),
                ))
            } else {
                Ok(n)
            }
        });
        assert_eq!(got.unwrap(), 3);
        assert_eq!(seen, [1, 2, 3]);

        let mut calls = 0;
        let e = run::<()>("test", "op", |_| {
            calls += 1;
            Err(Error::Backend {
                backend: "test",
                op: "op",
                target: "t".into(),
                status: Some(403),
                code: "AccessDenied".into(),
                message: String::new(),
            })
        })
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(!e.is_transient());
    }

    #[test]
    fn a_cut_off_answer_is_transient_whatever_its_status() {
        let e = cut_off(
            "s3",
            "ListObjectsV2",
            "bkt",
            200,
            &io::Error::from(io::ErrorKind::UnexpectedEof),
        );
        assert!(e.is_transient());
        assert!(e.to_string().contains("HTTP 200"), "{e}");
        assert!(transport("gs", "list", "b", "connection refused".into()).is_transient());
    }
}
