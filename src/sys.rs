//! The C library calls the library makes itself, without extra crates (the binary's own
//! are in `cli::sys`): starting writeback of a file range, copying a file in the kernel.

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

/// Copies all of `src` (from its start; its cursor is left alone) to `dst` at `dst`'s
/// cursor and returns the bytes copied. Linux copies inside the kernel
/// (`copy_file_range`: no trip through user memory, a reflink on filesystems that share
/// blocks); elsewhere, or where the kernel refuses (another filesystem type, an old
/// kernel), positioned reads and writes.
pub(crate) fn copy_file(src: &File, dst: &mut File) -> std::io::Result<u64> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        extern "C" {
            fn copy_file_range(
                fd_in: i32,
                off_in: *mut i64,
                fd_out: i32,
                off_out: *mut i64,
                len: usize,
                flags: u32,
            ) -> isize;
        }
        let mut off: i64 = 0;
        loop {
            // SAFETY: two descriptors kept open by their `File`s; `off` is a live i64 the
            // call reads and advances; a null `off_out` means dst's own cursor.
            let n = unsafe {
                copy_file_range(
                    src.as_raw_fd(),
                    &mut off,
                    dst.as_raw_fd(),
                    std::ptr::null_mut(),
                    1 << 30,
                    0,
                )
            };
            if n == 0 {
                return Ok(off as u64);
            }
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(4) => continue, // EINTR
                    // Nothing copied yet and the kernel cannot: copy by hand.
                    Some(18 | 22 | 38 | 95 | 1) if off == 0 => break, // EXDEV EINVAL ENOSYS EOPNOTSUPP EPERM
                    _ => return Err(e),
                }
            }
        }
    }
    let mut reader = crate::client::ReadAt::new(src);
    std::io::copy(&mut reader, dst)
}
