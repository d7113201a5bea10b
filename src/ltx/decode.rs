//! LTX decoder.

use std::io::{self, Read};

use super::crc64::Crc64;
use super::page::{decode_block, decode_frame, FrameChecks, PageError};
use super::{
    lock_pgno, put_uvarint_at, Header, CHECKSUM_FLAG, HEADER_FLAG_NO_CHECKSUM, HEADER_SIZE,
    PAGE_FLAG_SIZE, PAGE_HEADER_SIZE, TRAILER_SIZE,
};
use crate::error::{Error, Result};

/// Reads one LTX file page by page and verifies it.
///
/// Call [`Decoder::next_page`] until it returns `None`, then [`Decoder::finish`], which reads
/// the page index and trailer and verifies the file checksum. A file is only known to be
/// intact once `finish` succeeds.
pub struct Decoder<R: Read> {
    r: R,
    header: Header,
    /// The running file checksum.
    hash: Crc64,
    offset: u64,
    last_pgno: u32,
    lock_pgno: u32,
    /// The page index these pages call for, as a running CRC of its bytes and its length,
    /// so the index read at the end is checked without keeping an entry per page.
    want_index: Crc64,
    want_index_len: u64,
    pages: u64,
    end_of_pages: bool,
    scratch: Vec<u8>,
}

impl<R: Read> std::fmt::Debug for Decoder<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("header", &self.header)
            .field("offset", &self.offset)
            .finish()
    }
}

/// Maps a read error: a short read is corruption (a truncated file), anything else is I/O.
fn read_err(offset: u64, what: &str, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        Error::corrupt(
            offset,
            format!("file is truncated: unexpected end while reading {what}"),
        )
    } else {
        Error::io(format!("read ltx {what} at offset {offset}"), e)
    }
}

/// Counts bytes read through it.
struct Counting<'a, R: Read> {
    r: &'a mut R,
    n: u64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

impl<R: Read> Decoder<R> {
    /// Reads and validates the header.
    pub fn new(mut r: R) -> Result<Self> {
        let mut b = [0u8; HEADER_SIZE];
        r.read_exact(&mut b).map_err(|e| read_err(0, "header", e))?;
        let header = Header::from_bytes(&b)?;
        let mut hash = Crc64::new();
        hash.update(&b);
        Ok(Decoder {
            r,
            lock_pgno: lock_pgno(header.page_size),
            header,
            hash,
            offset: HEADER_SIZE as u64,
            last_pgno: 0,
            want_index: Crc64::new(),
            want_index_len: 0,
            pages: 0,
            end_of_pages: false,
            scratch: Vec::new(),
        })
    }

    /// The file's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Reads the next page into `buf` (which must be `page_size` long) and returns its page
    /// number, or `None` after the last page.
    pub fn next_page(&mut self, buf: &mut [u8]) -> Result<Option<u32>> {
        if self.end_of_pages {
            return Ok(None);
        }
        if buf.len() != self.header.page_size as usize {
            return Err(Error::Invalid(format!(
                "ltx decoder: buffer of {} bytes for page size {}",
                buf.len(),
                self.header.page_size
            )));
        }
        let start = self.offset;
        let mut ph = [0u8; PAGE_HEADER_SIZE];
        self.r
            .read_exact(&mut ph)
            .map_err(|e| read_err(start, "page header", e))?;
        self.offset += PAGE_HEADER_SIZE as u64;
        let pgno = u32::from_be_bytes([ph[0], ph[1], ph[2], ph[3]]);
        let flags = u16::from_be_bytes([ph[4], ph[5]]);
        self.hash.update(&ph);
        if pgno == 0 {
            if flags != 0 {
                return Err(Error::corrupt(
                    start,
                    format!("end-of-pages marker with flags {flags:#06x}"),
                ));
            }
            self.end_of_pages = true;
            return Ok(None);
        }
        if flags & !PAGE_FLAG_SIZE != 0 {
            return Err(Error::corrupt(
                start,
                format!("page {pgno} has unknown flags {flags:#06x}"),
            ));
        }
        if pgno > self.header.commit {
            return Err(Error::corrupt(
                start,
                format!("page {pgno} is past the commit size {}", self.header.commit),
            ));
        }
        if pgno <= self.last_pgno {
            return Err(Error::corrupt(
                start,
                format!("page {pgno} out of order after page {}", self.last_pgno),
            ));
        }
        if pgno == self.lock_pgno {
            return Err(Error::corrupt(
                start,
                format!("page {pgno} is the lock page"),
            ));
        }
        let mut counting = Counting {
            r: &mut self.r,
            n: 0,
        };
        let res = if flags & PAGE_FLAG_SIZE != 0 {
            decode_block(&mut counting, buf, &mut self.scratch)
        } else {
            // The file checksum, verified by `finish` before anyone may trust a page,
            // covers every decoded page: the frame's own xxHash adds nothing but time.
            decode_frame(&mut counting, buf, &mut self.scratch, FrameChecks::Skip)
        };
        let consumed = counting.n;
        match res {
            Ok(_) => {}
            Err(PageError::Io(e)) => {
                return Err(read_err(self.offset + consumed, &format!("page {pgno}"), e))
            }
            Err(PageError::Bad(m)) => {
                return Err(Error::corrupt(start, format!("page {pgno}: {m}")))
            }
        }
        if flags & PAGE_FLAG_SIZE != 0 {
            let mut size = [0u8; 4];
            size.copy_from_slice(&(self.scratch.len() as u32).to_be_bytes());
            self.hash.update(&size);
        }
        self.hash.update(buf);
        self.offset += consumed;
        let size = (self.offset - start) as u32;
        let mut entry = [0u8; 30];
        let mut n = put_uvarint_at(&mut entry, 0, pgno as u64);
        n = put_uvarint_at(&mut entry, n, start);
        n = put_uvarint_at(&mut entry, n, size as u64);
        self.want_index.update(&entry[..n]);
        self.want_index_len += n as u64;
        self.pages += 1;
        self.last_pgno = pgno;
        Ok(Some(pgno))
    }

