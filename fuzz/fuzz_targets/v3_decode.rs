//! Litestream v0.3 backups: the LZ4 frame decoder over arbitrary bytes, and the same bytes
//! read as object paths listed and planned; errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    litestream::fuzz_api::v3_decode(data);
});
