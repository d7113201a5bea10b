//! The LTX file format (magic `LTX1`, ltx "version 3"), as Litestream v0.5 reads and writes it.
//!
//! An LTX file holds a set of database pages that move a database from the state after
//! transaction `min_txid - 1` to the state after `max_txid`:
//!
//! ```text
//! header (100 bytes) | page frames ... | zero page header (6) | page index | trailer (16)
//! ```
//!
//! This module is sans-IO over `std::io::{Read, Write}`: [`Encoder`] writes a file page by
//! page, [`Decoder`] reads one and verifies its checksum, and [`compact`] merges a
//! contiguous run of files into one. All integers are big-endian.

mod compact;
mod crc64;
mod decode;
mod encode;
mod index;
mod page;
pub(crate) mod xxh32;

use std::fmt;
use std::str::FromStr;

pub use compact::compact;
pub use decode::Decoder;
pub use encode::{Encoder, PageEncoding};
pub use index::{
    decode_page_frame, index_area_size, parse_page_index, read_page_frame, IndexEntry,
    INDEX_TAIL_SIZE,
};

/// Size of the LTX header.
pub const HEADER_SIZE: usize = 100;
/// Size of a page header (pgno u32 + flags u16).
pub const PAGE_HEADER_SIZE: usize = 6;
/// Size of the trailer (post-apply checksum + file checksum).
pub const TRAILER_SIZE: usize = 16;
/// Largest SQLite page size.
pub const MAX_PAGE_SIZE: u32 = 65536;
/// Header flag: the file carries no database checksums (Litestream always sets it).
pub const HEADER_FLAG_NO_CHECKSUM: u32 = 0x0000_0002;
/// Page flag: the payload is an LZ4 block with a 4-byte size prefix.
pub const PAGE_FLAG_SIZE: u16 = 0x0001;
/// Bit set in every stored checksum.
pub const CHECKSUM_FLAG: u64 = 1 << 63;
/// SQLite's PENDING_BYTE; the page holding it (the lock page) is never stored.
pub const PENDING_BYTE: u64 = 0x4000_0000;

const MAGIC: &[u8; 4] = b"LTX1";

/// The page number of SQLite's lock page for a page size.
pub fn lock_pgno(page_size: u32) -> u32 {
    (PENDING_BYTE / page_size as u64) as u32 + 1
}

/// True for a valid SQLite page size (a power of two in 512..=65536).
pub fn is_valid_page_size(n: u32) -> bool {
    (512..=MAX_PAGE_SIZE).contains(&n) && n.is_power_of_two()
}

/// A Litestream transaction ID: the number of an L0 sync, printed as 16 lowercase hex digits.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Txid(pub u64);

impl Txid {
    /// The zero TXID (nothing replicated).
    pub const ZERO: Txid = Txid(0);

    /// The highest TXID a file may end at: one that has a next. Names and headers past it
    /// are refused, so no arithmetic on TXIDs ever wraps.
    pub const MAX: Txid = Txid(u64::MAX - 1);

    /// The next TXID (saturating; TXIDs past [`Txid::MAX`] are refused where they enter).
    pub fn next(self) -> Txid {
        Txid(self.0.saturating_add(1))
    }
}

impl fmt::Display for Txid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for Txid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Txid({:016x})", self.0)
    }
}

impl FromStr for Txid {
    type Err = crate::error::Error;

    /// Parses exactly 16 hex digits, as Litestream's `-txid` flag does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(crate::Error::Invalid(format!(
                "invalid txid {s:?}: want exactly 16 hex digits"
            )));
        }
        u64::from_str_radix(s, 16)
            .map(Txid)
            .map_err(|e| crate::error::Error::Invalid(format!("invalid txid {s:?}: {e}")))
    }
}

/// The file name Litestream uses for an LTX file: `%016x-%016x.ltx`.
pub fn file_name(min: Txid, max: Txid) -> String {
    format!("{min}-{max}.ltx")
}

