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
    /// Offset of the run being filled, and its bytes.
    off: u64,
    data: Vec<u8>,
    /// Bytes of `data` placed so far (a slot may follow them).
    placed: usize,
    tx: Option<SyncSender<(u64, Vec<u8>)>>,
    back: Receiver<Vec<u8>>,
    worker: Option<ScopedJoinHandle<'s, Result<()>>>,
}

impl<'s> PageWriter<'s> {
    /// Starts the writing thread for `out` in `scope`.
    pub(super) fn start<'env>(scope: &'s Scope<'s, 'env>, out: &'s File, path: &'s Path) -> Self {
        let (tx, rx) = sync_channel::<(u64, Vec<u8>)>(QUEUE);
        let (back_tx, back) = sync_channel::<Vec<u8>>(QUEUE + 2);
        let worker = scope.spawn(move || -> Result<()> {
            for (off, mut data) in rx {
                out.write_all_at(&data, off)
                    .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
                // The disk works while we decode on, so the final fsync has little left.
                crate::sys::start_writeback(out, off, off + data.len() as u64);
                data.clear();
                let _ = back_tx.try_send(data);
            }
            Ok(())
        });
        PageWriter {
            off: 0,
            data: Vec::with_capacity(RUN),
            placed: 0,
            tx: Some(tx),
            back,
            worker: Some(worker),
        }
    }

    /// Room for the next page, of `page_size` bytes, at the end of the current run.
    pub(super) fn slot(&mut self, page_size: usize) -> &mut [u8] {
        self.data.resize(self.placed + page_size, 0);
        &mut self.data[self.placed..]
    }

    /// The page decoded into the slot belongs at `off`: it extends the run, or the run is
    /// handed over and the page starts the next one.
    pub(super) fn place(&mut self, off: u64) -> Result<()> {
        let size = self.data.len() - self.placed;
        if self.placed > 0 && (off != self.off + self.placed as u64 || self.placed >= RUN) {
            let mut next = self.fresh();
            next.extend_from_slice(&self.data[self.placed..]);
            self.data.truncate(self.placed);
            let full = std::mem::replace(&mut self.data, next);
            self.send(self.off, full)?;
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
        self.data.truncate(self.placed);
        if self.placed > 0 {
            let next = self.fresh();
            let full = std::mem::replace(&mut self.data, next);
            self.send(self.off, full)?;
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
        self.back
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(RUN))
    }

    fn send(&mut self, off: u64, data: Vec<u8>) -> Result<()> {
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send((off, data)).is_ok());
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
