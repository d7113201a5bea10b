//! Applying a plan: streaming each LTX file's pages into the output file in order,
//! verifying checksums, contiguity and that every page ends up present.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use std::io::Read;

use super::fetch::{self, RangedReader, RangedState};
use super::write::PageWriter;
use super::{ProgressFn, RestoreProgress, RestoreReport};
use crate::client::{FileInfo, ReplicaClient, ResumableReader};
use crate::error::{Error, Result};
use crate::ltx::{self, Decoder, Txid};

/// Applies `files` in order to `out` (an empty file): each file's pages overwrite earlier
/// copies; the result is truncated to the last file's commit size and must hold every page.
pub(super) fn apply(
    client: &dyn ReplicaClient,
    files: &[FileInfo],
    out: &File,
    out_path: &Path,
    progress: Option<&ProgressFn>,
    workers: usize,
) -> Result<RestoreReport> {
    let bytes_total: u64 = files.iter().map(|f| f.size).sum();
    let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let report = |files_done: usize| {
        if let Some(p) = progress {
            p(&RestoreProgress {
                files_done,
                files_total: files.len(),
                bytes_done: read.load(std::sync::atomic::Ordering::Relaxed),
                bytes_total,
            });
        }
    };
    let mut page_size = 0u32;
    let mut commit = 0u32;
    let mut have = PageBits::default(); // the pages written
    let mut prev_max = Txid::ZERO;
    let mut bytes_read = 0u64;
    // Pages are written by a second thread of this scope while the next ones decode.
    std::thread::scope(|outer| -> Result<()> {
        let mut writer = PageWriter::start(outer, out, out_path);
        for (i, info) in files.iter().enumerate() {
            let state = RangedState::new();
            // Ranges are fetched by threads of this scope, which ends when the file is read.
            std::thread::scope(|scope| -> Result<()> {
                let src: Box<dyn Read + Send + '_> = if fetch::ranged(client, info, workers) {
                    Box::new(RangedReader::start(scope, &state, client, info, workers))
                } else {
                    Box::new(ResumableReader::new(client, info.clone()))
                };
                let name = info.to_string();
                // Page headers and LZ4 frames make many small reads: buffer them.
                let reader = std::io::BufReader::with_capacity(
                    256 << 10,
                    Counted {
                        inner: src,
                        n: read.clone(),
                    },
                );
                let mut dec = Decoder::new(reader).map_err(|e| e.in_file(&name))?;
                let h = dec.header().clone();
                header_matches_name(&h, info)?;
                if i == 0 {
                    if !h.is_snapshot() {
                        return Err(Error::NoSnapshots);
                    }
                    page_size = h.page_size;
                } else {
                    if h.page_size != page_size {
                        return Err(Error::Invalid(format!(
                    "input files have mismatched page sizes: {name} has {}, earlier files {page_size}",
                    h.page_size
                )));
                    }
                    if !(h.min_txid.0 <= prev_max.0 + 1 && h.max_txid > prev_max) {
                        return Err(Error::NonContiguous {
                            have: prev_max,
                            next: h.min_txid,
                            file: name,
                        });
                    }
                }
                prev_max = h.max_txid;
                if h.commit < commit {
                    // The database shrank: pages past its new end are gone, and a file
                    // that grows it again must bring them (else the replica is damaged,
                    // and the check below says so instead of keeping the old bytes).
                    have.forget_above(h.commit);
                }
                commit = h.commit;
                let mut pages = 0u64;
                while let Some(pgno) = dec
                    .next_page(writer.slot(page_size as usize))
                    .map_err(|e| e.in_file(&name))?
                {
                    pages += 1;
                    if pages % 4096 == 0 {
                        report(i);
                    }
                    writer.place((pgno as u64 - 1) * page_size as u64)?;
                    have.insert(pgno);
                }
                writer.flush()?;
                dec.finish().map_err(|e| e.in_file(&name))?;
                bytes_read += info.size;
                report(i + 1);
                Ok(())
            })?;
        }
        writer.finish()
    })?;
    let lock = ltx::lock_pgno(page_size);
    for pgno in 1..=commit {
        if pgno == lock {
            continue;
        }
        if !have.contains(pgno) {
            return Err(Error::State(format!(
                "restore is incomplete: page {pgno} of {commit} is in none of the files up to {prev_max}; the replica is damaged"
            )));
        }
    }
    out.set_len(commit as u64 * page_size as u64)
        .map_err(|e| Error::io(format!("truncate {}", out_path.display()), e))?;
    if lock <= commit {
        out.write_all_at(
            &vec![0u8; page_size as usize],
            (lock as u64 - 1) * page_size as u64,
        )
        .map_err(|e| Error::io(format!("write {}", out_path.display()), e))?;
    }
    Ok(RestoreReport {
        txid: prev_max,
        files: files.to_vec(),
        bytes_read,
        page_size,
        page_count: commit,
        v3: None,
    })
}