/// Parses `%016x-%016x.ltx` (lowercase hex, exactly 16 digits each).
pub fn parse_file_name(name: &str) -> Option<(Txid, Txid)> {
    let b = name.as_bytes();
    // Checked as bytes first: a listing's name may hold any character, and slicing a
    // `str` inside one panics.
    if b.len() != 37 || !name.is_ascii() || &b[16..17] != b"-" || &b[33..] != b".ltx" {
        return None;
    }
    let hex = |s: &str| {
        if s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            u64::from_str_radix(s, 16).ok()
        } else {
            None
        }
    };
    let (min, max) = (Txid(hex(&name[..16])?), Txid(hex(&name[17..33])?));
    (min <= max && max <= Txid::MAX).then_some((min, max))
}

/// The 100-byte LTX header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Header flags; only [`HEADER_FLAG_NO_CHECKSUM`] is legal.
    pub flags: u32,
    /// Database page size.
    pub page_size: u32,
    /// Database size in pages after applying this file. Never 0.
    pub commit: u32,
    /// First transaction in the file.
    pub min_txid: Txid,
    /// Last transaction in the file.
    pub max_txid: Txid,
    /// Creation time, milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Database checksum before applying (0 with no-checksum).
    pub pre_apply_checksum: u64,
    /// L0: WAL byte offset where this file's frames start; 0 otherwise.
    pub wal_offset: i64,
    /// L0: WAL bytes covered; 0 otherwise.
    pub wal_size: i64,
    /// L0: WAL salt-1.
    pub wal_salt1: u32,
    /// L0: WAL salt-2.
    pub wal_salt2: u32,
    /// Node ID (always 0 in Litestream).
    pub node_id: u64,
}

impl Header {
    /// True if this file starts at TXID 1 and so holds a whole database.
    pub fn is_snapshot(&self) -> bool {
        self.min_txid == Txid(1)
    }

    /// Serialises the header (reserved bytes zero).
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&self.flags.to_be_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_be_bytes());
        b[12..16].copy_from_slice(&self.commit.to_be_bytes());
        b[16..24].copy_from_slice(&self.min_txid.0.to_be_bytes());
        b[24..32].copy_from_slice(&self.max_txid.0.to_be_bytes());
        b[32..40].copy_from_slice(&self.timestamp.to_be_bytes());
        b[40..48].copy_from_slice(&self.pre_apply_checksum.to_be_bytes());
        b[48..56].copy_from_slice(&self.wal_offset.to_be_bytes());
        b[56..64].copy_from_slice(&self.wal_size.to_be_bytes());
        b[64..68].copy_from_slice(&self.wal_salt1.to_be_bytes());
        b[68..72].copy_from_slice(&self.wal_salt2.to_be_bytes());
        b[72..80].copy_from_slice(&self.node_id.to_be_bytes());
        b
    }

    /// Parses and validates a header.
    pub fn from_bytes(b: &[u8; HEADER_SIZE]) -> crate::error::Result<Header> {
        let u32at = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_be_bytes(a)
        };
        if &b[0..4] != MAGIC {
            return Err(crate::Error::corrupt(
                0,
                format!("not an ltx file: magic {:02x?}, want \"LTX1\"", &b[0..4]),
            ));
        }
        let h = Header {
            flags: u32at(4),
            page_size: u32at(8),
            commit: u32at(12),
            min_txid: Txid(u64at(16)),
            max_txid: Txid(u64at(24)),
            timestamp: u64at(32) as i64,
            pre_apply_checksum: u64at(40),
            wal_offset: u64at(48) as i64,
            wal_size: u64at(56) as i64,
            wal_salt1: u32at(64),
            wal_salt2: u32at(68),
            node_id: u64at(72),
        };
        h.validate()?;
        Ok(h)
    }

    /// Checks the header the way ltx's `Header.Validate` does.
    pub fn validate(&self) -> crate::error::Result<()> {
        let bad = |m: String| Err(crate::Error::corrupt(0, format!("invalid header: {m}")));
        if self.flags & !HEADER_FLAG_NO_CHECKSUM != 0 {
            return bad(format!("unknown flags {:#010x}", self.flags));
        }
        if !is_valid_page_size(self.page_size) {
            return bad(format!("invalid page size {}", self.page_size));
        }
        // Legal in the format only for an empty database, which neither Litestream nor we
        // ever write: a damaged or hostile file claiming it would empty the database a
        // restore or a follower builds.
        if self.commit == 0 {
            return bad("commit (database size in pages) is zero".into());
        }
        if self.min_txid.0 == 0 {
            return bad("min txid is zero".into());
        }
        if self.max_txid.0 == 0 {
            return bad("max txid is zero".into());
        }
        if self.max_txid > Txid::MAX {
            return bad(format!("max txid {} has no successor", self.max_txid));
        }
        if self.min_txid > self.max_txid {
            return bad(format!(
                "min txid {} is greater than max txid {}",
                self.min_txid, self.max_txid
            ));
        }
        if self.wal_offset < 0 {
            return bad(format!("negative wal offset {}", self.wal_offset));
        }
        if self.wal_size < 0 {
            return bad(format!("negative wal size {}", self.wal_size));
        }
        if (self.wal_salt1 != 0 || self.wal_salt2 != 0) && self.wal_offset == 0 {
            return bad("wal salts set without a wal offset".into());
        }
        if self.wal_offset == 0 && self.wal_size != 0 {
            return bad("wal size set without a wal offset".into());
        }
        if self.is_snapshot() || self.flags & HEADER_FLAG_NO_CHECKSUM != 0 {
            if self.pre_apply_checksum != 0 {
                return bad("pre-apply checksum not allowed".into());
            }
        } else if self.pre_apply_checksum & CHECKSUM_FLAG == 0 {
            return bad("pre-apply checksum missing its flag bit".into());
        }
        Ok(())
    }
}

