//! The C library calls the library makes itself, without extra crates (the binary's own
//! are in `cli::sys`): starting writeback of a file range, copying a file in the kernel,
//! and inotify (a database watched at `monitor-interval: 0`, and `watch: true`
//! directories).

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
    let mut reader = crate::durable::ReadAt::new(src);
    std::io::copy(&mut reader, dst)
}

/// Waits up to `timeout_ms` (-1: for ever) for descriptor `fd` to be readable; false on
/// a timeout, a signal or an error (callers look again on their own schedule).
#[cfg(unix)]
pub(crate) fn wait_readable(fd: std::ffi::c_int, timeout_ms: std::ffi::c_int) -> bool {
    use std::ffi::c_int;
    #[repr(C)]
    struct PollFd {
        fd: c_int,
        events: i16,
        revents: i16,
    }
    extern "C" {
        fn poll(fds: *mut PollFd, nfds: u64, timeout: c_int) -> c_int;
    }
    const POLLIN: i16 = 1;
    let mut p = PollFd {
        fd,
        events: POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { poll(&mut p, 1, timeout_ms) > 0 }
}

/// An inotify instance (Linux) watching directories; closed when dropped.
#[cfg(target_os = "linux")]
pub(crate) struct Inotify(std::ffi::c_int);

#[cfg(target_os = "linux")]
mod inotify_ffi {
    use std::ffi::{c_char, c_int, c_void};

    pub const IN_CLOEXEC: c_int = 0o2000000;
    pub const IN_NONBLOCK: c_int = 0o4000;
    extern "C" {
        pub fn inotify_init1(flags: c_int) -> c_int;
        pub fn inotify_add_watch(fd: c_int, path: *const c_char, mask: u32) -> c_int;
        pub fn inotify_rm_watch(fd: c_int, wd: c_int) -> c_int;
        pub fn read(fd: c_int, buf: *mut c_void, count: usize) -> isize;
        pub fn close(fd: c_int) -> c_int;
    }
}

#[cfg(target_os = "linux")]
impl Inotify {
    /// A file in a watched directory was written.
    pub(crate) const MODIFY: u32 = 0x2;
    /// An entry's metadata (its mode, say) changed.
    #[cfg(test)]
    pub(crate) const ATTRIB: u32 = 0x4;
    /// An entry was moved out of a watched directory.
    pub(crate) const MOVED_FROM: u32 = 0x40;
    /// An entry was moved into a watched directory.
    pub(crate) const MOVED_TO: u32 = 0x80;
    /// An entry was created in a watched directory.
    pub(crate) const CREATE: u32 = 0x100;
    /// An entry was deleted from a watched directory.
    pub(crate) const DELETE: u32 = 0x200;
    /// The watched directory itself was deleted.
    pub(crate) const DELETE_SELF: u32 = 0x400;
    /// The watched directory itself was moved (renamed away).
    pub(crate) const MOVE_SELF: u32 = 0x800;
    /// The watch is gone (its directory deleted, or unwatched); always reported.
    pub(crate) const IGNORED: u32 = 0x8000;

    /// A new, non-blocking instance.
    pub(crate) fn new() -> crate::error::Result<Inotify> {
        // SAFETY: inotify_init1 takes flags and returns a new descriptor or -1.
        let fd = unsafe {
            inotify_ffi::inotify_init1(inotify_ffi::IN_CLOEXEC | inotify_ffi::IN_NONBLOCK)
        };
        if fd < 0 {
            return Err(crate::error::Error::io(
                "inotify_init1",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Inotify(fd))
    }

    /// Watches `dir` for the events of `mask`; returns the watch's descriptor.
    pub(crate) fn watch(&self, dir: &std::path::Path, mask: u32) -> crate::error::Result<i32> {
        use crate::error::Error;
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| Error::Invalid(format!("{}: path has a NUL byte", dir.display())))?;
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        let wd = unsafe { inotify_ffi::inotify_add_watch(self.0, c.as_ptr(), mask) };
        if wd < 0 {
            return Err(Error::io(
                format!("watch {}", dir.display()),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(wd)
    }

    /// Removes a watch; a thread waiting on this instance wakes with an event of no name.
    pub(crate) fn unwatch(&self, wd: i32) {
        // SAFETY: a plain call on the descriptor this value owns; a stale `wd` is refused.
        unsafe {
            inotify_ffi::inotify_rm_watch(self.0, wd);
        }
    }

    /// Waits up to `timeout` (at most a minute) for events and drains them, calling
    /// `seen` with the watch descriptor, the mask and the name of each (the name is empty
    /// for the directory itself, or when the kernel's queue overflowed and names were
    /// lost); true if there were any.
    pub(crate) fn wait(
        &self,
        timeout: std::time::Duration,
        mut seen: impl FnMut(i32, u32, &[u8]),
    ) -> bool {
        if !wait_readable(self.0, timeout.as_millis().min(60_000) as i32) {
            return false;
        }
        // Events are `struct inotify_event` (wd, mask, cookie, len: four 32-bit words),
        // then `len` bytes of NUL-padded name; read here field by field, so the buffer
        // needs no alignment.
        let mut buf = [0u8; 4096];
        let mut any = false;
        loop {
            // SAFETY: reads at most `buf.len()` bytes into `buf` (a non-blocking descriptor).
            let got = unsafe { inotify_ffi::read(self.0, buf.as_mut_ptr().cast(), buf.len()) };
            if got <= 0 {
                return any;
            }
            any = true;
            let bytes = &buf[..(got as usize).min(buf.len())];
            let end = bytes.len();
            let mut at = 0usize;
            while at + 16 <= end {
                let word = |i: usize| {
                    u32::from_ne_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]])
                };
                let (wd, mask, len) = (word(at) as i32, word(at + 4), word(at + 12) as usize);
                let name = bytes.get(at + 16..(at + 16 + len).min(end)).unwrap_or(&[]);
                // The name is NUL-padded.
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                seen(wd, mask, name);
                at += 16 + len;
            }
        }
    }
}

#[cfg(target_os = "linux")]
impl Drop for Inotify {
    fn drop(&mut self) {
        // SAFETY: closes the descriptor this value owns, once.
        unsafe {
            inotify_ffi::close(self.0);
        }
    }
}
