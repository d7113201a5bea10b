//! The pacer: while a checkpoint chases a writer that produces WAL faster than it can be
//! copied and backfilled, a thread holds the write lock in short slices, so the writer is
//! slowed to a pace the checkpoint can finish at (the WAL stays bounded) and no commit waits
//! much longer than one slice. While it runs it also serves the checkpoint's write barriers:
//! it takes the lock at once and keeps it until the barrier's work is done, instead of a
//! hold, so no commit ever waits for a hold and a barrier in a row.
//!
//! Why the slices are this long: a writer waiting on the lock sleeps in SQLite's busy
//! handler (1, 2, 5, 10, 15, 20, 25, 25, 25, 50, … ms). A hold of [`HOLD`] ends while a
//! writer that started waiting during it sleeps at most 25 ms at a time, so a release of at
//! least [`MIN_RELEASE`] always lets it in: a commit waits at most about one hold plus one
//! such sleep.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sqlite::Conn;

/// How long the pacer holds writers at a time.
pub(super) const HOLD: Duration = Duration::from_millis(100);
/// Shortest time writers run between two holds (see the module docs).
pub(super) const MIN_RELEASE: Duration = Duration::from_millis(35);
/// The release a checkpoint starts pacing with: writers run half the time.
pub(super) const FIRST_RELEASE: Duration = HOLD;

/// What the checkpoint wants of the pacer thread, and what the thread answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Want {
    /// Hold and release writers in turn.
    Run,
    /// Take the write lock now and keep it until told otherwise (a write barrier).
    Barrier,
    /// The thread's answer to `Barrier`: whether it holds the lock.
    Held(bool),
    /// End the thread.
    Stop,
}

type State = Arc<(Mutex<Want>, Condvar)>;

/// A running pacer thread (see the module docs); [`Pacer::stop`] gives its connection back.
pub(super) struct Pacer {
    state: State,
    release_ms: Arc<AtomicU64>,
    /// `None` once stopped.
    thread: Option<JoinHandle<Conn>>,
}

impl Pacer {
    /// Starts pacing writers of the database `conn` is open on. The thread first lets
    /// writers run for `release`, then holds them for [`HOLD`], and so on.
    pub(super) fn start(conn: Conn, release: Duration) -> Pacer {
        let state: State = Arc::new((Mutex::new(Want::Run), Condvar::new()));
        let release_ms = Arc::new(AtomicU64::new(release.as_millis() as u64));
        let (st, r) = (Arc::clone(&state), Arc::clone(&release_ms));
        let thread = std::thread::spawn(move || {
            loop {
                let release = Duration::from_millis(r.load(Relaxed));
                match wait(&st, release) {
                    Want::Stop => break,
                    Want::Barrier => {
                        let ok = conn.exec("BEGIN IMMEDIATE").is_ok();
                        if serve_barrier(&st, ok) == Want::Stop {
                            finish(&conn, ok);
                            break;
                        }
                        finish(&conn, ok);
                        continue;
                    }
                    _ => {}
                }
                if conn.exec("BEGIN IMMEDIATE").is_err() {
                    continue;
                }
                let next = match wait(&st, HOLD) {
                    // The hold becomes the barrier: writers are already held.
                    Want::Barrier => serve_barrier(&st, true),
                    w => w,
                };
                finish(&conn, true);
                if next == Want::Stop {
                    break;
                }
            }
            conn
        });
        Pacer {
            state,
            release_ms,
            thread: Some(thread),
        }
    }

    /// The time writers run between two holds now.
    pub(super) fn release(&self) -> Duration {
        Duration::from_millis(self.release_ms.load(Relaxed))
    }

    /// Slows writers further: halves the release, down to [`MIN_RELEASE`].
    pub(super) fn tighten(&self) {
        let next = (self.release() / 2).max(MIN_RELEASE);
        self.release_ms.store(next.as_millis() as u64, Relaxed);
    }

    /// Holds writers from now until [`Pacer::end_barrier`] (at once if a hold is under
    /// way). False if the write lock could not be taken (writers busy past the busy
    /// timeout); `end_barrier` must be called either way.
    pub(super) fn barrier(&self) -> bool {
        let (m, cv) = &*self.state;
        let mut want = lock(m);
        *want = Want::Barrier;
        cv.notify_all();
        loop {
            match *want {
                Want::Held(ok) => return ok,
                Want::Barrier if self.thread.as_ref().is_some_and(|t| !t.is_finished()) => {
                    want = cv
                        .wait_timeout(want, Duration::from_millis(5))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                _ => return false,
            }
        }
    }

    /// Ends a barrier: writers run for a full release before the next hold.
    pub(super) fn end_barrier(&self) {
        self.set(Want::Run);
    }

    /// Stops the thread (ending a hold or barrier at once) and returns its connection,
    /// `None` if the thread panicked.
    pub(super) fn stop(mut self) -> Option<Conn> {
        self.set(Want::Stop);
        self.thread.take()?.join().ok()
    }

    fn set(&self, w: Want) {
        let (m, cv) = &*self.state;
        *lock(m) = w;
        cv.notify_all();
    }
}

/// A pacer dropped without [`Pacer::stop`] (its database closed, or an error on the way)
/// still stops: a thread left holding the application's writers would slow them forever.
impl Drop for Pacer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.set(Want::Stop);
            let _ = t.join();
        }
    }
}

fn lock(m: &Mutex<Want>) -> MutexGuard<'_, Want> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits `d`, or less if a barrier or the end is asked for; returns what is wanted then.
fn wait(state: &(Mutex<Want>, Condvar), d: Duration) -> Want {
    let (m, cv) = state;
    let end = Instant::now() + d;
    let mut want = lock(m);
    loop {
        if matches!(*want, Want::Barrier | Want::Stop) {
            return *want;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return *want;
        }
        want = cv
            .wait_timeout(want, left)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
    }
}

/// Tells the checkpoint whether the lock is held and waits until the barrier ends;
/// returns what is wanted next (`Run` or `Stop`).
fn serve_barrier(state: &(Mutex<Want>, Condvar), held: bool) -> Want {
    let (m, cv) = state;
    let mut want = lock(m);
    if *want == Want::Barrier {
        *want = Want::Held(held);
        cv.notify_all();
    }
    while matches!(*want, Want::Held(_)) {
        want = cv.wait(want).unwrap_or_else(|e| e.into_inner());
    }
    *want
}

/// Lets writers go: ends the transaction a hold or barrier began.
fn finish(conn: &Conn, began: bool) {
    if began {
        let _ = conn.exec("ROLLBACK");
    }
}
