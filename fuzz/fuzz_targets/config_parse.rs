//! The `litestream.yml` reader (hand-written YAML subset) over arbitrary text: errors,
//! never panics or runaway recursion.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    litestream::fuzz_api::config_parse(data);
});
