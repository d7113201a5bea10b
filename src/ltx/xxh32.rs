//! XXH32, used for the content checksum of legacy LZ4 frames.

const P1: u32 = 0x9E37_79B1;
const P2: u32 = 0x85EB_CA77;
const P3: u32 = 0xC2B2_AE3D;
const P4: u32 = 0x27D4_EB2F;
const P5: u32 = 0x1656_67B1;

fn round(acc: u32, input: u32) -> u32 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(13)
        .wrapping_mul(P1)
}

fn read32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// XXH32 of `data` with `seed`.
pub(crate) fn xxh32(data: &[u8], seed: u32) -> u32 {
    let len = data.len();
    let mut rest = data;
    let h: u32;
    if len >= 16 {
        let mut v1 = seed.wrapping_add(P1).wrapping_add(P2);
        let mut v2 = seed.wrapping_add(P2);
        let mut v3 = seed;
        let mut v4 = seed.wrapping_sub(P1);
        while rest.len() >= 16 {
            v1 = round(v1, read32(&rest[0..]));
            v2 = round(v2, read32(&rest[4..]));
            v3 = round(v3, read32(&rest[8..]));
            v4 = round(v4, read32(&rest[12..]));
            rest = &rest[16..];
        }
        h = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
    } else {
        h = seed.wrapping_add(P5);
    }
    finish(h.wrapping_add(len as u32), rest)
}

/// The last step of XXH32: the remaining (< 16) bytes, then the avalanche.
fn finish(mut h: u32, mut rest: &[u8]) -> u32 {
    while rest.len() >= 4 {
        h = h
            .wrapping_add(read32(rest).wrapping_mul(P3))
            .rotate_left(17)
            .wrapping_mul(P4);
        rest = &rest[4..];
    }
    for &b in rest {
        h = h
            .wrapping_add((b as u32).wrapping_mul(P5))
            .rotate_left(11)
            .wrapping_mul(P1);
    }
    h ^= h >> 15;
    h = h.wrapping_mul(P2);
    h ^= h >> 13;
    h = h.wrapping_mul(P3);
    h ^= h >> 16;
    h
}

/// XXH32 computed over data that arrives in pieces (a whole LZ4 frame's content).
#[derive(Clone, Debug)]
pub(crate) struct Xxh32 {
    seed: u32,
    v: [u32; 4],
    buf: [u8; 16],
    buf_len: usize,
    total: u64,
}

impl Xxh32 {
    /// A hasher with `seed`.
    pub(crate) fn new(seed: u32) -> Self {
        Xxh32 {
            seed,
            v: [
                seed.wrapping_add(P1).wrapping_add(P2),
                seed.wrapping_add(P2),
                seed,
                seed.wrapping_sub(P1),
            ],
            buf: [0; 16],
            buf_len: 0,
            total: 0,
        }
    }

    fn stripe(&mut self, b: &[u8]) {
        for (i, v) in self.v.iter_mut().enumerate() {
            *v = round(*v, read32(&b[i * 4..]));
        }
    }

    /// Adds `data`.
    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if self.buf_len > 0 {
            let take = (16 - self.buf_len).min(data.len());
            self.buf[self.buf_len..self.buf_len + take].copy_from_slice(&data[..take]);
            self.buf_len += take;
            data = &data[take..];
            if self.buf_len < 16 {
                return;
            }
            let b = self.buf;
            self.stripe(&b);
            self.buf_len = 0;
        }
        while data.len() >= 16 {
            self.stripe(&data[..16]);
            data = &data[16..];
        }
        self.buf[..data.len()].copy_from_slice(data);
        self.buf_len = data.len();
    }

    /// The hash of everything added.
    pub(crate) fn digest(&self) -> u32 {
        let h = if self.total >= 16 {
            let [v1, v2, v3, v4] = self.v;
            v1.rotate_left(1)
                .wrapping_add(v2.rotate_left(7))
                .wrapping_add(v3.rotate_left(12))
                .wrapping_add(v4.rotate_left(18))
        } else {
            self.seed.wrapping_add(P5)
        };
        finish(h.wrapping_add(self.total as u32), &self.buf[..self.buf_len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_equals_one_shot() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
        for len in [0, 1, 15, 16, 17, 33, 999, 1000] {
            for chunk in [1, 3, 16, 17, 64] {
                let mut h = Xxh32::new(7);
                for c in data[..len].chunks(chunk) {
                    h.update(c);
                }
                assert_eq!(
                    h.digest(),
                    xxh32(&data[..len], 7),
                    "len {len} chunk {chunk}"
                );
            }
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(xxh32(b"", 0), 0x02CC_5D05);
        assert_eq!(xxh32(b"a", 0), 0x550D_7456);
        assert_eq!(xxh32(b"abc", 0), 0x32D1_53FF);
        assert_eq!(xxh32(&[0u8; 512], 0), 0x32C1_53DE);
        // LZ4 frame header checksum of FLG=0x64, BD=0x40 is 0xA7.
        assert_eq!((xxh32(&[0x64, 0x40], 0) >> 8) & 0xff, 0xA7);
    }
}
