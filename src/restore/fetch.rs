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
    let mut r = ResumableReader::range(client, info.clone(), offset, len);
    r.read_exact(&mut buf).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "{info}: bytes {offset}-{} of {}: {e}",
                offset + len,
                info.size
            ),
        )
    })?;
    // At its end: lets the connection go back to the pool for the next range.
    let _ = r.read(&mut []);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, Result};
    use crate::ltx::Txid;
    use std::fs::File;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::SystemTime;

    /// One file in memory whose readers count the streams read to their end (an HTTP
    /// body read to its end is what hands its connection back to the pool).
    #[derive(Debug)]
    struct Counting {
        bytes: Arc<Vec<u8>>,
        opened: AtomicUsize,
        ended: Arc<AtomicUsize>,
    }

    struct Stream {
        inner: io::Take<io::Cursor<Vec<u8>>>,
        ended: Arc<AtomicUsize>,
    }

    impl Read for Stream {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            if n == 0 {
                self.ended.fetch_add(1, Ordering::SeqCst);
            }
            Ok(n)
        }
    }

    impl ReplicaClient for Counting {
        fn kind(&self) -> &'static str {
            "counting"
        }
        fn ltx_files(&self, _: u8, _: Txid, _: bool) -> Result<Vec<FileInfo>> {
            Ok(Vec::new())
        }
        fn open_ltx_file(
            &self,
            _: u8,
            _: Txid,
            _: Txid,
            offset: u64,
            len: Option<u64>,
        ) -> Result<Box<dyn Read + Send>> {
            self.opened.fetch_add(1, Ordering::SeqCst);
            let len = len.unwrap_or(self.bytes.len() as u64 - offset);
            let mut c = io::Cursor::new(self.bytes.as_ref().clone());
            c.set_position(offset);
            Ok(Box::new(Stream {
                inner: c.take(len),
                ended: self.ended.clone(),
            }))
        }
        fn write_ltx_file(&self, _: u8, _: Txid, _: Txid, _: &File) -> Result<FileInfo> {
            Err(Error::Invalid("read-only".into()))
        }
        fn delete_ltx_files(&self, _: &[FileInfo]) -> Result<()> {
            Ok(())
        }
        fn delete_all(&self) -> Result<()> {
            Ok(())
        }
    }

    /// Every range is read in order, and each range's stream is read to its end, so an
    /// HTTP client can reuse its connection (a restore opened one per 4 MiB before).
    #[test]
    fn ranges_arrive_in_order_and_each_stream_is_finished() {
        let size = 3 * RANGE + 12345;
        let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let client = Counting {
            bytes: Arc::new(bytes.clone()),
            opened: AtomicUsize::new(0),
            ended: Arc::new(AtomicUsize::new(0)),
        };
        let info = FileInfo::new(0, Txid(1), Txid(1), size, SystemTime::UNIX_EPOCH);
        let state = RangedState::new();
        let mut got = Vec::new();
        std::thread::scope(|scope| {
            RangedReader::start(scope, &state, &client, &info, 3)
                .read_to_end(&mut got)
                .unwrap();
        });
        assert!(got == bytes, "the ranges came back out of order or short");
        assert_eq!(client.opened.load(Ordering::SeqCst), 4);
        assert_eq!(
            client.ended.load(Ordering::SeqCst),
            4,
            "a range's stream was dropped before its end"
        );
    }
}
