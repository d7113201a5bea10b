//! Random access to an LTX file: its page index (where each page's frame is) read from the
//! file's tail without reading the pages, and one page frame decoded on its own. Used by
//! readers that fetch byte ranges (the VFS); every input is untrusted (fuzzed).

use std::io::{self, Read};

use super::page::{decode_block, decode_frame, FrameChecks, PageError};
use super::{
    lock_pgno, read_uvarint, Header, HEADER_SIZE, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE, TRAILER_SIZE,
};
use crate::error::{Error, Result};

/// The bytes at the end of every LTX file after the page index: the index size (u64) and
/// the trailer.
pub const INDEX_TAIL_SIZE: usize = 8 + TRAILER_SIZE;

/// Where one page's frame (its 6-byte page header and payload) lies in an LTX file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Page number.
    pub pgno: u32,
    /// Byte offset of the page header in the file.
    pub offset: u64,
    /// Bytes of the page header and payload.
    pub size: u32,
}

/// The size of the index area (entries and terminator) named by the last
/// [`INDEX_TAIL_SIZE`] bytes of a file of `file_size` bytes; checked to fit in the file.
pub fn index_area_size(tail: &[u8], file_size: u64) -> Result<u64> {
    if tail.len() < INDEX_TAIL_SIZE {
        return Err(Error::corrupt(
            file_size.saturating_sub(tail.len() as u64),
            format!(
                "file is truncated: {} bytes of tail, want {INDEX_TAIL_SIZE}",
                tail.len()
            ),
        ));
    }
    let t = &tail[tail.len() - INDEX_TAIL_SIZE..];
    let mut b = [0u8; 8];
    b.copy_from_slice(&t[..8]);
    let n = u64::from_be_bytes(b);
    let room = file_size.saturating_sub((HEADER_SIZE + PAGE_HEADER_SIZE + INDEX_TAIL_SIZE) as u64);
    if n == 0 || n > room {
        return Err(Error::corrupt(
            file_size.saturating_sub(INDEX_TAIL_SIZE as u64),
            format!("page index size {n} does not fit in a file of {file_size} bytes"),
        ));
    }
    Ok(n)
}

/// Parses the index area of a file (`area` = exactly the bytes [`index_area_size`] named,
/// starting at file offset `start`) for a file with header `h`. Entries come back in page
/// order; each is checked to lie between the header and the end-of-pages marker, in
/// order, without overlap, and to name a page the header allows.
pub fn parse_page_index(area: &[u8], start: u64, h: &Header) -> Result<Vec<IndexEntry>> {
    let lock = lock_pgno(h.page_size);
    let pages_end = start
        .checked_sub(PAGE_HEADER_SIZE as u64)
        .ok_or_else(|| Error::corrupt(start, "page index starts inside the header"))?;
    // A frame holds at most the page, its LZ4 overhead and frame headers.
    let max_size = h.page_size as u64 * 2 + 1024;
    let mut out = Vec::new();
    let mut pos = 0usize;
    let next = |pos: &mut usize| -> Result<u64> {
        let (v, used) = read_uvarint(&area[*pos..])
            .ok_or_else(|| Error::corrupt(start + *pos as u64, "invalid varint in page index"))?;
        *pos += used;
        Ok(v)
    };
    let mut last_pgno = 0u64;
    let mut last_end = HEADER_SIZE as u64;
    loop {
        let at = start + pos as u64;
        let pgno = next(&mut pos)?;
        if pgno == 0 {
            break;
        }
        let (offset, size) = (next(&mut pos)?, next(&mut pos)?);
        let bad = |m: String| Err(Error::corrupt(at, format!("page index entry: {m}")));
        if pgno <= last_pgno || pgno > h.commit as u64 || pgno == lock as u64 {
            return bad(format!(
                "page {pgno} after page {last_pgno} (commit {}, lock page {lock})",
                h.commit
            ));
        }
        if offset < last_end
            || size <= PAGE_HEADER_SIZE as u64
            || size > max_size
            || offset.checked_add(size).is_none_or(|end| end > pages_end)
        {
            return bad(format!(
                "page {pgno} at offset {offset} size {size} is outside the page area \
                 [{last_end}, {pages_end})"
            ));
        }
        out.push(IndexEntry {
            pgno: pgno as u32,
            offset,
            size: size as u32,
        });
        last_pgno = pgno;
        last_end = offset + size;
    }
    if pos != area.len() {
        return Err(Error::corrupt(
            start + pos as u64,
            "page index has bytes after its terminator",
        ));
    }
    Ok(out)
}

/// Decodes one page frame (page header + payload, exactly as an [`IndexEntry`] names it)
/// into `buf` (`page_size` bytes); returns its page number. `scratch` is reused between
/// calls.
pub fn decode_page_frame(frame: &[u8], buf: &mut [u8], scratch: &mut Vec<u8>) -> Result<u32> {
    let mut r = io::Cursor::new(frame);
    let (pgno, consumed) = read_page_frame(&mut r, buf, scratch)?;
    if consumed != frame.len() as u64 {
        return Err(Error::corrupt(
            0,
            format!(
                "page {pgno}: frame of {} bytes holds {consumed} bytes of page",
                frame.len()
            ),
        ));
    }
    Ok(pgno)
}

