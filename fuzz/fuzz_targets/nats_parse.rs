//! The NATS client's parsers (protocol lines, header status, JetStream API answers and
//! object metadata all come from the network) over arbitrary bytes: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    litestream::fuzz_api::nats_parse(data);
});