    /// Skips any remaining pages, reads the page index and trailer and verifies the file
    /// checksum and that the index lists exactly the pages read. Returns the file checksum.
    /// Memory stays constant whatever the file's size: the index streams through.
    pub fn finish(mut self) -> Result<u64> {
        let mut buf = vec![0u8; self.header.page_size as usize];
        while self.next_page(&mut buf)?.is_some() {}
        let start = self.offset;
        // The index holds at most 3 varints (<= 10 bytes each) per page, a terminator and
        // its size; anything longer is not an LTX file.
        let limit = self.pages * 30 + 1 + 8 + TRAILER_SIZE as u64;
        let mut hash = std::mem::replace(&mut self.hash, Crc64::new());
        let mut area = Crc64::new();
        // The last 24 bytes (index size, post-apply and file checksums) trail behind:
        // everything before them is the index area.
        const TAIL: usize = 8 + TRAILER_SIZE;
        let mut pending: Vec<u8> = Vec::with_capacity((64 << 10) + TAIL);
        let mut chunk = vec![0u8; 64 << 10];
        let mut total = 0u64;
        loop {
            let n = match self.r.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(start + total, "page index", e)),
            };
            total += n as u64;
            if total > limit {
                return Err(Error::corrupt(start, "trailing data after the page index"));
            }
            pending.extend_from_slice(&chunk[..n]);
            if pending.len() > TAIL {
                let done = pending.len() - TAIL;
                hash.update(&pending[..done]);
                area.update(&pending[..done]);
                pending.drain(..done);
            }
        }
        if total < 1 + TAIL as u64 {
            return Err(Error::corrupt(
                start,
                "file is truncated: unexpected end while reading page index and trailer",
            ));
        }
        let area_len = total - TAIL as u64;
        let tail = pending.as_slice();
        hash.update(&tail[..TAIL - 8]);
        let computed = CHECKSUM_FLAG | hash.finish();
        let be = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
        let stored = be(&tail[16..24]);
        if stored != computed {
            return Err(Error::ChecksumMismatch {
                file: String::new(),
                stored,
                computed,
            });
        }
        let post_apply = be(&tail[8..16]);
        if self.header.flags & HEADER_FLAG_NO_CHECKSUM != 0 {
            if post_apply != 0 {
                return Err(Error::corrupt(
                    start + area_len + 8,
                    "invalid trailer: post-apply checksum not allowed",
                ));
            }
        } else if post_apply & CHECKSUM_FLAG == 0 {
            return Err(Error::corrupt(
                start + area_len + 8,
                "invalid trailer: post-apply checksum missing its flag bit",
            ));
        }
        let index_size = be(&tail[..8]);
        if index_size != area_len {
            return Err(Error::corrupt(
                start + area_len,
                format!("index size {index_size} does not match the {area_len} bytes present"),
            ));
        }
        // The index these pages call for, then its terminator (a zero varint).
        self.want_index.update(&[0]);
        if area_len != self.want_index_len + 1 || area.finish() != self.want_index.finish() {
            return Err(Error::corrupt(
                start,
                format!(
                    "page index ({area_len} bytes) does not list the {} pages of the file at their offsets and sizes",
                    self.pages
                ),
            ));
        }
        Ok(stored)
    }
}
