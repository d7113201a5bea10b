//! A database's thread: every monitor interval a `stat` of the WAL and, when it changed, a
//! sync and the checkpoint policy (at interval zero, whenever the `watch` module's
//! watcher says the WAL changed); requests from handles in between; back-off while it
//! fails. After each tick of an open database it calls its listener (the store kicks the
//! replicas' uploads from there), which is all it knows of what happens downstream.

use std::fs;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::watch::{self, Wakes};
use super::{local, Cmd, DbHandle, Shared, Syncer};
use crate::error::{Error, Result};

/// Called after every tick of an open database; cheap, no I/O. It may ask to be called
/// again after a while (work downstream it could not start yet), which a database whose
/// ticks come with its writes does, without a tick.
pub(crate) type Listener = Box<dyn Fn() -> Option<Duration> + Send>;

/// Starts the thread of `db` (named `litestream-db-<file name>`); requests through its
/// handles are served from now on.
pub(crate) fn spawn(db: &DbHandle, listener: Listener) -> Result<JoinHandle<()>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let shared = db.0.clone();
    let wakes = if shared.opts.monitor_interval.is_zero() {
        match watch::spawn(&shared.path, tx.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                log::warn!(
                    "{}: monitor-interval 0: {e}; checking the WAL every 10 ms instead",
                    shared.path.display()
                );
                None
            }
        }
    } else {
        None
    };
    if let Ok(mut g) = db.0.cmd.lock() {
        *g = Some(tx);
    }
    let name = format!(
        "litestream-db-{}",
        shared
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    std::thread::Builder::new()
        .name(name)
        .spawn(move || run(shared, rx, listener, wakes))
        .map_err(|e| Error::io("start database thread", e))
}

impl Syncer {
    /// One monitor tick: a `stat`, and a sync plus checkpoint policy when the WAL changed.
    pub(super) fn tick(&mut self, force: bool) -> Result<bool> {
        let key = local::stat_key(&self.wal_path);
        if !force && !self.recheck && key.is_some() && key == self.last_stat {
            // Unchanged: only a time-based checkpoint may be due after writes stopped.
            if self.time_checkpoint_due() {
                self.checkpoint(false)?;
                self.last_stat = local::stat_key(&self.wal_path);
            }
            return Ok(false);
        }
        let changed = key != self.last_stat;
        self.last_stat = key;
        let before = self.txid();
        let started = Instant::now();
        if let Err(e) = self.sync(true) {
            // The stat above is taken: without this the next timer tick would find the
            // WAL "unchanged" and leave the frames that failed to sync until a new write.
            self.recheck = true;
            return Err(e);
        }
        let db_size = fs::metadata(&self.shared.path)
            .map(|m| m.len())
            .unwrap_or(0);
        let secs = started.elapsed().as_secs_f64();
        self.shared.publish(|st| {
            st.sync_count += 1;
            st.sync_seconds += secs;
            st.db_size = db_size;
        });
        let wrote = self.txid() != before;
        // A write may land with the same mtime as the stat above: look once more.
        self.recheck = changed || wrote;
        // A pacer the sync started and no checkpoint stopped ends after this tick, in `run`.
        self.checkpoint_policy()?;
        Ok(wrote)
    }
}