/// Counts the bytes read through it into a shared counter.
struct Counted<R> {
    inner: R,
    n: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// Pages per chunk of a [`PageBits`] (4 KiB of bits).
const CHUNK_PAGES: usize = 1 << 15;

/// A set of page numbers: a bitmap made in chunks as pages arrive, so that a file whose
/// header claims billions of pages and holds one near the end costs one chunk, not a
/// bitmap of every page before it (512 MiB for 2^32 pages).
#[derive(Default)]
struct PageBits {
    chunks: Vec<Option<Box<[u64]>>>,
}

impl PageBits {
    /// Adds page `pgno` (1-based).
    fn insert(&mut self, pgno: u32) {
        let idx = (pgno - 1) as usize;
        let c = idx / CHUNK_PAGES;
        if self.chunks.len() <= c {
            self.chunks.resize_with(c + 1, || None);
        }
        let chunk = self.chunks[c].get_or_insert_with(|| vec![0u64; CHUNK_PAGES / 64].into());
        let bit = idx % CHUNK_PAGES;
        chunk[bit / 64] |= 1 << (bit % 64);
    }

    /// Whether page `pgno` was added.
    fn contains(&self, pgno: u32) -> bool {
        let idx = (pgno - 1) as usize;
        let bit = idx % CHUNK_PAGES;
        self.chunks
            .get(idx / CHUNK_PAGES)
            .and_then(|c| c.as_ref())
            .is_some_and(|c| c[bit / 64] & (1 << (bit % 64)) != 0)
    }

    /// Forgets the pages after `commit`.
    fn forget_above(&mut self, commit: u32) {
        let keep = commit as usize;
        self.chunks.truncate(keep.div_ceil(CHUNK_PAGES));
        let in_last = keep % CHUNK_PAGES;
        // Only the chunk that holds page `commit` has bits to clear, if it was made.
        if in_last == 0 || self.chunks.len() < keep.div_ceil(CHUNK_PAGES) {
            return;
        }
        if let Some(Some(c)) = self.chunks.last_mut() {
            c[in_last.div_ceil(64)..].fill(0);
            if in_last % 64 != 0 {
                c[in_last / 64] &= (1u64 << (in_last % 64)) - 1;
            }
        }
    }
}

/// Refuses a file whose header covers other TXIDs than its name says (a damaged or
/// misnamed file): applied, it would record a TXID the database does not hold.
pub(crate) fn header_matches_name(h: &crate::ltx::Header, info: &FileInfo) -> Result<()> {
    if (h.min_txid, h.max_txid) == (info.min_txid, info.max_txid) {
        return Ok(());
    }
    Err(Error::corrupt(
        16,
        format!(
            "header covers {}-{} but the file is named {}",
            h.min_txid,
            h.max_txid,
            info.name()
        ),
    )
    .in_file(&info.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_bits_hold_what_was_inserted_and_forget_above() {
        let mut b = PageBits::default();
        let pages = [1u32, 2, 63, 64, 65, 32_768, 32_769, 100_000, u32::MAX - 1];
        for &p in &pages {
            b.insert(p);
        }
        for &p in &pages {
            assert!(b.contains(p), "{p}");
        }
        assert!(!b.contains(3) && !b.contains(32_770) && !b.contains(u32::MAX));
        // One page near 2^32 costs one chunk.
        assert_eq!(b.chunks.iter().flatten().count(), 4);
        b.forget_above(64);
        assert!(b.contains(1) && b.contains(63) && b.contains(64));
        assert!(!b.contains(65) && !b.contains(32_768) && !b.contains(u32::MAX - 1));
        b.insert(65);
        assert!(b.contains(65));
        b.forget_above(32_768);
        assert!(b.contains(65));
        b.forget_above(63);
        assert!(b.contains(63) && !b.contains(64) && !b.contains(65));
        // A cut inside a chunk never made leaves the chunks below it alone.
        let mut c = PageBits::default();
        c.insert(1);
        c.insert(10_000);
        c.forget_above(40_000);
        assert!(c.contains(1) && c.contains(10_000));
    }
}
