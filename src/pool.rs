//! A small fixed pool of worker threads for uploads.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A handle to submit jobs; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Pool {
    tx: Arc<Mutex<Option<Sender<Job>>>>,
}

/// Owns the worker threads; [`Workers::join`] waits for queued jobs to finish.
#[derive(Debug)]
pub(crate) struct Workers {
    pool: Pool,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `n` workers (at least one).
    pub(crate) fn new(n: usize, name: &str) -> std::io::Result<(Pool, Workers)> {
        let (tx, rx) = channel::<Job>();
        let rx: Arc<Mutex<Receiver<Job>>> = Arc::new(Mutex::new(rx));
        let pool = Pool {
            tx: Arc::new(Mutex::new(Some(tx))),
        };
        let mut handles = Vec::new();
        for i in 0..n.max(1) {
            let rx = rx.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    })?,
            );
        }
        Ok((pool.clone(), Workers { pool, handles }))
    }

    /// Queues a job; false if the pool is shut down.
    pub(crate) fn execute(&self, job: impl FnOnce() + Send + 'static) -> bool {
        match self.tx.lock() {
            Ok(guard) => match guard.as_ref() {
                Some(tx) => tx.send(Box::new(job)).is_ok(),
                None => false,
            },
            Err(_) => false,
        }
    }
}

impl Workers {
    /// Stops accepting jobs and waits for the workers to finish the queued ones.
    pub(crate) fn join(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Ok(mut g) = self.pool.tx.lock() {
            g.take();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_every_job_then_stops() {
        let (pool, workers) = Pool::new(3, "t").unwrap();
        let n = Arc::new(AtomicUsize::new(0));
        for _ in 0..100 {
            let n = n.clone();
            assert!(pool.execute(move || {
                n.fetch_add(1, Ordering::SeqCst);
            }));
        }
        workers.join();
        assert_eq!(n.load(Ordering::SeqCst), 100);
        assert!(!pool.execute(|| {}));
    }
}
