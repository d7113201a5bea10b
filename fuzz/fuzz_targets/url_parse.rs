//! Replica URLs, paths and endpoints (from configs and command lines) over
//! arbitrary bytes: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    litestream::fuzz_api::url_parse(data);
});
