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
    let mut have: Vec<u64> = Vec::new(); // bitmap of pages written
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
                    forget_above(&mut have, h.commit);
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
                    let idx = (pgno - 1) as usize;
                    if have.len() <= idx / 64 {
                        have.resize(idx / 64 + 1, 0);
                    }
                    have[idx / 64] |= 1 << (idx % 64);
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
        let idx = (pgno - 1) as usize;
        if have
            .get(idx / 64)
            .is_none_or(|w| w & (1 << (idx % 64)) == 0)
        {
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

/// Clears the bits of pages after `commit` in a page bitmap.
fn forget_above(have: &mut Vec<u64>, commit: u32) {
    let keep = commit as usize;
    have.truncate(keep.div_ceil(64));
    if keep % 64 != 0 {
        if let Some(w) = have.last_mut() {
            *w &= (1u64 << (keep % 64)) - 1;
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