/// Reads a `u64` LEB128 varint from a slice, returning it and the bytes used.
pub(crate) fn read_uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x: u64 = 0;
    let mut shift = 0u32;
    for (i, &byte) in b.iter().enumerate() {
        if i == 10 {
            return None;
        }
        if byte < 0x80 {
            if i == 9 && byte > 1 {
                return None;
            }
            return Some((x | (byte as u64) << shift, i + 1));
        }
        x |= ((byte & 0x7f) as u64) << shift;
        shift += 7;
    }
    None
}

/// Appends a `u64` LEB128 varint.
pub(crate) fn put_uvarint(out: &mut Vec<u8>, x: u64) {
    let mut b = [0u8; 10];
    let n = put_uvarint_at(&mut b, 0, x);
    out.extend_from_slice(&b[..n]);
}

/// Writes `x` as a varint into `out` at `at` (room for 10 bytes), returns the end.
pub(crate) fn put_uvarint_at(out: &mut [u8], mut at: usize, mut x: u64) -> usize {
    while x >= 0x80 {
        out[at] = (x as u8) | 0x80;
        x >>= 7;
        at += 1;
    }
    out[at] = x as u8;
    at + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            file_name(Txid(1), Txid(0x2a3)),
            "0000000000000001-00000000000002a3.ltx"
        );
        assert_eq!(
            parse_file_name("0000000000000001-00000000000002a3.ltx"),
            Some((Txid(1), Txid(0x2a3)))
        );
        assert_eq!(
            parse_file_name("0000000000000001-00000000000002A3.ltx"),
            None
        );
        assert_eq!(
            parse_file_name("0000000000000001-00000000000002a3.ltx.tmp"),
            None
        );
        // A TXID with no successor, and a range that runs backwards: refused, so nothing
        // downstream wraps or loops on them.
        assert_eq!(
            parse_file_name("0000000000000001-ffffffffffffffff.ltx"),
            None
        );
        assert_eq!(
            parse_file_name("0000000000000002-0000000000000001.ltx"),
            None
        );
        assert_eq!(Txid(u64::MAX).next(), Txid(u64::MAX));
        // A listing's name with a multi-byte character across the dash: no panic.
        assert_eq!(
            parse_file_name("000000000000000\u{e9}0000000000000001.ltx"),
            None
        );
        assert_eq!(
            parse_file_name("0000000000000001-000000000000000\u{e9}.lt"),
            None
        );
        assert_eq!(
            parse_file_name("000000000000001-00000000000002a3.ltx"),
            None
        );
        assert_eq!(
            parse_file_name("+000000000000001-00000000000002a3.ltx"),
            None
        );
        assert_eq!("00000000000000ff".parse::<Txid>().unwrap(), Txid(255));
        assert!("ff".parse::<Txid>().is_err());
    }

    #[test]
    fn lock_page() {
        assert_eq!(lock_pgno(4096), 262145);
        assert_eq!(lock_pgno(512), 2097153);
        assert_eq!(lock_pgno(65536), 16385);
    }

    #[test]
    fn varints() {
        for x in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, x);
            assert_eq!(read_uvarint(&b), Some((x, b.len())));
        }
        assert_eq!(read_uvarint(&[0x80]), None);
        assert_eq!(read_uvarint(&[0xff; 11]), None);
    }
}

