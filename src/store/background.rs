//! A store's periodic background threads (heartbeats, validation): a loop that runs a
//! job every interval until stopped, and stops promptly.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A running periodic thread; [`Background::stop`] stops and joins it.
#[derive(Debug)]
pub(super) struct Background {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Starts thread `name`, which runs `job` every `every` (first after one interval).
    pub(super) fn start(
        name: &str,
        every: Duration,
        mut job: impl FnMut() + Send + 'static,
    ) -> Result<Background> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let (lock, cv) = &*s;
                let mut next = Instant::now() + every;
                loop {
                    let Ok(mut stopped) = lock.lock() else { return };
                    while !*stopped && Instant::now() < next {
                        let wait = next.saturating_duration_since(Instant::now());
                        stopped = match cv.wait_timeout(stopped, wait) {
                            Ok((g, _)) => g,
                            Err(_) => return,
                        };
                    }
                    if *stopped {
                        return;
                    }
                    drop(stopped);
                    job();
                    next = Instant::now() + every;
                }
            })
            .map_err(|e| Error::io(format!("start thread {name}"), e))?;
        Ok(Background {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread after the job it is running, and waits for it.
    pub(super) fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Ok(mut s) = self.stop.0.lock() {
            *s = true;
        }
        self.stop.1.notify_all();
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.shutdown();
    }
}
