//! Page payload encodings: the legacy one-LZ4-frame-per-page form (page flags 0, written by
//! ltx v0.5.0/v0.5.1 and readable by every Litestream v0.5.x) and the LZ4 block form with a
//! size prefix (page flag `0x0001`, ltx v0.5.2, Litestream >= v0.5.16).

use std::io::{self, Read};

use super::xxh32::xxh32;

const FRAME_MAGIC: u32 = 0x184D_2204;
/// The frame header Go's pierrec/lz4 writes with ltx's options:
/// magic, FLG 0x64 (v01, independent blocks, content checksum), BD 0x40 (64 KiB), HC 0xA7.
const FRAME_HEADER: [u8; 7] = [0x04, 0x22, 0x4D, 0x18, 0x64, 0x40, 0xA7];

/// Appends the legacy LZ4 frame encoding of `page` to `out`.
pub(crate) fn encode_frame(page: &[u8], out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
    out.extend_from_slice(&FRAME_HEADER);
    compress_block(page, scratch);
    if scratch.len() < page.len() {
        out.extend_from_slice(&(scratch.len() as u32).to_le_bytes());
        out.extend_from_slice(scratch);
    } else {
        out.extend_from_slice(&(page.len() as u32 | 0x8000_0000).to_le_bytes());
        out.extend_from_slice(page);
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&xxh32(page, 0).to_le_bytes());
}

/// Appends the block encoding of `page` (size prefix + raw LZ4 block) to `out`.
pub(crate) fn encode_block(page: &[u8], out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
    compress_block(page, scratch);
    out.extend_from_slice(&(scratch.len() as u32).to_be_bytes());
    out.extend_from_slice(scratch);
}

fn compress_block(page: &[u8], scratch: &mut Vec<u8>) {
    scratch.clear();
    scratch.resize(lz4_flex::block::get_maximum_output_size(page.len()), 0);
    // compress_into cannot fail when the output has the maximum size.
    let n = lz4_flex::block::compress_into(page, scratch).unwrap_or(0);
    if n == 0 && !page.is_empty() {
        // Unreachable in practice; fall back to a literal-only block built by hand.
        literal_block(page, scratch);
        return;
    }
    scratch.truncate(n);
}

/// A valid LZ4 block holding `data` as one run of literals.
fn literal_block(data: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let n = data.len();
    if n < 15 {
        out.push((n as u8) << 4);
    } else {
        out.push(0xF0);
        let mut rest = n - 15;
        while rest >= 255 {
            out.push(255);
            rest -= 255;
        }
        out.push(rest as u8);
    }
    out.extend_from_slice(data);
}

/// Why a page payload could not be decoded; the caller adds the offset.
pub(crate) enum PageError {
    Io(io::Error),
    Bad(String),
}

impl From<io::Error> for PageError {
    fn from(e: io::Error) -> Self {
        PageError::Io(e)
    }
}

fn read_u32_le(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// Decodes one block-encoded page (after its 6-byte page header) into `page`.
pub(crate) fn decode_block(
    r: &mut impl Read,
    page: &mut [u8],
    scratch: &mut Vec<u8>,
) -> Result<u32, PageError> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    let size = u32::from_be_bytes(b);
    let max = lz4_flex::block::get_maximum_output_size(page.len()) + 16;
    if size as usize > max {
        return Err(PageError::Bad(format!(
            "compressed page size {size} exceeds the maximum {max} for page size {}",
            page.len()
        )));
    }
    scratch.resize(size as usize, 0);
    r.read_exact(scratch)?;
    let n = lz4_flex::block::decompress_into(scratch, page)
        .map_err(|e| PageError::Bad(format!("lz4 block: {e}")))?;
    if n != page.len() {
        return Err(PageError::Bad(format!(
            "lz4 block decompressed to {n} bytes, want {}",
            page.len()
        )));
    }
    Ok(4 + size)
}

