//! One state of a replica as the VFS serves it: a `Snapshot` (TXID, page size, size in
//! pages, time) and its `PageMap`, which says for each page the LTX file and byte range
//! of its newest copy — 16 bytes a page, in copy-on-write chunks so a new transaction
//! shares every chunk it does not touch with the state before it.

use std::sync::Arc;
use std::time::SystemTime;

use crate::ltx::{IndexEntry, Txid};

/// Entries per chunk (64 KiB of entries).
const CHUNK: usize = 4096;

/// Where one page's frame is: the file (an id in the reader's file table) and the range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    /// Byte offset of the frame in the file.
    pub offset: u64,
    /// The file's id; [`Slot::EMPTY`]'s is `u32::MAX`.
    pub file: u32,
    /// Bytes of the frame.
    pub size: u32,
}

impl Slot {
    /// No copy of this page (a page past a file's pages, or the lock page): reads as zeros.
    pub const EMPTY: Slot = Slot {
        offset: 0,
        file: u32::MAX,
        size: 0,
    };
}

/// Page number → [`Slot`] over `1..=len`. A chunk no file has written a page of is not
/// made (`None`: every slot empty), so a header claiming billions of pages costs only
/// the chunks its pages touch.
#[derive(Clone, Debug, Default)]
pub(crate) struct PageMap {
    chunks: Vec<Option<Arc<Vec<Slot>>>>,
    len: u32,
}

impl PageMap {
    /// The slot of `pgno` (1-based), or `None` past the end or for a page never stored.
    pub fn get(&self, pgno: u32) -> Option<Slot> {
        if pgno == 0 || pgno > self.len {
            return None;
        }
        let i = (pgno - 1) as usize;
        let s = self.chunks[i / CHUNK].as_ref()?[i % CHUNK];
        (s.file != u32::MAX).then_some(s)
    }

    /// Pages in the map.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Entries chunk `ci` holds when the map is `n` pages long.
    fn chunk_len(ci: usize, n: u32) -> usize {
        (n as usize).saturating_sub(ci * CHUNK).min(CHUNK)
    }

    /// Grows (with empty slots) or shrinks to `n` pages.
    pub fn resize(&mut self, n: u32) {
        let chunks = (n as usize).div_ceil(CHUNK);
        // Only the old last chunk and the new last chunk can be short of their length;
        // a chunk made holds exactly its entries.
        let old_last = (self.len as usize).div_ceil(CHUNK).checked_sub(1);
        self.chunks.truncate(chunks);
        self.chunks.resize(chunks, None);
        for ci in [old_last, chunks.checked_sub(1)].into_iter().flatten() {
            let want = Self::chunk_len(ci, n);
            if let Some(Some(c)) = self.chunks.get_mut(ci) {
                if c.len() > want {
                    let v = Arc::make_mut(c);
                    v.truncate(want);
                    v.shrink_to_fit();
                } else if c.len() < want {
                    let v = Arc::make_mut(c);
                    v.reserve_exact(want - v.len());
                    v.resize(want, Slot::EMPTY);
                }
            }
        }
        self.len = n;
    }

    /// Points every page of `index` (pages past the current size are ignored) at `file`.
    pub fn apply(&mut self, file: u32, index: &[IndexEntry]) {
        for e in index {
            if e.pgno == 0 || e.pgno > self.len {
                continue;
            }
            let i = (e.pgno - 1) as usize;
            let want = Self::chunk_len(i / CHUNK, self.len);
            let chunk =
                self.chunks[i / CHUNK].get_or_insert_with(|| Arc::new(vec![Slot::EMPTY; want]));
            Arc::make_mut(chunk)[i % CHUNK] = Slot {
                offset: e.offset,
                file,
                size: e.size,
            };
        }
    }

    /// Bytes of entries held (shared chunks counted once per map).
    pub fn bytes(&self) -> usize {
        self.chunks
            .iter()
            .flatten()
            .map(|c| c.capacity())
            .sum::<usize>()
            * std::mem::size_of::<Slot>()
    }
}

/// A replica's database as of one TXID.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    /// The last transaction applied.
    pub txid: Txid,
    /// Database page size.
    pub page_size: u32,
    /// When the newest file applied was written (its header timestamp).
    pub time: SystemTime,
    /// Where each page is.
    pub map: PageMap,
}

impl Snapshot {
    /// The database size in bytes.
    pub fn size(&self) -> u64 {
        self.map.len() as u64 * self.page_size as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(pgno: u32, offset: u64) -> IndexEntry {
        IndexEntry {
            pgno,
            offset,
            size: 10,
        }
    }

    #[test]
    fn sixteen_bytes_a_page_and_copy_on_write() {
        assert_eq!(std::mem::size_of::<Slot>(), 16);
        let mut a = PageMap::default();
        a.resize(10_000);
        a.apply(1, &(1..=10_000).map(|p| e(p, p as u64)).collect::<Vec<_>>());
        let mut b = a.clone();
        b.apply(2, &[e(5000, 1)]);
        assert_eq!(a.get(5000).unwrap().file, 1);
        assert_eq!(b.get(5000).unwrap().file, 2);
        let chunk = |m: &PageMap, i: usize| m.chunks[i].clone().unwrap();
        assert!(Arc::ptr_eq(&chunk(&a, 0), &chunk(&b, 0)));
        assert!(!Arc::ptr_eq(&chunk(&a, 1), &chunk(&b, 1)));
        b.resize(4097);
        assert_eq!(b.len(), 4097);
        assert!(b.get(4098).is_none());
        assert_eq!(b.get(4097).unwrap().offset, 4097);
        b.resize(9000);
        assert!(b.get(4098).is_none(), "grown pages are empty until applied");
        assert_eq!(
            a.get(9000).unwrap().offset,
            9000,
            "the older state is untouched"
        );
        // No spare slots, and the third chunk, never written, is not made.
        assert_eq!(b.bytes(), 2 * CHUNK * 16);
        b.resize(0);
        assert_eq!(b.len(), 0);
        assert!(b.get(1).is_none());
    }

    /// A header claiming 2^31 pages with one page near the end costs one chunk.
    #[test]
    fn a_huge_size_costs_only_the_chunks_written() {
        let mut m = PageMap::default();
        let far = (1u32 << 31) + 7;
        m.resize(far);
        m.apply(1, &[e(1, 100), e(far, 200)]);
        assert_eq!(m.get(far).unwrap().offset, 200);
        assert!(m.get(far - 1).is_none() && m.get(2).is_none());
        assert!(m.bytes() <= 2 * CHUNK * 16, "{} bytes", m.bytes());
        m.resize(5);
        assert_eq!(m.get(1).unwrap().offset, 100);
        assert_eq!(m.bytes(), 5 * 16);
    }
}
