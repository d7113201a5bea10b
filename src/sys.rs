//! The C library calls the library makes itself, without extra crates (the binary's own
//! are in `cli::sys`): starting writeback of a file range.

use std::fs::File;

/// Starts writing a range of `f` out to disk without waiting for it (Linux
/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`; nothing elsewhere). Used on the WAL as its
/// frames are copied, so a fast writer's dirty pages do not pile up for a later fsync (a
/// checkpoint's, under the write barrier) to wait for. Best effort: errors are ignored.
pub(crate) fn start_writeback(f: &File, from: u64, to: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        extern "C" {
            fn sync_file_range(fd: i32, offset: i64, nbytes: i64, flags: u32) -> i32;
        }
        const SYNC_FILE_RANGE_WRITE: u32 = 2;
        if to > from {
            // SAFETY: a plain system call on a descriptor `f` keeps open; no memory is
            // passed.
            unsafe {
                sync_file_range(
                    f.as_raw_fd(),
                    from as i64,
                    (to - from) as i64,
                    SYNC_FILE_RANGE_WRITE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (f, from, to);
}
