//! What a plan costs (open, a rebuild, time travel): the whole replica in one recursive
//! listing ([`ReplicaClient::all_ltx_files`](crate::client::ReplicaClient::all_ltx_files))
//! where the backend has one, else one listing per level; then each planned file's header
//! and page index in as few reads as possible — a small file whole, a large one by its
//! head (with the first pages, cached) and a tail sized from the header to hold the index.

use std::sync::atomic::Ordering;

use super::ReplicaReader;
use crate::client::FileInfo;
use crate::error::{Error, Result};
use crate::ltx::{self, Header, IndexEntry, HEADER_SIZE, INDEX_TAIL_SIZE};

/// Files up to this size are fetched whole when first seen (one request), their pages
/// going straight into the cache.
const SMALL_FILE: u64 = 64 * 1024;

/// Bytes of a large file's tail that hold its page index (and the index size and trailer
/// after it), from its header: as many entries as it can have pages — at most `commit`,
/// and no more than frames fit in the file — each of the largest varints its page
/// numbers, offsets and frame sizes can take. A guess that falls short costs one more
/// read, never a wrong answer.
fn tail_for(h: &Header, size: u64) -> u64 {
    let varint = |x: u64| u64::from((64 - x.leading_zeros()).max(1).div_ceil(7));
    let max_frame = u64::from(h.page_size) * 2 + 1024;
    // A page of zeros still costs its page header and LZ4's framing and matches.
    let min_frame = ltx::PAGE_HEADER_SIZE as u64 + 16 + u64::from(h.page_size) / 255;
    let entries = u64::from(h.commit).min(size / min_frame.max(1));
    let entry = varint(u64::from(h.commit)) + varint(size) + varint(max_frame);
    (entries * entry + 1 + INDEX_TAIL_SIZE as u64).clamp(4096, size)
}

impl ReplicaReader {
    /// Every LTX file of every level. With `accurate_timestamps` each file's time is its
    /// header timestamp (what `restore -timestamp` plans with), as
    /// [`ReplicaClient::ltx_files`](crate::client::ReplicaClient::ltx_files) gives it.
    pub(super) fn list_replica(&self, accurate_timestamps: bool) -> Result<Vec<FileInfo>> {
        crate::client::list_all(&*self.client, accurate_timestamps, &|| {
            self.counters.lists.fetch_add(1, Ordering::Relaxed);
        })
    }

    /// One file's header and page index (and, for a small file, its pages into the cache).
    pub(super) fn load(&self, info: &FileInfo) -> Result<(u32, Header, Vec<IndexEntry>)> {
        let name = format!("level {} {}", info.level, info.name());
        let inner = || -> Result<_> {
            // A small file whole; a large one's head: the header and the first pages.
            let (head, whole) = if info.size == 0 || info.size <= SMALL_FILE {
                (self.get(info, 0, None)?, true)
            } else {
                let want = self.opts.read_ahead.max(HEADER_SIZE as u64);
                (self.get(info, 0, Some(want.min(info.size)))?, false)
            };
            let mut hb = [0u8; HEADER_SIZE];
            let hs = head.get(..HEADER_SIZE).ok_or_else(|| {
                Error::corrupt(0, format!("file is truncated: {} bytes", head.len()))
            })?;
            hb.copy_from_slice(hs);
            let h = Header::from_bytes(&hb)?;
            let (tail, tail_at, size) = if whole {
                (head.clone(), 0, head.len() as u64)
            } else {
                let n = tail_for(&h, info.size);
                let tail = self.get(info, info.size - n, Some(n))?;
                (tail, info.size - n, info.size)
            };
            let n = ltx::index_area_size(&tail, size)?;
            let start = size - INDEX_TAIL_SIZE as u64 - n;
            let area = if start >= tail_at {
                tail[(start - tail_at) as usize..tail.len() - INDEX_TAIL_SIZE].to_vec()
            } else {
                self.get(info, start, Some(n))?
            };
            let idx = ltx::parse_page_index(&area, start, &h)?;
            let pages_end = start - ltx::PAGE_HEADER_SIZE as u64;
            let id = self.file_id(info, pages_end);
            // The pages fetched with the header (or the whole file): the first frames.
            if let Some(d) = &self.disk {
                d.put_meta(info, pages_end, &h, &idx);
                if head.len() > HEADER_SIZE {
                    d.put_pages(info, 0, &head);
                }
            }
            self.cache_frames(id, &h, &idx, |e| {
                head.get(e.offset as usize..(e.offset + e.size as u64) as usize)
            });
            if !whole {
                // A scan from the start continues the head: it reads ahead.
                self.note_read(id, head.len() as u64);
            }
            Ok((id, h, idx))
        };
        inner().map_err(|e| e.in_file(&name))
    }
}
