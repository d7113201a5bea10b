//! The WAL reader over arbitrary bytes (a damaged or foreign `-wal` file): it must stop at
//! the first invalid frame and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    litestream::fuzz_api::wal_scan(data);
});