/// Whether [`decode_frame`] checks the frame's own xxHash checksums (of its blocks and of
/// the page). A reader that verifies the LTX file's checksum before trusting any page (the
/// streaming decoder: that checksum covers every decoded page) skips them; a reader of
/// single pages (the VFS) cannot and keeps them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameChecks {
    /// Check the block and content checksums the frame carries.
    Verify,
    /// Skip them: the caller checks a checksum covering the decoded page.
    Skip,
}

/// Decodes one legacy LZ4 frame (after its 6-byte page header) into `page`, reading exactly
/// the frame's bytes and nothing after it. Returns the number of bytes consumed.
pub(crate) fn decode_frame(
    r: &mut impl Read,
    page: &mut [u8],
    scratch: &mut Vec<u8>,
    checks: FrameChecks,
) -> Result<u32, PageError> {
    let verify = checks == FrameChecks::Verify;
    let bad = |m: String| Err(PageError::Bad(m));
    let magic = read_u32_le(r)?;
    if magic != FRAME_MAGIC {
        return bad(format!("bad lz4 frame magic {magic:#010x}"));
    }
    let mut consumed: u32 = 4;
    let mut fb = [0u8; 2];
    r.read_exact(&mut fb)?;
    consumed += 2;
    let (flg, bd) = (fb[0], fb[1]);
    if flg >> 6 != 1 {
        return bad(format!("unsupported lz4 frame version in FLG {flg:#04x}"));
    }
    if flg & 0x02 != 0 || bd & 0x8F != 0 {
        return bad(format!(
            "reserved lz4 frame bits set (FLG {flg:#04x}, BD {bd:#04x})"
        ));
    }
    let independent = flg & 0x20 != 0;
    let block_checksum = flg & 0x10 != 0;
    let has_content_size = flg & 0x08 != 0;
    let content_checksum = flg & 0x04 != 0;
    let has_dict = flg & 0x01 != 0;
    let block_max: usize = match (bd >> 4) & 0x07 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        v => return bad(format!("invalid lz4 block max size id {v}")),
    };
    let mut desc = vec![flg, bd];
    if has_content_size {
        let mut cs = [0u8; 8];
        r.read_exact(&mut cs)?;
        consumed += 8;
        desc.extend_from_slice(&cs);
        let content = u64::from_le_bytes(cs);
        if content != page.len() as u64 {
            return bad(format!(
                "lz4 frame content size {content}, want {}",
                page.len()
            ));
        }
    }
    if has_dict {
        return bad("lz4 frame uses a dictionary, which ltx never writes".into());
    }
    let mut hc = [0u8; 1];
    r.read_exact(&mut hc)?;
    consumed += 1;
    let want_hc = ((xxh32(&desc, 0) >> 8) & 0xff) as u8;
    if hc[0] != want_hc {
        return bad(format!(
            "lz4 frame header checksum {:#04x}, want {want_hc:#04x}",
            hc[0]
        ));
    }

    let mut filled = 0usize;
    loop {
        let raw = read_u32_le(r)?;
        consumed += 4;
        if raw == 0 {
            break;
        }
        let stored = raw & 0x8000_0000 != 0;
        let size = (raw & 0x7FFF_FFFF) as usize;
        if size > block_max {
            return bad(format!(
                "lz4 block size {size} exceeds the frame's block maximum {block_max}"
            ));
        }
        let room = page.len() - filled;
        if stored && size > room {
            return bad(format!(
                "lz4 frame holds more than the page size {}",
                page.len()
            ));
        }
        // A stored block is the page's own bytes: read straight into it.
        let block: &[u8] = if stored {
            r.read_exact(&mut page[filled..filled + size])?;
            &page[filled..filled + size]
        } else {
            scratch.resize(size, 0);
            r.read_exact(scratch)?;
            scratch
        };
        consumed += size as u32;
        if block_checksum {
            let sum = read_u32_le(r)?;
            consumed += 4;
            if verify && sum != xxh32(block, 0) {
                return bad("lz4 block checksum mismatch".into());
            }
        }
        if stored {
            filled += size;
        } else {
            let n = if independent || filled == 0 {
                lz4_flex::block::decompress_into(scratch, &mut page[filled..])
            } else {
                let dict = page[filled.saturating_sub(64 << 10)..filled].to_vec();
                lz4_flex::block::decompress_into_with_dict(scratch, &mut page[filled..], &dict)
            }
            .map_err(|e| PageError::Bad(format!("lz4 frame block: {e}")))?;
            filled += n;
        }
    }
    if filled != page.len() {
        return bad(format!(
            "lz4 frame decompressed to {filled} bytes, want {}",
            page.len()
        ));
    }
    if content_checksum {
        let sum = read_u32_le(r)?;
        consumed += 4;
        let want = if verify { xxh32(page, 0) } else { sum };
        if sum != want {
            return bad(format!(
                "lz4 frame content checksum {sum:#010x}, want {want:#010x}"
            ));
        }
    }
    Ok(consumed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages() -> Vec<Vec<u8>> {
        let mut random = vec![0u8; 4096];
        let mut x: u32 = 12345;
        for b in random.iter_mut() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
        vec![vec![0u8; 512], vec![7u8; 4096], random, vec![1u8; 65536]]
    }

    #[test]
    fn frame_round_trip() {
        let mut scratch = Vec::new();
        for p in pages() {
            let mut enc = Vec::new();
            encode_frame(&p, &mut enc, &mut scratch);
            let mut out = vec![0u8; p.len()];
            for checks in [FrameChecks::Verify, FrameChecks::Skip] {
                let mut cur = io::Cursor::new(&enc);
                let n = decode_frame(&mut cur, &mut out, &mut scratch, checks)
                    .ok()
                    .unwrap();
                assert_eq!(n as usize, enc.len());
                assert_eq!(out, p);
            }
        }
    }

    #[test]
    fn block_round_trip() {
        let mut scratch = Vec::new();
        for p in pages() {
            let mut enc = Vec::new();
            encode_block(&p, &mut enc, &mut scratch);
            let mut out = vec![0u8; p.len()];
            let n = decode_block(&mut io::Cursor::new(&enc), &mut out, &mut scratch)
                .ok()
                .unwrap();
            assert_eq!(n as usize, enc.len());
            assert_eq!(out, p);
        }
    }

    #[test]
    fn literal_block_decodes() {
        for n in [0usize, 1, 14, 15, 16, 269, 270, 271, 4096] {
            let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let mut blk = Vec::new();
            literal_block(&data, &mut blk);
            let mut out = vec![0u8; n];
            let got = lz4_flex::block::decompress_into(&blk, &mut out).unwrap();
            assert_eq!(got, n);
            assert_eq!(out, data);
        }
    }

    #[test]
    fn short_frame_is_an_error() {
        let mut scratch = Vec::new();
        let p = vec![3u8; 4096];
        let mut enc = Vec::new();
        encode_frame(&p, &mut enc, &mut scratch);
        for checks in [FrameChecks::Verify, FrameChecks::Skip] {
            let mut out = vec![0u8; 2048];
            assert!(
                decode_frame(&mut io::Cursor::new(&enc), &mut out, &mut scratch, checks).is_err()
            );
            let mut out = vec![0u8; 8192];
            assert!(
                decode_frame(&mut io::Cursor::new(&enc), &mut out, &mut scratch, checks).is_err()
            );
        }
    }

    /// A page damaged inside its frame fails the frame's content checksum when single
    /// pages are read (the VFS); the streaming decoder leaves that to the file checksum
    /// (see `ltx::tests`).
    #[test]
    fn a_damaged_frame_fails_its_content_checksum() {
        let mut scratch = Vec::new();
        let p = pages().swap_remove(2);
        let mut enc = Vec::new();
        encode_frame(&p, &mut enc, &mut scratch);
        let mid = enc.len() / 2;
        enc[mid] ^= 0x55;
        let mut out = vec![0u8; p.len()];
        let r = decode_frame(
            &mut io::Cursor::new(&enc),
            &mut out,
            &mut scratch,
            FrameChecks::Verify,
        );
        assert!(
            matches!(&r, Err(PageError::Bad(m)) if m.contains("checksum")),
            "a damaged page was not refused"
        );
    }
}
