//! Reading SQLite's write-ahead log.
//!
//! The WAL is a 32-byte header followed by frames of a 24-byte header plus one page. Each
//! frame carries the WAL's salts and a running checksum chained from the header through
//! every frame; a frame whose salts or checksum do not match ends the valid log (it is a
//! leftover from an earlier generation, or a write in progress). Frames belong to a
//! transaction until a commit frame (non-zero "db size" field); frames after the last
//! commit are ignored.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use crate::error::{Error, Result};

/// Size of the WAL header.
pub(crate) const WAL_HEADER_SIZE: u64 = 32;
/// Size of a frame header.
pub(crate) const FRAME_HEADER_SIZE: u64 = 24;

const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;

/// A parsed, checksum-verified WAL header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WalHeader {
    /// Checksums use big-endian words.
    pub big_endian: bool,
    pub page_size: u32,
    pub checkpoint_seq: u32,
    pub salt1: u32,
    pub salt2: u32,
    pub checksum: (u32, u32),
}

impl WalHeader {
    /// Bytes of one frame (header + page).
    pub fn frame_size(&self) -> u64 {
        FRAME_HEADER_SIZE + self.page_size as u64
    }

    pub fn salts(&self) -> (u32, u32) {
        (self.salt1, self.salt2)
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `s`.
pub(crate) fn checksum(big_endian: bool, data: &[u8], s: (u32, u32)) -> (u32, u32) {
    let (mut s1, mut s2) = s;
    for c in data.chunks_exact(8) {
        let (x0, x1) = if big_endian {
            (
                u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            )
        } else {
            (
                u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            )
        };
        s1 = s1.wrapping_add(x0).wrapping_add(s2);
        s2 = s2.wrapping_add(x1).wrapping_add(s1);
    }
    (s1, s2)
}

/// Parses a WAL header; `None` if it is not a valid one (too short, bad magic, bad
/// checksum): SQLite then treats the log as empty.
pub(crate) fn parse_header(b: &[u8]) -> Option<WalHeader> {
    if b.len() < WAL_HEADER_SIZE as usize {
        return None;
    }
    let magic = be32(&b[0..]);
    let big_endian = match magic {
        MAGIC_LE => false,
        MAGIC_BE => true,
        _ => return None,
    };
    let page_size = match be32(&b[8..]) {
        1 => 65536,
        n => n,
    };
    if !crate::ltx::is_valid_page_size(page_size) {
        return None;
    }
    let stored = (be32(&b[24..]), be32(&b[28..]));
    if checksum(big_endian, &b[..24], (0, 0)) != stored {
        return None;
    }
    Some(WalHeader {
        big_endian,
        page_size,
        checkpoint_seq: be32(&b[12..]),
        salt1: be32(&b[16..]),
        salt2: be32(&b[20..]),
        checksum: stored,
    })
}

/// Reads the header of the WAL file `f`, or `None` if it holds no valid header.
pub(crate) fn read_header(f: &File) -> Result<Option<WalHeader>> {
    let mut b = [0u8; WAL_HEADER_SIZE as usize];
    match f.read_exact_at(&mut b, 0) {
        Ok(()) => Ok(parse_header(&b)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(Error::io("read wal header", e)),
    }
}

/// What a scan of the log found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Latest committed frame offset for each page (pages past `commit` removed).
    pub pages: HashMap<u32, u64>,
    /// Database size in pages after the last commit read (0 if no commit was read).
    pub commit: u32,
    /// Offset just past the last committed frame (== the start offset if none).
    pub end: u64,
    /// Running checksum after the last committed frame.
    pub checksum: (u32, u32),
    /// True if the scan stopped early at `max_bytes`; more committed frames may follow.
    pub limited: bool,
}

/// Where a scan starts: the offset of the first frame and the checksum to chain from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Start {
    pub offset: u64,
    pub checksum: (u32, u32),
}

impl Start {
    /// The start of the log.
    pub fn beginning(h: &WalHeader) -> Start {
        Start {
            offset: WAL_HEADER_SIZE,
            checksum: h.checksum,
        }
    }
}

/// Finds the checksum to chain from when starting at `offset` (> 32): the stored checksum
/// of the frame before it, which must carry the header's salts. `None` if that frame is
/// not part of the current log.
pub(crate) fn seed_at(f: &File, h: &WalHeader, offset: u64) -> Result<Option<Start>> {
    if offset == WAL_HEADER_SIZE {
        return Ok(Some(Start::beginning(h)));
    }
    if offset < WAL_HEADER_SIZE + h.frame_size() || (offset - WAL_HEADER_SIZE) % h.frame_size() != 0
    {
        return Ok(None);
    }
    let mut fh = [0u8; FRAME_HEADER_SIZE as usize];
    match f.read_exact_at(&mut fh, offset - h.frame_size()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Error::io("read wal frame header", e)),
    }
    if (be32(&fh[8..]), be32(&fh[12..])) != h.salts() {
        return Ok(None);
    }
    Ok(Some(Start {
        offset,
        checksum: (be32(&fh[16..]), be32(&fh[20..])),
    }))
}

