//! The LTX decoder over arbitrary bytes: it must return an error, never panic, loop or
//! allocate without bound; what it accepts must re-encode and decode to the same pages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use litestream::ltx::{Decoder, Encoder, PageEncoding};

fuzz_target!(|data: &[u8]| {
    let Ok(mut d) = Decoder::new(data) else { return };
    let h = d.header().clone();
    let mut buf = vec![0u8; h.page_size as usize];
    let mut pages = Vec::new();
    loop {
        match d.next_page(&mut buf) {
            Ok(Some(p)) => pages.push((p, buf.clone())),
            Ok(None) => break,
            Err(_) => return,
        }
        if pages.len() > 4096 {
            return;
        }
    }
    if d.finish().is_err() {
        return;
    }
    // Accepted: a re-encoding must decode to the same pages (when it is encodable at all:
    // a decoder accepts some files our encoder refuses to write, e.g. partial snapshots).
    let Ok(mut e) = Encoder::new(Vec::new(), &h, PageEncoding::Block) else { return };
    for (p, b) in &pages {
        if e.write_page(*p, b).is_err() {
            return;
        }
    }
    let Ok((out, _)) = e.finish() else { return };
    let mut d2 = Decoder::new(&out[..]).expect("re-encoded header");
    for (p, b) in &pages {
        assert_eq!(d2.next_page(&mut buf).expect("re-encoded page"), Some(*p));
        assert_eq!(&buf, b);
    }
    assert_eq!(d2.next_page(&mut buf).expect("end"), None);
    d2.finish().expect("re-encoded checksum");
});
