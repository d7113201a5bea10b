//! The few C library calls the binary needs, without extra crates: SIGINT/SIGTERM counting
//! (the handler bumps an atomic and writes a byte to a pipe, so a waiting thread sleeps
//! until a signal instead of looking every few milliseconds), `kill` to forward signals to
//! an `-exec` child, and `isatty`.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::Duration;

static RECEIVED: AtomicUsize = AtomicUsize::new(0);
static LAST: AtomicUsize = AtomicUsize::new(0);
/// The pipe the handler writes to (-1 until `install`).
static WAKE_WRITE: AtomicI32 = AtomicI32::new(-1);
static WAKE_READ: AtomicI32 = AtomicI32::new(-1);

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;

const O_NONBLOCK: c_int = 0o4000;
const O_CLOEXEC: c_int = 0o2000000;
extern "C" {
    fn signal(signum: c_int, handler: usize) -> usize;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn isatty(fd: c_int) -> c_int;
    fn pipe2(fds: *mut c_int, flags: c_int) -> c_int;
    fn write(fd: c_int, buf: *const c_void, count: usize) -> isize;
    fn read(fd: c_int, buf: *mut c_void, count: usize) -> isize;
}

/// Asks process `pid` to stop with SIGTERM (whichever signal we received).
pub(crate) fn terminate(pid: u32) {
    // SAFETY: kill(2) with a child's pid and a valid signal number.
    unsafe {
        kill(pid as c_int, SIGTERM);
    }
}

/// True if standard error is a terminal.
pub(crate) fn stderr_is_terminal() -> bool {
    // SAFETY: isatty(3) on a file descriptor number has no memory effects.
    unsafe { isatty(2) == 1 }
}

extern "C" fn on_signal(sig: c_int) {
    LAST.store(sig as usize, Ordering::SeqCst);
    RECEIVED.fetch_add(1, Ordering::SeqCst);
    let fd = WAKE_WRITE.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; one byte from a live local into a
        // non-blocking pipe (a full pipe already wakes its reader).
        unsafe {
            write(fd, (&byte as *const u8).cast(), 1);
        }
    }
}

/// Installs the handler for SIGINT and SIGTERM.
pub(crate) fn install() {
    let mut fds: [c_int; 2] = [-1, -1];
    // SAFETY: pipe2(2) fills the two descriptors of a live array.
    if unsafe { pipe2(fds.as_mut_ptr(), O_NONBLOCK | O_CLOEXEC) } == 0 {
        WAKE_READ.store(fds[0], Ordering::SeqCst);
        WAKE_WRITE.store(fds[1], Ordering::SeqCst);
    }
    // SAFETY: `signal` is the C library function; the handler is async-signal-safe (it
    // only touches atomics and write(2)) and has the C ABI.
    unsafe {
        signal(SIGINT, on_signal as extern "C" fn(c_int) as usize);
        signal(SIGTERM, on_signal as extern "C" fn(c_int) as usize);
    }
}

/// Caps glibc's malloc at two arenas. By default every thread that allocates may get an
/// arena of its own (up to eight per core), and a daemon with a thread per database keeps
/// each one's free pages: about 2 MiB of a hundred databases' 22 MiB. The process is ours
/// (the library never does this to its host). Elsewhere a no-op.
pub(crate) fn fewer_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: c_int, value: c_int) -> c_int;
        }
        const M_ARENA_MAX: c_int = -8;
        // SAFETY: mallopt only sets an allocator parameter; called before our threads
        // start.
        unsafe {
            mallopt(M_ARENA_MAX, 2);
        }
    }
}

/// Sleeps until a signal arrives (after `install`) or `timeout` passes; `None` waits for
/// a signal only. Without the pipe, sleeps at most 50 ms.
pub(crate) fn sleep_until_signal(timeout: Option<Duration>) {
    let fd = WAKE_READ.load(Ordering::SeqCst);
    if fd < 0 {
        std::thread::sleep(
            timeout
                .unwrap_or(Duration::MAX)
                .min(Duration::from_millis(50)),
        );
        return;
    }
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as c_int);
    wait_and_drain(fd, ms);
}

/// Waits up to `timeout_ms` (-1: for ever) for the non-blocking wake-up pipe `fd` to be
/// readable, then reads it empty.
fn wait_and_drain(fd: c_int, timeout_ms: c_int) {
    if !crate::sys::wait_readable(fd, timeout_ms) {
        return;
    }
    let mut buf = [0u8; 64];
    // SAFETY: reads at most buf.len() bytes into buf (a non-blocking descriptor).
    while unsafe { read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

/// Number of signals received so far.
pub(crate) fn count() -> usize {
    RECEIVED.load(Ordering::SeqCst)
}

/// Name of the last signal received.
pub(crate) fn last_name() -> &'static str {
    match LAST.load(Ordering::SeqCst) as c_int {
        SIGINT => "interrupt",
        SIGTERM => "terminated",
        _ => "signal",
    }
}