#[cfg(test)]
mod codec_tests {
    use super::*;
    use crate::error::Error;

    fn golden(name: &str) -> Vec<u8> {
        let hex =
            std::fs::read_to_string(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        let hex = hex.trim();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    fn golden_header() -> Header {
        Header {
            flags: HEADER_FLAG_NO_CHECKSUM,
            page_size: 512,
            commit: 1,
            min_txid: Txid(1),
            max_txid: Txid(1),
            timestamp: 1_700_000_000_000,
            ..Header::default()
        }
    }

    type Decoded = (Header, Vec<(u32, Vec<u8>)>, u64);

    fn decode_all(data: &[u8]) -> crate::error::Result<Decoded> {
        let mut d = Decoder::new(data)?;
        let h = d.header().clone();
        let mut pages = Vec::new();
        let mut buf = vec![0u8; h.page_size as usize];
        while let Some(p) = d.next_page(&mut buf)? {
            pages.push((p, buf.clone()));
        }
        let sum = d.finish()?;
        Ok((h, pages, sum))
    }

    fn encode(h: &Header, pages: &[(u32, Vec<u8>)], enc: PageEncoding) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new(), h, enc).unwrap();
        for (p, d) in pages {
            e.write_page(*p, d).unwrap();
        }
        e.finish().unwrap().0
    }

    /// A header claiming an empty database (commit 0) is refused by every reader.
    #[test]
    fn a_header_with_commit_zero_is_corrupt() {
        let mut h = golden_header();
        assert!(Header::from_bytes(&h.to_bytes()).is_ok());
        h.commit = 0;
        let e = Header::from_bytes(&h.to_bytes()).unwrap_err();
        assert!(e.to_string().contains("commit"), "{e}");
    }

    #[test]
    fn golden_vectors_decode() {
        for (name, sum) in [
            ("snapshot-512-zero-ltx051-frame.hex", 0xf56b80646949c070u64),
            ("snapshot-512-zero-ltx052-block.hex", 0x87375d1bf01450b6),
        ] {
            let data = golden(name);
            let (h, pages, got) = decode_all(&data).unwrap();
            assert_eq!(h, golden_header(), "{name}");
            assert_eq!(pages, vec![(1, vec![0u8; 512])], "{name}");
            assert_eq!(got, sum, "{name}");
        }
    }

