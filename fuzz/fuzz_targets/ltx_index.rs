//! The LTX random-access readers the VFS uses on fetched bytes — the tail's index size,
//! the page index, one page frame decoded alone — over arbitrary bytes: errors, never a
//! panic; every entry they accept lies inside the page area.
#![no_main]

use libfuzzer_sys::fuzz_target;
use litestream::ltx::{
    decode_page_frame, index_area_size, parse_page_index, Header, Txid, HEADER_FLAG_NO_CHECKSUM,
    INDEX_TAIL_SIZE,
};

fuzz_target!(|data: &[u8]| {
    let h = Header {
        flags: HEADER_FLAG_NO_CHECKSUM,
        page_size: 512,
        commit: 4096,
        min_txid: Txid(1),
        max_txid: Txid(1),
        timestamp: 1,
        ..Header::default()
    };
    let size = data.len() as u64;
    if let Ok(n) = index_area_size(data, size) {
        let start = size - INDEX_TAIL_SIZE as u64 - n;
        let area = &data[start as usize..data.len() - INDEX_TAIL_SIZE];
        if let Ok(idx) = parse_page_index(area, start, &h) {
            let mut buf = vec![0u8; 512];
            let mut scratch = Vec::new();
            for e in idx {
                assert!(e.offset + e.size as u64 <= start);
                let frame = &data[e.offset as usize..(e.offset + e.size as u64) as usize];
                let _ = decode_page_frame(frame, &mut buf, &mut scratch);
            }
        }
    }
    let mut buf = vec![0u8; 512];
    let _ = decode_page_frame(data, &mut buf, &mut Vec::new());
});
