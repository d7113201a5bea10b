//! The LZ4 frame format as Litestream v0.3 wrote its snapshots and WAL segments (Go's
//! `pierrec/lz4`): a streaming decoder, one block in memory at a time, every checksum
//! the frame carries verified. Concatenated frames and skippable frames are accepted.
//! Sans-IO over `Read`/`Write`; fuzzed (`fuzz_targets/v3_decode.rs`).

use std::io::{self, Read, Write};

use crate::ltx::xxh32::{xxh32, Xxh32};

const FRAME_MAGIC: u32 = 0x184D_2204;
/// Skippable frames have magics `0x184D2A50..=0x184D2A5F`.
const SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
/// The window a linked block may refer back into.
const WINDOW: usize = 64 << 10;

/// Why a stream could not be decoded.
#[derive(Debug)]
pub(crate) enum Lz4Error {
    /// Reading the input or writing the output failed.
    Io(io::Error),
    /// The input is not a valid LZ4 frame: what is wrong, at which input byte.
    Bad { offset: u64, reason: String },
}

impl std::fmt::Display for Lz4Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lz4Error::Io(e) => write!(f, "{e}"),
            Lz4Error::Bad { offset, reason } => {
                write!(f, "invalid lz4 frame at byte {offset}: {reason}")
            }
        }
    }
}

/// Counts what is read, so errors can say where.
struct Input<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Input<R> {
    fn exact(&mut self, buf: &mut [u8]) -> Result<(), Lz4Error> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(Lz4Error::Bad {
                offset: self.pos,
                reason: "the stream ends in the middle of a frame (truncated object)".into(),
            }),
            Err(e) => Err(Lz4Error::Io(e)),
        }
    }

    fn u32(&mut self) -> Result<u32, Lz4Error> {
        let mut b = [0u8; 4];
        self.exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// The next frame's magic, or `None` at a clean end of the stream.
    fn magic(&mut self) -> Result<Option<u32>, Lz4Error> {
        let mut b = [0u8; 4];
        let mut n = 0;
        while n < 4 {
            match self.inner.read(&mut b[n..]) {
                Ok(0) if n == 0 => return Ok(None),
                Ok(0) => {
                    return Err(Lz4Error::Bad {
                        offset: self.pos + n as u64,
                        reason: "trailing bytes after the last frame".into(),
                    })
                }
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Lz4Error::Io(e)),
            }
        }
        self.pos += 4;
        Ok(Some(u32::from_le_bytes(b)))
    }
}

/// Decodes the LZ4 frames of `r` into `w`; returns the number of bytes written. An empty
/// input is an error (Litestream never wrote an empty object).
pub(crate) fn decode(r: impl Read, w: &mut impl Write) -> Result<u64, Lz4Error> {
    let mut input = Input { inner: r, pos: 0 };
    let mut total = 0u64;
    let mut frames = 0usize;
    while let Some(magic) = input.magic()? {
        if magic & SKIPPABLE_MASK == SKIPPABLE_MAGIC {
            let len = input.u32()?;
            let skipped = io::copy(&mut (&mut input.inner).take(len as u64), &mut io::sink())
                .map_err(Lz4Error::Io)?;
            if skipped != len as u64 {
                return Err(Lz4Error::Bad {
                    offset: input.pos + skipped,
                    reason: "a skippable frame is cut short".into(),
                });
            }
            input.pos += skipped;
            continue;
        }
        if magic != FRAME_MAGIC {
            return Err(Lz4Error::Bad {
                offset: input.pos - 4,
                reason: format!("bad magic {magic:#010x}, want {FRAME_MAGIC:#010x}"),
            });
        }
        total += frame(&mut input, w)?;
        frames += 1;
    }
    if frames == 0 {
        return Err(Lz4Error::Bad {
            offset: 0,
            reason: "empty object: no lz4 frame".into(),
        });
    }
    Ok(total)
}

