//! Stable-toolchain companion of the cargo-fuzz targets in `fuzz/`: thousands of mutated LTX
//! files and random replica listings; decoding and planning must error, never panic, and
//! plans must be valid chains.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::Rng;
use litestream::client::FileInfo;
use litestream::ltx::{Decoder, Encoder, Header, PageEncoding, Txid, HEADER_FLAG_NO_CHECKSUM};
use litestream::restore::plan_files;

fn sample(enc: PageEncoding, snapshot: bool, rng: &mut Rng) -> Vec<u8> {
    let h = Header {
        flags: HEADER_FLAG_NO_CHECKSUM,
        page_size: 512,
        commit: 6,
        min_txid: Txid(if snapshot { 1 } else { 4 }),
        max_txid: Txid(7),
        timestamp: 1,
        ..Header::default()
    };
    let mut e = Encoder::new(Vec::new(), &h, enc).unwrap();
    let pgnos: Vec<u32> = if snapshot {
        (1..=6).collect()
    } else {
        vec![2, 5, 6]
    };
    for p in pgnos {
        let mut page = vec![(p * 3) as u8; 512];
        for b in page.iter_mut().step_by(5) {
            *b = rng.next() as u8;
        }
        e.write_page(p, &page).unwrap();
    }
    e.finish().unwrap().0
}

fn decode(data: &[u8]) -> bool {
    let Ok(mut d) = Decoder::new(data) else {
        return false;
    };
    let mut buf = vec![0u8; d.header().page_size as usize];
    let mut n = 0;
    loop {
        match d.next_page(&mut buf) {
            Ok(Some(_)) => n += 1,
            Ok(None) => break,
            Err(_) => return false,
        }
        assert!(n <= 100_000);
    }
    d.finish().is_ok()
}

#[test]
fn mutated_ltx_files_never_panic() {
    let mut rng = Rng::new(42);
    for round in 0..4000 {
        let enc = if round % 2 == 0 {
            PageEncoding::Frame
        } else {
            PageEncoding::Block
        };
        let mut data = sample(enc, round % 3 != 0, &mut rng);
        assert!(decode(&data));
        for _ in 0..(1 + rng.below(4)) {
            if data.is_empty() {
                break;
            }
            match rng.below(4) {
                0 => {
                    let i = rng.below(data.len() as u64) as usize;
                    data[i] ^= 1 << rng.below(8);
                }
                1 => {
                    let i = rng.below(data.len() as u64) as usize;
                    data[i] = rng.next() as u8;
                }
                2 => data.truncate(rng.below(data.len() as u64) as usize),
                _ => {
                    let i = rng.below(data.len() as u64 + 1) as usize;
                    let n = 1 + rng.below(8) as usize;
                    let extra = rng.bytes(n);
                    data.splice(i..i, extra);
                }
            }
        }
        let _ = decode(&data);
    }
}

#[test]
fn random_listings_plan_valid_chains() {
    let mut rng = Rng::new(9);
    for _ in 0..20_000 {
        let n = rng.below(24) as usize;
        let listing: Vec<FileInfo> = (0..n)
            .map(|_| {
                let min = rng.below(40);
                FileInfo {
                    level: rng.below(11) as u8,
                    min_txid: Txid(min),
                    max_txid: Txid(min + rng.below(12)),
                    size: 200,
                    created_at: UNIX_EPOCH + Duration::from_secs(rng.below(100)),
                }
            })
            .collect();
        let (txid, ts) = match rng.below(3) {
            0 => (None, None),
            1 => (Some(Txid(rng.below(50))), None),
            _ => (None, Some(UNIX_EPOCH + Duration::from_secs(rng.below(120)))),
        };
        let Ok(plan) = plan_files(&listing, txid, ts) else {
            continue;
        };
        assert_eq!(plan[0].min_txid, Txid(1), "{listing:?} -> {plan:?}");
        let mut cur = 0;
        for f in &plan {
            assert!(
                f.min_txid.0 <= cur + 1 && f.max_txid.0 > cur,
                "{listing:?} -> {plan:?}"
            );
            cur = f.max_txid.0;
            if let Some(ts) = ts {
                assert!(f.created_at < ts);
            }
        }
        if let Some(t) = txid {
            assert_eq!(cur, t.0);
        }
        if txid.is_none() && ts.is_none() {
            // The latest restore is maximal: no file of levels 0..=8 could extend it.
            let extends = listing.iter().find(|f| {
                f.level <= 8
                    && f.min_txid.0 >= 1
                    && f.min_txid <= f.max_txid
                    && f.min_txid.0 <= cur + 1
                    && f.max_txid.0 > cur
            });
            assert!(
                extends.is_none(),
                "{listing:?} -> {plan:?} could extend with {extends:?}"
            );
        }
    }
}