/// Reads a file from an offset in large chunks with positioned reads.
struct Chunked<'a> {
    f: &'a File,
    pos: u64,
    buf: Vec<u8>,
    at: usize,
    len: usize,
}

impl<'a> Chunked<'a> {
    fn new(f: &'a File, pos: u64) -> Self {
        // Sized to what there is to read (a light writer's few frames), at most 64 KiB: a
        // hundred databases syncing at once must not hold 64 KiB each.
        let left = f
            .metadata()
            .map(|m| m.len().saturating_sub(pos))
            .unwrap_or(0);
        Chunked {
            f,
            pos,
            buf: vec![0u8; left.clamp(4 << 10, 64 << 10) as usize],
            at: 0,
            len: 0,
        }
    }

    /// Reads exactly `out.len()` bytes; false at end of file.
    fn read_exact(&mut self, out: &mut [u8]) -> io::Result<bool> {
        let mut filled = 0;
        while filled < out.len() {
            if self.at == self.len {
                let n = self.f.read_at(&mut self.buf, self.pos)?;
                if n == 0 {
                    return Ok(false);
                }
                self.pos += n as u64;
                self.at = 0;
                self.len = n;
            }
            let n = (self.len - self.at).min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&self.buf[self.at..self.at + n]);
            self.at += n;
            filled += n;
        }
        Ok(true)
    }
}

impl Read for Chunked<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.len {
            let n = self.f.read_at(&mut self.buf, self.pos)?;
            self.pos += n as u64;
            self.at = 0;
            self.len = n;
        }
        let n = (self.len - self.at).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Scans committed frames from `start`, stopping at the end of the valid log, or at the
/// first commit boundary at or past `max_bytes` scanned (`max_bytes == 0`: no limit).
pub(crate) fn scan(f: &File, h: &WalHeader, start: Start, max_bytes: u64) -> Result<Scan> {
    let frame_size = h.frame_size();
    let mut r = Chunked::new(f, start.offset);
    let mut fh = [0u8; FRAME_HEADER_SIZE as usize];
    let mut page = vec![0u8; h.page_size as usize];
    let mut out = Scan {
        end: start.offset,
        checksum: start.checksum,
        ..Scan::default()
    };
    let mut pending: Vec<(u32, u64)> = Vec::new();
    let mut sum = start.checksum;
    let mut offset = start.offset;
    loop {
        if !r
            .read_exact(&mut fh)
            .map_err(|e| Error::io("read wal frame", e))?
        {
            break;
        }
        if !r
            .read_exact(&mut page)
            .map_err(|e| Error::io("read wal frame", e))?
        {
            break;
        }
        if (be32(&fh[8..]), be32(&fh[12..])) != h.salts() {
            break;
        }
        sum = checksum(h.big_endian, &fh[..8], sum);
        sum = checksum(h.big_endian, &page, sum);
        if sum != (be32(&fh[16..]), be32(&fh[20..])) {
            break;
        }
        let pgno = be32(&fh[0..]);
        let commit = be32(&fh[4..]);
        if pgno == 0 {
            break;
        }
        pending.push((pgno, offset));
        offset += frame_size;
        if commit != 0 {
            for (p, o) in pending.drain(..) {
                out.pages.insert(p, o);
            }
            out.commit = commit;
            out.end = offset;
            out.checksum = sum;
            if max_bytes > 0 && offset - start.offset >= max_bytes {
                out.limited = true;
                break;
            }
        }
    }
    let commit = out.commit;
    if commit > 0 {
        out.pages.retain(|&p, _| p <= commit);
    }
    Ok(out)
}

