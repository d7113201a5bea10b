//! The JSON reader (GCS listings, OAuth token answers come from the network) over
//! arbitrary bytes: errors, never panics or runaway recursion.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    litestream::fuzz_api::json_parse(data);
});
