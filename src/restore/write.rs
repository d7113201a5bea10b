//! Writing a restore's output: decoded pages gathered into runs of consecutive pages,
//! written (and their writeback started) by a second thread while the next pages decode.
//!
//! A page is decoded straight into the run it extends ([`PageWriter::slot`], then
//! [`PageWriter::place`]), so a snapshot's pages are never copied on our side; full runs go
//! to the writing thread and their buffers come back to be filled again, so memory stays
//! at a few runs whatever the size.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

use crate::error::{Error, Result};

/// Bytes in one run (one `pwrite`): 1 MiB runs cost 2–3 MiB more RSS, no speed.
const RUN: usize = 256 << 10;
/// Runs handed over and not written yet.
const QUEUE: usize = 3;

/// Gathers pages into runs and hands full runs to its writing thread.
pub(super) struct PageWriter<'s> {
    /// Offset of the run being filled, and its buffer (longer than the run: buffers keep
    /// their length as they go round, so they are zeroed once, not for every page).
    off: u64,
    data: Vec<u8>,
    /// Bytes of `data` placed so far, and the size of the slot after them.
    placed: usize,
    slot: usize,
    tx: Option<SyncSender<(u64, Vec<u8>, usize)>>,
    back: Receiver<Vec<u8>>,
    worker: Option<ScopedJoinHandle<'s, Result<()>>>,
}

impl<'s> PageWriter<'s> {
    /// Starts the writing thread for `out` in `scope`.
    pub(super) fn start<'env>(scope: &'s Scope<'s, 'env>, out: &'s File, path: &'s Path) -> Self {
        let (tx, rx) = sync_channel::<(u64, Vec<u8>, usize)>(QUEUE);
        let (back_tx, back) = sync_channel::<Vec<u8>>(QUEUE + 2);
        let worker = scope.spawn(move || -> Result<()> {
            for (off, data, len) in rx {
                out.write_all_at(&data[..len], off)
                    .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
                // The disk works while we decode on, so the final fsync has little left.
                crate::sys::start_writeback(out, off, off + len as u64);
                let _ = back_tx.try_send(data);
            }
            Ok(())
        });
        PageWriter {
            off: 0,
            data: Vec::new(),
            placed: 0,
            slot: 0,
            tx: Some(tx),
            back,
            worker: Some(worker),
        }
    }

    /// Room for the next page, of `page_size` bytes, at the end of the current run.
    pub(super) fn slot(&mut self, page_size: usize) -> &mut [u8] {
        let end = self.placed + page_size;
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.slot = page_size;
        &mut self.data[self.placed..end]
    }

    /// The page decoded into the slot belongs at `off`: it extends the run, or the run is
    /// handed over and the page starts the next one.
    pub(super) fn place(&mut self, off: u64) -> Result<()> {
        let size = self.slot;
        if self.placed > 0 && (off != self.off + self.placed as u64 || self.placed >= RUN) {
            let mut next = self.fresh();
            if next.len() < size {
                next.resize(size, 0);
            }
            next[..size].copy_from_slice(&self.data[self.placed..self.placed + size]);
            let full = std::mem::replace(&mut self.data, next);
            self.send(self.off, full, self.placed)?;
            self.placed = 0;
        }
        if self.placed == 0 {
            self.off = off;
        }
        self.placed += size;
        Ok(())
    }

    /// Hands over the run being filled (the end of a file), without waiting for it.
    pub(super) fn flush(&mut self) -> Result<()> {
        if self.placed > 0 {
            let next = self.fresh();
            let full = std::mem::replace(&mut self.data, next);
            self.send(self.off, full, self.placed)?;
            self.placed = 0;
        }
        Ok(())
    }

    /// Writes what is left and waits until every run is written.
    pub(super) fn finish(mut self) -> Result<()> {
        self.flush()?;
        self.stop()
    }

    fn fresh(&self) -> Vec<u8> {
        self.back.try_recv().unwrap_or_default()
    }

    /// Hands `data[..len]`, to be written at `off`, to the thread.
    fn send(&mut self, off: u64, data: Vec<u8>, len: usize) -> Result<()> {
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send((off, data, len)).is_ok());
        if sent {
            Ok(())
        } else {
            // The thread stopped on an error: it is the one to report.
            self.stop().and(Err(Error::State(
                "restore: the writing thread stopped".into(),
            )))
        }
    }

    fn stop(&mut self) -> Result<()> {
        self.tx = None;
        match self.worker.take().map(|w| w.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(Error::State("restore: the writing thread panicked".into())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages in runs and out of order, across run boundaries, land where they belong.
    #[test]
    fn pages_land_at_their_offsets() {
        let ps = 4096usize;
        let path = std::env::temp_dir().join(format!("lsrs-write-{}", std::process::id()));
        let out = File::create(&path).unwrap();
        // A snapshot's run longer than one RUN, then pages of later files out of order.
        let mut order: Vec<u64> = (0..(2 * RUN / ps) as u64 + 3).collect();
        order.extend([7, 3, 4, 200, 1, 2]);
        std::thread::scope(|scope| {
            let mut w = PageWriter::start(scope, &out, &path);
            for (i, &pg) in order.iter().enumerate() {
                w.slot(ps).fill((pg as u8) ^ (i as u8));
                w.place(pg * ps as u64).unwrap();
                if i == 40 {
                    w.flush().unwrap();
                }
            }
            w.finish().unwrap();
        });
        let got = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let mut want = vec![0u8; got.len().max(201 * ps)];
        for (i, &pg) in order.iter().enumerate() {
            let at = pg as usize * ps;
            want[at..at + ps].fill((pg as u8) ^ (i as u8));
        }
        assert_eq!(got.len(), want.len());
        assert!(got == want, "a page was written at the wrong place");
    }
}
