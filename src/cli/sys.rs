//! The few C library calls the binary needs, without extra crates: SIGINT/SIGTERM counting
//! (the handler only bumps an atomic), `kill` to forward signals to an `-exec` child, and
//! `isatty`.

use std::ffi::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};

static RECEIVED: AtomicUsize = AtomicUsize::new(0);
static LAST: AtomicUsize = AtomicUsize::new(0);

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;

extern "C" {
    fn signal(signum: c_int, handler: usize) -> usize;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn isatty(fd: c_int) -> c_int;
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
}

/// Installs the handler for SIGINT and SIGTERM.
pub(crate) fn install() {
    // SAFETY: `signal` is the C library function; the handler is async-signal-safe (it
    // only touches atomics) and has the C ABI.
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