/// One frame after its magic.
fn frame<R: Read>(input: &mut Input<R>, w: &mut impl Write) -> Result<u64, Lz4Error> {
    let start = input.pos;
    let bad = |offset: u64, reason: String| Err(Lz4Error::Bad { offset, reason });
    let mut fb = [0u8; 2];
    input.exact(&mut fb)?;
    let (flg, bd) = (fb[0], fb[1]);
    if flg >> 6 != 1 {
        return bad(
            start,
            format!("unsupported frame version in FLG {flg:#04x}"),
        );
    }
    if flg & 0x02 != 0 || bd & 0x8F != 0 {
        return bad(
            start,
            format!("reserved bits set (FLG {flg:#04x}, BD {bd:#04x})"),
        );
    }
    let independent = flg & 0x20 != 0;
    let block_checksum = flg & 0x10 != 0;
    let has_content_size = flg & 0x08 != 0;
    let content_checksum = flg & 0x04 != 0;
    if flg & 0x01 != 0 {
        return bad(
            start,
            "the frame needs a dictionary, which Litestream never used".into(),
        );
    }
    let block_max: usize = match (bd >> 4) & 0x07 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        v => return bad(start + 1, format!("invalid block maximum size id {v}")),
    };
    let mut desc = vec![flg, bd];
    let mut content_size = None;
    if has_content_size {
        let mut cs = [0u8; 8];
        input.exact(&mut cs)?;
        desc.extend_from_slice(&cs);
        content_size = Some(u64::from_le_bytes(cs));
    }
    let mut hc = [0u8; 1];
    input.exact(&mut hc)?;
    let want_hc = ((xxh32(&desc, 0) >> 8) & 0xff) as u8;
    if hc[0] != want_hc {
        return bad(
            input.pos - 1,
            format!("header checksum {:#04x}, want {want_hc:#04x}", hc[0]),
        );
    }

    let mut hasher = Xxh32::new(0);
    let mut block = Vec::new();
    // Linked blocks decode against the previous 64 KiB of output: keep it in front of
    // the block being decoded.
    let mut out = vec![0u8; if independent { 0 } else { WINDOW } + block_max];
    let mut window = 0usize; // valid bytes of history at out[WINDOW - window..WINDOW]
    let mut written = 0u64;
    loop {
        let at = input.pos;
        let raw = input.u32()?;
        if raw == 0 {
            break;
        }
        let stored = raw & 0x8000_0000 != 0;
        let size = (raw & 0x7FFF_FFFF) as usize;
        if size > block_max {
            return bad(
                at,
                format!("block of {size} bytes exceeds the frame's maximum {block_max}"),
            );
        }
        block.resize(size, 0);
        input.exact(&mut block)?;
        if block_checksum {
            let sum = input.u32()?;
            if sum != xxh32(&block, 0) {
                return bad(at, "block checksum mismatch".into());
            }
        }
        let base = if independent { 0 } else { WINDOW };
        let n = if stored {
            out[base..base + size].copy_from_slice(&block);
            size
        } else if independent || window == 0 {
            lz4_flex::block::decompress_into(&block, &mut out[base..]).map_err(|e| {
                Lz4Error::Bad {
                    offset: at + 4,
                    reason: format!("block: {e}"),
                }
            })?
        } else {
            let (hist, rest) = out.split_at_mut(WINDOW);
            lz4_flex::block::decompress_into_with_dict(&block, rest, &hist[WINDOW - window..])
                .map_err(|e| Lz4Error::Bad {
                    offset: at + 4,
                    reason: format!("block: {e}"),
                })?
        };
        let data = &out[base..base + n];
        if content_checksum {
            hasher.update(data);
        }
        w.write_all(data).map_err(Lz4Error::Io)?;
        written += n as u64;
        if !independent {
            // Slide: the last WINDOW bytes of history + this block become the history.
            let keep = (window + n).min(WINDOW);
            let end = WINDOW + n;
            out.copy_within(end - keep..end, WINDOW - keep);
            window = keep;
        }
    }
    if let Some(cs) = content_size {
        if cs != written {
            return bad(
                start,
                format!("the header says {cs} bytes of content, the blocks hold {written}"),
            );
        }
    }
    if content_checksum {
        let at = input.pos;
        let sum = input.u32()?;
        let want = hasher.digest();
        if sum != want {
            return bad(
                at,
                format!("content checksum {sum:#010x}, want {want:#010x}"),
            );
        }
    }
    Ok(written)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One frame as pierrec/lz4 writes it (independent blocks of up to `block_max`,
    /// content checksum), with compressed or stored blocks.
    pub(crate) fn encode(data: &[u8], block_max: usize) -> Vec<u8> {
        let bd_id = match block_max {
            65536 => 4u8,
            262144 => 5,
            1048576 => 6,
            _ => 7,
        };
        let (flg, bd) = (0x64u8, bd_id << 4);
        let mut out = FRAME_MAGIC.to_le_bytes().to_vec();
        out.extend_from_slice(&[flg, bd, ((xxh32(&[flg, bd], 0) >> 8) & 0xff) as u8]);
        for chunk in data.chunks(block_max) {
            let c = lz4_flex::block::compress(chunk);
            if c.len() < chunk.len() {
                out.extend_from_slice(&(c.len() as u32).to_le_bytes());
                out.extend_from_slice(&c);
            } else {
                out.extend_from_slice(&(chunk.len() as u32 | 0x8000_0000).to_le_bytes());
                out.extend_from_slice(chunk);
            }
        }
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&xxh32(data, 0).to_le_bytes());
        out
    }

    fn sample(n: usize) -> Vec<u8> {
        let mut x = 12345u32;
        (0..n)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 7 < 4 {
                    b"sqlite"[i % 6]
                } else {
                    (x >> 16) as u8
                }
            })
            .collect()
    }

    #[test]
    fn round_trip_several_blocks_and_frames() {
        let data = sample(300_000);
        let mut enc = encode(&data, 65536);
        enc.extend_from_slice(&encode(b"tail", 65536));
        let mut out = Vec::new();
        let n = decode(&enc[..], &mut out).expect("decode");
        assert_eq!(n as usize, data.len() + 4);
        assert_eq!(&out[..data.len()], &data[..]);
        assert_eq!(&out[data.len()..], b"tail");
    }

    #[test]
    fn damage_is_reported_with_its_offset() {
        let data = sample(10_000);
        let enc = encode(&data, 65536);
        let mut bad = enc.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let e = decode(&bad[..], &mut Vec::new()).expect_err("checksum");
        assert!(e.to_string().contains("content checksum"), "{e}");
        let e = decode(&enc[..enc.len() - 3], &mut Vec::new()).expect_err("truncated");
        assert!(e.to_string().contains("truncated"), "{e}");
        let e = decode(&b""[..], &mut Vec::new()).expect_err("empty");
        assert!(e.to_string().contains("empty"), "{e}");
        let mut junk = enc.clone();
        junk.extend_from_slice(b"xy");
        let e = decode(&junk[..], &mut Vec::new()).expect_err("trailing");
        assert!(e.to_string().contains("trailing"), "{e}");
    }

    #[test]
    fn linked_blocks_decode_against_the_window() {
        // Two linked blocks: the second is compressed with the first as its dictionary.
        let a = sample(65536);
        let mut b = a[1000..30000].to_vec();
        b.extend_from_slice(&sample(5000));
        let cb = lz4_flex::block::compress_with_dict(&b, &a);
        let (flg, bd) = (0x44u8, 0x40u8); // linked blocks, content checksum, 64 KiB
        let mut enc = FRAME_MAGIC.to_le_bytes().to_vec();
        enc.extend_from_slice(&[flg, bd, ((xxh32(&[flg, bd], 0) >> 8) & 0xff) as u8]);
        enc.extend_from_slice(&(a.len() as u32 | 0x8000_0000).to_le_bytes());
        enc.extend_from_slice(&a);
        enc.extend_from_slice(&(cb.len() as u32).to_le_bytes());
        enc.extend_from_slice(&cb);
        enc.extend_from_slice(&0u32.to_le_bytes());
        let mut all = a.clone();
        all.extend_from_slice(&b);
        enc.extend_from_slice(&xxh32(&all, 0).to_le_bytes());
        let mut out = Vec::new();
        decode(&enc[..], &mut out).expect("decode");
        assert_eq!(out, all);
    }
}