/// The body of a database's thread.
fn run(shared: Arc<Shared>, rx: Receiver<Cmd>, listener: Listener, wakes: Option<Arc<Wakes>>) {
    let mut syncer: Option<Syncer> = None;
    let mut failures = 0u32;
    let mut retry_at = Instant::now();
    let mut last_error_log: Option<Instant> = None;
    let interval = shared.opts.monitor_interval;
    // Watched, the WAL's own events bring the ticks: the timer is only for a time-based
    // checkpoint after writes stop. Unwatched at interval zero, a 10 ms poll.
    let (every, retry_base) = match (&wakes, interval.is_zero()) {
        (Some(_), _) => (
            match shared.opts.checkpoint_interval {
                d if d.is_zero() => Duration::from_secs(60),
                d => d.clamp(Duration::from_secs(1), Duration::from_secs(60)),
            },
            Duration::from_millis(100),
        ),
        (None, true) => (Duration::from_millis(10), Duration::from_millis(100)),
        (None, false) => (interval, interval),
    };
    // Watched: when the listener asked to be called again, and when the timer's tick is
    // due (kept while the listener alone is called).
    let mut call_back: Option<Instant> = None;
    let mut tick_at: Option<Instant> = None;
    loop {
        let base = if failures == 0 {
            // Watched but not open yet (the file missing, or the application holding a
            // lock the open needs): a write may not come to retry it, so look each second.
            match (&wakes, &syncer) {
                (Some(_), None) => every.min(Duration::from_secs(1)),
                _ => every,
            }
        } else {
            backoff(retry_base, failures)
        };
        let due = *tick_at.get_or_insert_with(|| Instant::now() + base);
        let until = call_back.map_or(due, |c| c.min(due));
        let cmd = match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(c) => Some(c),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if cmd.is_none() && Instant::now() < due {
            call_back = listener().map(|d| Instant::now() + d);
            continue;
        }
        tick_at = None;
        if let Some(Cmd::Wake) = cmd {
            if let Some(w) = &wakes {
                w.taken();
            }
            // A failing database retries on its back-off, not on every write.
            if failures > 0 && Instant::now() < retry_at {
                continue;
            }
        }
        if syncer.is_none() && shared.path.exists() {
            match Syncer::open(shared.clone()) {
                Ok(s) => {
                    log::info!("{}: replicating", shared.path.display());
                    syncer = Some(s);
                }
                Err(e) => {
                    shared.publish(|st| st.error = Some(e.to_string()));
                    crate::logging::error_rate_limited(&mut last_error_log, || {
                        format!("{}: open: {e}", shared.path.display())
                    });
                }
            }
        }
        let result: Result<()> = match (cmd, syncer.as_mut()) {
            (Some(Cmd::Close(reply)), _) => {
                let r = match syncer.take() {
                    Some(s) => s.close(),
                    None => Ok(shared.state().txid),
                };
                let _ = reply.send(r);
                break;
            }
            (Some(Cmd::Sync(reply)), Some(s)) => {
                let r = s.tick(true).map(|_| s.txid());
                let e = r.as_ref().err().map(|e| e.to_string());
                let _ = reply.send(r);
                e.map_or(Ok(()), |m| Err(Error::State(m)))
            }
            (Some(Cmd::Snapshot(reply)), Some(s)) => {
                let _ = reply.send(s.snapshot_file());
                Ok(())
            }
            (Some(Cmd::NewLineage(after, reply)), Some(s)) => {
                s.renumber_after = Some(after.max(s.txid()));
                let _ = reply.send(s.tick(true).map(|_| s.txid()));
                Ok(())
            }
            (Some(Cmd::Sync(reply)), None) => {
                let _ = reply.send(Err(not_ready(&shared)));
                Ok(())
            }
            (Some(Cmd::Snapshot(reply)), None) => {
                let _ = reply.send(Err(not_ready(&shared)));
                Ok(())
            }
            (Some(Cmd::NewLineage(_, reply)), None) => {
                let _ = reply.send(Err(not_ready(&shared)));
                Ok(())
            }
            // A write may share its stat with the last one: a watched change always syncs.
            (Some(Cmd::Wake), Some(s)) => s.tick(true).map(|_| ()),
            (Some(Cmd::Wake), None) => Ok(()),
            (None, Some(s)) => s.tick(false).map(|_| ()),
            (None, None) => Ok(()),
        };
        match result {
            Ok(()) => failures = 0,
            Err(e) => {
                log::debug!("{}: tick failed: {e}", shared.path.display());
                failures += 1;
                retry_at = Instant::now() + backoff(retry_base, failures);
                let full = e.is_disk_full();
                shared.publish(|st| {
                    st.error = Some(e.to_string());
                    st.sync_errors += 1;
                    st.disk_full = full;
                });
                crate::logging::error_rate_limited(&mut last_error_log, || {
                    format!("{}: sync: {e}", shared.path.display())
                });
                if let Some(s) = syncer.as_mut() {
                    // Clean up after repeated failures (e.g. the file was replaced).
                    if failures >= 3 {
                        local::remove_temp_files(&s.l0_dir);
                    }
                }
            }
        }
        if let Some(s) = syncer.as_mut() {
            // A pacer never outlives the tick or command that started it (a sync that
            // failed half-way, a snapshot, a forced sync with no checkpoint due).
            s.unpace();
            let again = listener();
            // On a timer the next tick calls it anyway.
            call_back = again
                .filter(|_| wakes.is_some())
                .map(|d| Instant::now() + d);
        }
    }
    if let Some(w) = &wakes {
        w.stop();
    }
    // Dropping the syncer rolls back R and closes our connections.
    drop(syncer);
}

/// The wait after `failures` failures in a row: `base` doubled each time, at most 60 s.
fn backoff(base: Duration, failures: u32) -> Duration {
    (base * 2u32.saturating_pow(failures.min(16))).min(Duration::from_secs(60))
}

fn not_ready(shared: &Shared) -> Error {
    Error::State(format!(
        "{} is not ready: {}",
        shared.path.display(),
        shared
            .state()
            .error
            .unwrap_or_else(|| "the database file does not exist yet".into())
    ))
}