/// Reads the page stored in the frame at `frame_offset`.
pub(crate) fn read_frame_page(f: &File, frame_offset: u64, page: &mut [u8]) -> Result<()> {
    f.read_exact_at(page, frame_offset + FRAME_HEADER_SIZE)
        .map_err(|e| Error::io(format!("read wal frame at offset {frame_offset}"), e))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a WAL image: header + frames `(pgno, commit, fill byte)`.
    pub(crate) fn build(
        page_size: u32,
        salts: (u32, u32),
        frames: &[(u32, u32, u8)],
        big_endian: bool,
    ) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(if big_endian { MAGIC_BE } else { MAGIC_LE }).to_be_bytes());
        b.extend_from_slice(&3_007_000u32.to_be_bytes());
        b.extend_from_slice(&page_size.to_be_bytes());
        b.extend_from_slice(&7u32.to_be_bytes());
        b.extend_from_slice(&salts.0.to_be_bytes());
        b.extend_from_slice(&salts.1.to_be_bytes());
        let mut s = checksum(big_endian, &b, (0, 0));
        b.extend_from_slice(&s.0.to_be_bytes());
        b.extend_from_slice(&s.1.to_be_bytes());
        for &(pgno, commit, fill) in frames {
            let mut fh = Vec::new();
            fh.extend_from_slice(&pgno.to_be_bytes());
            fh.extend_from_slice(&commit.to_be_bytes());
            let page = vec![fill; page_size as usize];
            s = checksum(big_endian, &fh, s);
            s = checksum(big_endian, &page, s);
            fh.extend_from_slice(&salts.0.to_be_bytes());
            fh.extend_from_slice(&salts.1.to_be_bytes());
            fh.extend_from_slice(&s.0.to_be_bytes());
            fh.extend_from_slice(&s.1.to_be_bytes());
            b.extend_from_slice(&fh);
            b.extend_from_slice(&page);
        }
        b
    }

    fn file_with(data: &[u8]) -> File {
        let p = std::env::temp_dir().join(format!(
            "lsrs-wal-{}-{}",
            std::process::id(),
            data.len() ^ (data.as_ptr() as usize)
        ));
        std::fs::write(&p, data).unwrap();
        let f = File::open(&p).unwrap();
        let _ = std::fs::remove_file(&p);
        f
    }

    #[test]
    fn scans_committed_frames_and_ignores_the_tail() {
        for be in [false, true] {
            let wal = build(
                512,
                (11, 22),
                &[(1, 0, 1), (2, 2, 2), (3, 0, 3), (1, 3, 4), (4, 0, 5)],
                be,
            );
            let f = file_with(&wal);
            let h = read_header(&f).unwrap().unwrap();
            assert_eq!((h.page_size, h.salts(), h.big_endian), (512, (11, 22), be));
            let s = scan(&f, &h, Start::beginning(&h), 0).unwrap();
            assert_eq!(s.commit, 3);
            assert_eq!(s.end, 32 + 4 * h.frame_size());
            let mut pages: Vec<_> = s.pages.into_iter().collect();
            pages.sort();
            assert_eq!(
                pages,
                vec![(1, 32 + 3 * 536), (2, 32 + 536), (3, 32 + 2 * 536)]
            );
            // Resume mid-log with a seeded checksum.
            let start = seed_at(&f, &h, 32 + 2 * 536).unwrap().unwrap();
            let s2 = scan(&f, &h, start, 0).unwrap();
            assert_eq!((s2.commit, s2.end), (3, 32 + 4 * 536));
            // Byte limit stops at the first commit boundary past it.
            let s3 = scan(&f, &h, Start::beginning(&h), 1).unwrap();
            assert_eq!((s3.commit, s3.end, s3.limited), (2, 32 + 2 * 536, true));
        }
    }

    #[test]
    fn stops_at_bad_salt_checksum_or_short_frame() {
        let mut wal = build(512, (1, 2), &[(1, 1, 1), (2, 2, 2), (3, 3, 3)], false);
        // Corrupt the third frame's page: the chain breaks there.
        let third = 32 + 2 * 536 + 24 + 10;
        wal[third] ^= 0xff;
        let f = file_with(&wal);
        let h = read_header(&f).unwrap().unwrap();
        assert_eq!(scan(&f, &h, Start::beginning(&h), 0).unwrap().commit, 2);
        // A frame from another generation (different salt).
        let other = build(512, (9, 9), &[(1, 1, 1), (2, 2, 2), (3, 3, 3)], false);
        let mut mixed = build(512, (1, 2), &[(1, 1, 1)], false);
        mixed.extend_from_slice(&other[32 + 536..]);
        let f = file_with(&mixed);
        assert_eq!(scan(&f, &h, Start::beginning(&h), 0).unwrap().end, 32 + 536);
        // A seed frame of another generation is not part of the log.
        assert!(seed_at(&f, &h, 32 + 2 * 536).unwrap().is_none());
        // Short file and bad header.
        let short = build(512, (1, 2), &[(1, 1, 1)], false);
        let f = file_with(&short[..short.len() - 1]);
        assert_eq!(scan(&f, &h, Start::beginning(&h), 0).unwrap().commit, 0);
        let mut bad = short.clone();
        bad[20] ^= 1;
        assert!(parse_header(&bad).is_none());
        assert!(parse_header(&short[..31]).is_none());
    }

    #[test]
    fn shrink_drops_pages_past_commit() {
        let wal = build(512, (1, 2), &[(5, 0, 1), (6, 6, 1), (1, 2, 3)], false);
        let f = file_with(&wal);
        let h = read_header(&f).unwrap().unwrap();
        let s = scan(&f, &h, Start::beginning(&h), 0).unwrap();
        assert_eq!(s.commit, 2);
        assert_eq!(s.pages.keys().copied().collect::<Vec<_>>(), vec![1]);
    }
}
