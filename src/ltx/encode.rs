//! LTX encoder.

use std::io::Write;

use super::crc64::Crc64;
use super::page::{encode_block, encode_frame};
use super::{
    lock_pgno, put_uvarint, Header, CHECKSUM_FLAG, HEADER_SIZE, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE,
};
use crate::error::{Error, Result};

/// How page payloads are compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PageEncoding {
    /// One LZ4 frame per page, page flags 0: readable by every Litestream v0.5.x (the default).
    #[default]
    Frame,
    /// LZ4 block with a size prefix, page flag `0x0001`: readable by Litestream >= v0.5.16 only.
    Block,
}

/// Writes one LTX file page by page.
///
/// Pages must come in ascending page-number order. A snapshot (`min_txid == 1`) must hold
/// every page from 1 to `commit` except SQLite's lock page.
pub struct Encoder<W: Write> {
    w: W,
    header: Header,
    encoding: PageEncoding,
    hash: Crc64,
    offset: u64,
    last_pgno: u32,
    lock_pgno: u32,
    index: Vec<u8>,
    buf: Vec<u8>,
    scratch: Vec<u8>,
}

impl<W: Write> std::fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("header", &self.header)
            .field("offset", &self.offset)
            .finish()
    }
}

impl<W: Write> Encoder<W> {
    /// Validates `header` and writes it.
    pub fn new(mut w: W, header: &Header, encoding: PageEncoding) -> Result<Self> {
        header.validate()?;
        if header.flags & super::HEADER_FLAG_NO_CHECKSUM == 0 {
            return Err(Error::Invalid(
                "ltx encoder: only no-checksum files (flags 0x2) are written".to_string(),
            ));
        }
        if header.commit == 0 {
            return Err(Error::Invalid(
                "ltx encoder: commit must not be 0".to_string(),
            ));
        }
        let bytes = header.to_bytes();
        w.write_all(&bytes)
            .map_err(|e| Error::io("write ltx header", e))?;
        let mut hash = Crc64::new();
        hash.update(&bytes);
        Ok(Encoder {
            w,
            header: header.clone(),
            encoding,
            hash,
            offset: HEADER_SIZE as u64,
            last_pgno: 0,
            lock_pgno: lock_pgno(header.page_size),
            index: Vec::new(),
            buf: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// The header being written.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.offset
    }

    /// Writes one page.
    pub fn write_page(&mut self, pgno: u32, data: &[u8]) -> Result<()> {
        let h = &self.header;
        if pgno == 0 {
            return Err(Error::Invalid("ltx encoder: page number 0".into()));
        }
        if pgno > h.commit {
            return Err(Error::Invalid(format!(
                "ltx encoder: page {pgno} is past the commit size {}",
                h.commit
            )));
        }
        if data.len() != h.page_size as usize {
            return Err(Error::Invalid(format!(
                "ltx encoder: page {pgno} has {} bytes, want {}",
                data.len(),
                h.page_size
            )));
        }
        if pgno == self.lock_pgno {
            return Err(Error::Invalid(format!(
                "ltx encoder: page {pgno} is the lock page and cannot be stored"
            )));
        }
        if h.is_snapshot() {
            let want = if self.last_pgno + 1 == self.lock_pgno {
                self.last_pgno + 2
            } else {
                self.last_pgno + 1
            };
            if pgno != want {
                return Err(Error::Invalid(format!(
                    "ltx encoder: nonsequential page numbers in snapshot transaction: {} then {pgno}",
                    self.last_pgno
                )));
            }
        } else if pgno <= self.last_pgno {
            return Err(Error::Invalid(format!(
                "ltx encoder: out-of-order page numbers: {} then {pgno}",
                self.last_pgno
            )));
        }

        self.buf.clear();
        let flags = match self.encoding {
            PageEncoding::Frame => 0u16,
            PageEncoding::Block => PAGE_FLAG_SIZE,
        };
        self.buf.extend_from_slice(&pgno.to_be_bytes());
        self.buf.extend_from_slice(&flags.to_be_bytes());
        self.hash.update(&self.buf);
        match self.encoding {
            PageEncoding::Frame => encode_frame(data, &mut self.buf, &mut self.scratch),
            PageEncoding::Block => {
                encode_block(data, &mut self.buf, &mut self.scratch);
                self.hash
                    .update(&self.buf[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + 4]);
            }
        }
        self.hash.update(data);
        self.w
            .write_all(&self.buf)
            .map_err(|e| Error::io("write ltx page", e))?;
        put_uvarint(&mut self.index, pgno as u64);
        put_uvarint(&mut self.index, self.offset);
        put_uvarint(&mut self.index, self.buf.len() as u64);
        self.offset += self.buf.len() as u64;
        self.last_pgno = pgno;
        Ok(())
    }

    /// Writes the end marker, page index and trailer; returns the writer and the file
    /// checksum.
    pub fn finish(mut self) -> Result<(W, u64)> {
        if self.header.is_snapshot() {
            let last = if self.header.commit == self.lock_pgno {
                self.header.commit - 1
            } else {
                self.header.commit
            };
            if self.last_pgno != last {
                return Err(Error::Invalid(format!(
                    "ltx encoder: snapshot ends at page {} but commit is {}",
                    self.last_pgno, self.header.commit
                )));
            }
        }
        let mut tail = Vec::with_capacity(self.index.len() + 32);
        tail.extend_from_slice(&[0u8; PAGE_HEADER_SIZE]);
        tail.extend_from_slice(&self.index);
        tail.push(0);
        let index_size = (self.index.len() + 1) as u64;
        tail.extend_from_slice(&index_size.to_be_bytes());
        tail.extend_from_slice(&0u64.to_be_bytes()); // post-apply checksum (no-checksum files)
        self.hash.update(&tail);
        let checksum = CHECKSUM_FLAG | self.hash.finish();
        tail.extend_from_slice(&checksum.to_be_bytes());
        self.w
            .write_all(&tail)
            .map_err(|e| Error::io("write ltx trailer", e))?;
        self.w.flush().map_err(|e| Error::io("flush ltx file", e))?;
        Ok((self.w, checksum))
    }
}