    #[test]
    fn golden_vectors_reencode() {
        // lz4_flex compresses differently from Go's lz4 (so the bytes differ), but the
        // header is identical and the result decodes to the same content.
        let pages = vec![(1u32, vec![0u8; 512])];
        for (enc, name) in [
            (PageEncoding::Frame, "snapshot-512-zero-ltx051-frame.hex"),
            (PageEncoding::Block, "snapshot-512-zero-ltx052-block.hex"),
        ] {
            let ours = encode(&golden_header(), &pages, enc);
            let theirs = golden(name);
            assert_eq!(ours[..HEADER_SIZE + 6], theirs[..HEADER_SIZE + 6]);
            let (h, p, _) = decode_all(&ours).unwrap();
            assert_eq!((h, p), (golden_header(), pages.clone()));
        }
    }

    fn sample_pages(n: u32, page_size: usize, seed: u8) -> Vec<(u32, Vec<u8>)> {
        (1..=n)
            .map(|p| {
                let mut d = vec![0u8; page_size];
                for (i, b) in d.iter_mut().enumerate() {
                    *b = if i % 7 == 0 {
                        (p as u8)
                            .wrapping_mul(31)
                            .wrapping_add(seed)
                            .wrapping_add(i as u8)
                    } else {
                        seed
                    };
                }
                (p, d)
            })
            .collect()
    }

    #[test]
    fn round_trip_both_encodings() {
        let mut h = golden_header();
        h.page_size = 4096;
        h.commit = 20;
        let pages = sample_pages(20, 4096, 3);
        for enc in [PageEncoding::Frame, PageEncoding::Block] {
            let data = encode(&h, &pages, enc);
            let (h2, p2, _) = decode_all(&data).unwrap();
            assert_eq!(h2, h);
            assert_eq!(p2, pages);
        }
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let mut h = golden_header();
        h.page_size = 1024;
        h.commit = 4;
        let pages = sample_pages(4, 1024, 9);
        for enc in [PageEncoding::Frame, PageEncoding::Block] {
            let data = encode(&h, &pages, enc);
            for i in 0..data.len() {
                // Reserved header bytes (80..100) are not validated by any reader, but they
                // are covered by the file checksum.
                // A flip inside compressed data may still decode to the same bytes (e.g. a
                // match offset into repeated content): that is not corruption.
                let mut bad = data.clone();
                bad[i] ^= 0x40;
                if let Ok((h2, p2, _)) = decode_all(&bad) {
                    assert_eq!(
                        (h2, p2),
                        (h.clone(), pages.clone()),
                        "flip at {i} ({enc:?})"
                    );
                }
            }
            for len in 0..data.len() {
                let err = decode_all(&data[..len]).unwrap_err();
                assert!(
                    matches!(err, Error::Corrupt { .. } | Error::ChecksumMismatch { .. }),
                    "truncation to {len}: {err}"
                );
            }
        }
    }

    #[test]
    fn an_index_that_lies_is_refused_even_with_a_good_checksum() {
        let mut h = golden_header();
        h.page_size = 1024;
        h.commit = 4;
        let pages = sample_pages(4, 1024, 9);
        let data = encode(&h, &pages, PageEncoding::Block);
        let n = data.len();
        let index_size = u64::from_be_bytes(data[n - 24..n - 16].try_into().unwrap()) as usize;
        let at = n - 24 - index_size;
        // The second entry's page number (one-byte varints here) points elsewhere, and the
        // checksum is made to match: the index must still agree with the pages.
        let mut bad = data.clone();
        let (_, used) = read_uvarint(&bad[at..]).unwrap();
        let (_, used2) = read_uvarint(&bad[at + used..]).unwrap();
        let (_, used3) = read_uvarint(&bad[at + used + used2..]).unwrap();
        bad[at + used + used2 + used3] ^= 0x01;
        let Err(Error::ChecksumMismatch { computed, .. }) = decode_all(&bad) else {
            panic!("the flip must change the checksum")
        };
        bad[n - 8..].copy_from_slice(&computed.to_be_bytes());
        let err = decode_all(&bad).unwrap_err();
        assert!(err.to_string().contains("does not list"), "{err}");
        // Unchanged, it decodes.
        decode_all(&data).unwrap();
    }

