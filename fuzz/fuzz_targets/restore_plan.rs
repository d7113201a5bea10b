//! The restore planner over arbitrary replica listings: it never panics, and every plan it
//! returns starts at TXID 1, is contiguous, and respects the TXID target.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use litestream::client::FileInfo;
use litestream::restore::plan_files;
use litestream::Txid;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let target = match data[0] % 3 {
        0 => None,
        _ => Some(Txid(data[1] as u64)),
    };
    let ts = if data[0] % 5 == 4 {
        Some(UNIX_EPOCH + Duration::from_secs(data[1] as u64))
    } else {
        None
    };
    let target = if ts.is_some() { None } else { target };
    let listing: Vec<FileInfo> = data[2..]
        .chunks_exact(4)
        .map(|c| {
            let min = (c[1] % 64) as u64;
            FileInfo {
                level: c[0] % 11,
                min_txid: Txid(min),
                max_txid: Txid(min + (c[2] % 16) as u64),
                size: 100 + c[3] as u64,
                created_at: UNIX_EPOCH + Duration::from_secs(c[3] as u64),
            }
        })
        .collect();
    let Ok(plan) = plan_files(&listing, target, ts) else { return };
    assert!(!plan.is_empty());
    assert_eq!(plan[0].min_txid, Txid(1));
    let mut cur = Txid(0);
    for f in &plan {
        assert!(listing.contains(f));
        assert!(f.min_txid.0 <= cur.0 + 1 && f.max_txid > cur, "{plan:?}");
        cur = f.max_txid;
        if let Some(ts) = ts {
            assert!(f.created_at < ts);
        }
    }
    if let Some(t) = target {
        assert_eq!(cur, t);
    }
});