/// Reads the next page frame from `r` into `buf`: its page number and the bytes consumed.
/// A page number of 0 is the end-of-pages marker (`buf` untouched).
pub fn read_page_frame(
    r: &mut impl Read,
    buf: &mut [u8],
    scratch: &mut Vec<u8>,
) -> Result<(u32, u64)> {
    let mut ph = [0u8; PAGE_HEADER_SIZE];
    r.read_exact(&mut ph)
        .map_err(|e| Error::corrupt(0, format!("page header: {e}")))?;
    let pgno = u32::from_be_bytes([ph[0], ph[1], ph[2], ph[3]]);
    let flags = u16::from_be_bytes([ph[4], ph[5]]);
    if pgno == 0 {
        return Ok((0, PAGE_HEADER_SIZE as u64));
    }
    if flags & !PAGE_FLAG_SIZE != 0 {
        return Err(Error::corrupt(
            0,
            format!("page {pgno} has unknown flags {flags:#06x}"),
        ));
    }
    let res = if flags & PAGE_FLAG_SIZE != 0 {
        decode_block(r, buf, scratch)
    } else {
        decode_frame(r, buf, scratch, FrameChecks::Verify)
    };
    match res {
        Ok(n) => Ok((pgno, PAGE_HEADER_SIZE as u64 + n as u64)),
        Err(PageError::Io(e)) => Err(Error::corrupt(0, format!("page {pgno}: {e}"))),
        Err(PageError::Bad(m)) => Err(Error::corrupt(0, format!("page {pgno}: {m}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ltx::{Encoder, PageEncoding, Txid, HEADER_FLAG_NO_CHECKSUM};

    fn file(enc: PageEncoding) -> (Header, Vec<u8>) {
        let h = Header {
            flags: HEADER_FLAG_NO_CHECKSUM,
            page_size: 1024,
            commit: 5,
            min_txid: Txid(1),
            max_txid: Txid(1),
            timestamp: 1,
            ..Header::default()
        };
        let mut e = Encoder::new(Vec::new(), &h, enc).unwrap();
        for p in 1..=5u32 {
            e.write_page(p, &vec![p as u8; 1024]).unwrap();
        }
        (h, e.finish().unwrap().0)
    }

    #[test]
    fn index_from_the_tail_finds_every_page() {
        for enc in [PageEncoding::Frame, PageEncoding::Block] {
            let (h, data) = file(enc);
            let size = data.len() as u64;
            let n = index_area_size(&data[data.len() - INDEX_TAIL_SIZE..], size).unwrap();
            let start = size - INDEX_TAIL_SIZE as u64 - n;
            let idx = parse_page_index(
                &data[start as usize..data.len() - INDEX_TAIL_SIZE],
                start,
                &h,
            )
            .unwrap();
            assert_eq!(idx.len(), 5);
            let mut buf = vec![0u8; 1024];
            let mut scratch = Vec::new();
            for (i, e) in idx.iter().enumerate() {
                let frame = &data[e.offset as usize..(e.offset + e.size as u64) as usize];
                assert_eq!(
                    decode_page_frame(frame, &mut buf, &mut scratch).unwrap(),
                    i as u32 + 1
                );
                assert_eq!(buf, vec![i as u8 + 1; 1024]);
            }
            // Every flipped byte of the index area is an error or still a valid index.
            for i in start as usize..data.len() - INDEX_TAIL_SIZE {
                let mut bad = data.clone();
                bad[i] ^= 0x41;
                let r = parse_page_index(
                    &bad[start as usize..data.len() - INDEX_TAIL_SIZE],
                    start,
                    &h,
                );
                if let Ok(got) = r {
                    assert!(got.iter().all(|e| e.offset + e.size as u64 <= start));
                }
            }
        }
    }

    /// An entry whose offset plus size passes 2^64 is corrupt, not a panic (debug) or an
    /// entry wrapped into the page area (release).
    #[test]
    fn an_entry_past_the_end_of_the_offsets_is_corrupt() {
        let (h, _) = file(PageEncoding::Frame);
        let mut area = Vec::new();
        for v in [1u64, u64::MAX - 6, 7, 0] {
            let mut v = v;
            while v >= 0x80 {
                area.push(v as u8 | 0x80);
                v >>= 7;
            }
            area.push(v as u8);
        }
        assert!(parse_page_index(&area, 4096, &h).is_err());
    }

    #[test]
    fn bad_tails_are_errors() {
        assert!(index_area_size(&[0u8; 10], 200).is_err());
        let mut t = [0u8; INDEX_TAIL_SIZE];
        t[..8].copy_from_slice(&1_000_000u64.to_be_bytes());
        assert!(index_area_size(&t, 5000).is_err());
        let mut buf = vec![0u8; 1024];
        assert!(decode_page_frame(&[0, 0, 0, 1, 0, 1, 0], &mut buf, &mut Vec::new()).is_err());
    }
}
