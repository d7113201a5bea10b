//! The XML reader (S3, Azure and WebDAV answers come from the network) over
//! arbitrary bytes: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    litestream::fuzz_api::xml_parse(data);
});