    #[test]
    fn encoder_rules() {
        let mut h = golden_header();
        h.page_size = 512;
        h.commit = 3;
        let page = vec![0u8; 512];
        // Snapshot must be sequential.
        let mut e = Encoder::new(Vec::new(), &h, PageEncoding::Frame).unwrap();
        e.write_page(1, &page).unwrap();
        assert!(e.write_page(3, &page).is_err());
        // Snapshot must be complete.
        let mut e = Encoder::new(Vec::new(), &h, PageEncoding::Frame).unwrap();
        e.write_page(1, &page).unwrap();
        assert!(e.finish().is_err());
        // Incremental: any ascending subset, not past commit.
        h.min_txid = Txid(2);
        h.max_txid = Txid(2);
        let mut e = Encoder::new(Vec::new(), &h, PageEncoding::Frame).unwrap();
        e.write_page(2, &page).unwrap();
        assert!(e.write_page(2, &page).is_err());
        assert!(e.write_page(4, &page).is_err());
        assert!(e.write_page(3, &[0u8; 100]).is_err());
        // Lock page.
        let mut h2 = h.clone();
        h2.commit = lock_pgno(512) + 5;
        let mut e = Encoder::new(Vec::new(), &h2, PageEncoding::Frame).unwrap();
        assert!(e.write_page(lock_pgno(512), &page).is_err());
        // Commit 0 and checksummed files are refused.
        let mut h3 = h.clone();
        h3.commit = 0;
        assert!(Encoder::new(Vec::new(), &h3, PageEncoding::Frame).is_err());
        let mut h4 = h.clone();
        h4.flags = 0;
        h4.pre_apply_checksum = CHECKSUM_FLAG | 1;
        assert!(Encoder::new(Vec::new(), &h4, PageEncoding::Frame).is_err());
    }

    #[test]
    fn compaction_merges_latest_wins_and_drops_past_commit() {
        let ps = 512usize;
        let mk = |min: u64, max: u64, commit: u32, pages: Vec<(u32, u8)>| {
            let h = Header {
                flags: HEADER_FLAG_NO_CHECKSUM,
                page_size: ps as u32,
                commit,
                min_txid: Txid(min),
                max_txid: Txid(max),
                timestamp: 1000 + max as i64,
                ..Header::default()
            };
            let pages: Vec<(u32, Vec<u8>)> =
                pages.into_iter().map(|(p, v)| (p, vec![v; ps])).collect();
            encode(&h, &pages, PageEncoding::Frame)
        };
        let f1 = mk(1, 1, 4, vec![(1, 1), (2, 1), (3, 1), (4, 1)]);
        let f2 = mk(2, 2, 5, vec![(2, 2), (5, 2)]);
        let f3 = mk(3, 4, 3, vec![(1, 3)]);
        let inputs: Vec<(String, Decoder<&[u8]>)> = vec![
            ("a".into(), Decoder::new(&f1[..]).unwrap()),
            ("b".into(), Decoder::new(&f2[..]).unwrap()),
            ("c".into(), Decoder::new(&f3[..]).unwrap()),
        ];
        let (out, h) = compact(inputs, Vec::new(), PageEncoding::Block).unwrap();
        assert_eq!(
            (h.min_txid, h.max_txid, h.commit, h.timestamp),
            (Txid(1), Txid(4), 3, 1004)
        );
        let (_, pages, _) = decode_all(&out).unwrap();
        let got: Vec<(u32, u8)> = pages.iter().map(|(p, d)| (*p, d[0])).collect();
        assert_eq!(got, vec![(1, 3), (2, 2), (3, 1)]);

        // A gap is an error naming the file.
        let inputs: Vec<(String, Decoder<&[u8]>)> = vec![
            ("a".into(), Decoder::new(&f1[..]).unwrap()),
            ("c".into(), Decoder::new(&f3[..]).unwrap()),
        ];
        let err = compact(inputs, Vec::new(), PageEncoding::Frame).unwrap_err();
        assert!(matches!(err, Error::NonContiguous { .. }), "{err}");
    }
}
