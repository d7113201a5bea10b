//! Fetching a replica file for a restore: a ranged parallel reader over a
//! [`ReplicaClient`], so a large snapshot downloads from an object store at disk speed
//! with bounded memory.
//!
//! A file larger than one [`RANGE`] is cut into ranges; `workers` threads each fetch a
//! whole range (a ranged GET, reopened where it stopped when the stream breaks, see
//! [`ResumableReader`]) while the reader hands the bytes to the decoder strictly in order.
//! At most `workers` ranges are fetched or waiting ahead of the one being read, so memory
//! stays under `(workers + 1) × RANGE` (20 MiB with the defaults) whatever the file size.
//! Files of a local directory replica, and small files, are read as one sequential
//! stream: nothing to gain from ranges there.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Condvar, Mutex};
use std::thread::Scope;

use crate::client::{FileInfo, ReplicaClient, ResumableReader};

/// Bytes per ranged request.
pub(crate) const RANGE: u64 = 4 << 20;

/// Range workers per file by default.
pub const DEFAULT_PARALLELISM: usize = 4;

/// Whether `info` is worth fetching in ranges from `client` with `workers` threads.
pub(super) fn ranged(client: &dyn ReplicaClient, info: &FileInfo, workers: usize) -> bool {
    workers > 1 && info.size > RANGE && client.kind() != "file"
}

/// What the workers and the reader share.
#[derive(Default)]
struct State {
    /// The next range a worker will take.
    next_fetch: u64,
    /// The range the reader wants next.
    next_read: u64,
    /// Ranges fetched and not read yet.
    ready: HashMap<u64, Vec<u8>>,
    /// Buffers read to their end, for the next ranges: memory is allocated once per
    /// range in flight (freed buffers would linger in the allocator's per-thread arenas).
    free: Vec<Vec<u8>>,
    /// The first failure of a worker.
    failed: Option<io::Error>,
    /// Set when the reader is dropped: workers stop.
    stopped: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A worker that panicked left consistent data (every update is one statement).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads a file in order from ranges fetched in parallel by threads of a scope.
pub(super) struct RangedReader<'s> {
    shared: &'s Shared,
    ranges: u64,
    /// The range being read, and how far.
    current: Vec<u8>,
    pos: usize,
}

/// The shared state of one [`RangedReader`]; lives outside the scope its workers run in.
pub(super) struct RangedState(Shared);

impl RangedState {
    /// Fresh state.
    pub(super) fn new() -> Self {
        RangedState(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        })
    }
}

impl<'s> RangedReader<'s> {
    /// Starts `workers` threads in `scope` fetching `info` from `client`.
    pub(super) fn start<'env>(
        scope: &'s Scope<'s, 'env>,
        state: &'s RangedState,
        client: &'s dyn ReplicaClient,
        info: &'s FileInfo,
        workers: usize,
    ) -> Self {
        let ranges = info.size.div_ceil(RANGE);
        let shared = &state.0;
        let workers = workers.clamp(1, ranges.max(1) as usize);
        for _ in 0..workers {
            scope.spawn(move || work(shared, client, info, ranges, workers as u64));
        }
        RangedReader {
            shared,
            ranges,
            current: Vec::new(),
            pos: 0,
        }
    }
}

/// A worker: takes the next range while fewer than `window` wait ahead of the reader.
fn work(shared: &Shared, client: &dyn ReplicaClient, info: &FileInfo, ranges: u64, window: u64) {
    loop {
        let (idx, buf) = {
            let mut s = shared.lock();
            while !s.stopped
                && s.failed.is_none()
                && s.next_fetch < ranges
                && s.next_fetch >= s.next_read + window
            {
                s = shared.changed.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            if s.stopped || s.failed.is_some() || s.next_fetch >= ranges {
                return;
            }
            s.next_fetch += 1;
            (s.next_fetch - 1, s.free.pop().unwrap_or_default())
        };
        let offset = idx * RANGE;
        let len = RANGE.min(info.size - offset);
        let r = fetch(client, info, offset, len, buf);
        let mut s = shared.lock();
        match r {
            Ok(buf) => {
                s.ready.insert(idx, buf);
            }
            Err(e) => {
                s.failed.get_or_insert(e);
            }
        }
        shared.changed.notify_all();
    }
}

/// Bytes `[offset, offset + len)` of `info`, resumed where a broken stream stopped.
fn fetch(
    client: &dyn ReplicaClient,
    info: &FileInfo,
    offset: u64,
    len: u64,
    mut buf: Vec<u8>,
) -> io::Result<Vec<u8>> {
    buf.resize(len as usize, 0);
    ResumableReader::range(client, info.clone(), offset, len)
        .read_exact(&mut buf)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "{info}: bytes {offset}-{} of {}: {e}",
                    offset + len,
                    info.size
                ),
            )
        })?;
    Ok(buf)
}

impl Read for RangedReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.current.len() {
            let mut s = self.shared.lock();
            if s.next_read == self.ranges {
                return Ok(0);
            }
            let idx = s.next_read;
            let buf = loop {
                if let Some(b) = s.ready.remove(&idx) {
                    break b;
                }
                if let Some(e) = s.failed.take() {
                    s.stopped = true;
                    self.shared.changed.notify_all();
                    return Err(e);
                }
                s = self
                    .shared
                    .changed
                    .wait(s)
                    .unwrap_or_else(|e| e.into_inner());
            };
            s.next_read += 1;
            let done = std::mem::replace(&mut self.current, buf);
            if done.capacity() > 0 {
                s.free.push(done);
            }
            self.shared.changed.notify_all();
            drop(s);
            self.pos = 0;
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for RangedReader<'_> {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.stopped = true;
        s.ready.clear();
        self.shared.changed.notify_all();
    }
}
