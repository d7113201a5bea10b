//! CRC-64/GO-ISO (Go's `hash/crc64` with the ISO table), the checksum LTX uses.
//!
//! Width 64, reflected polynomial `0xD800000000000000`, init and xorout all ones.
//! `check("123456789") == 0xB90956C775A41001`. Slicing-by-8 for speed.

const POLY: u64 = 0xD800_0000_0000_0000;

const fn make_tables() -> [[u64; 256]; 8] {
    let mut t = [[0u64; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut j = 0;
        while j < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            j += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

static TABLES: [[u64; 256]; 8] = make_tables();

/// A streaming CRC-64/GO-ISO hasher.
#[derive(Clone, Debug)]
pub(crate) struct Crc64 {
    state: u64, // inverted running value
}

impl Crc64 {
    pub(crate) fn new() -> Self {
        Crc64 { state: !0 }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        let t = &TABLES;
        let mut crc = self.state;
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let v = crc ^ u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            crc = t[7][(v & 0xff) as usize]
                ^ t[6][((v >> 8) & 0xff) as usize]
                ^ t[5][((v >> 16) & 0xff) as usize]
                ^ t[4][((v >> 24) & 0xff) as usize]
                ^ t[3][((v >> 32) & 0xff) as usize]
                ^ t[2][((v >> 40) & 0xff) as usize]
                ^ t[1][((v >> 48) & 0xff) as usize]
                ^ t[0][(v >> 56) as usize];
        }
        for &b in chunks.remainder() {
            crc = t[0][((crc ^ b as u64) & 0xff) as usize] ^ (crc >> 8);
        }
        self.state = crc;
    }

    pub(crate) fn finish(&self) -> u64 {
        !self.state
    }
}

/// One-shot CRC-64/GO-ISO.
#[cfg(test)]
pub(crate) fn crc64(data: &[u8]) -> u64 {
    let mut h = Crc64::new();
    h.update(data);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bitwise(data: &[u8]) -> u64 {
        let mut crc = !0u64;
        for &b in data {
            crc ^= b as u64;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ POLY
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn check_value() {
        assert_eq!(crc64(b"123456789"), 0xB909_56C7_75A4_1001);
        assert_eq!(crc64(b""), 0);
    }

    #[test]
    fn streaming_matches_bitwise_at_every_split() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let want = bitwise(&data);
        assert_eq!(crc64(&data), want);
        for split in [0, 1, 3, 7, 8, 9, 100, 999, 1000] {
            let mut h = Crc64::new();
            h.update(&data[..split]);
            h.update(&data[split..]);
            assert_eq!(h.finish(), want, "split {split}");
        }
    }
}
