//! `liblitestream_vfs.so`: a loadable SQLite extension that registers the read-only VFS
//! `litestream` in the host's SQLite (Python's `sqlite3`, the `sqlite3` shell, ...).
//!
//! ```text
//! sqlite3> .load ./liblitestream_vfs
//! sqlite3> .open file:app.db?vfs=litestream&replica_url=s3://bucket/app.db
//! sqlite3> PRAGMA litestream_txid;
//! ```
//!
//! Each database's replica and options come from its URI (`replica_url`,
//! `poll_interval`, `cache_size`, `read_ahead`, `cache_dir`, `miss_timeout`), else from the
//! environment the official extension reads (`LITESTREAM_REPLICA_URL`, the backends'
//! credentials, `LITESTREAM_LOG_LEVEL`); see `litestream::vfs::resolve`. Every connection made after
//! loading gets the SQL functions `litestream_txid()`, `litestream_lag()` and
//! `litestream_time()`.
//!
//! All SQLite calls go through the routines table SQLite hands the entry point
//! (libsqlite3-sys `loadable_extension`); this crate links no SQLite of its own.
#![allow(unsafe_code)] // the extension entry point

use std::ffi::{c_char, c_int};
use std::sync::OnceLock;

use libsqlite3_sys as ffi;

/// Logs to stderr at `LITESTREAM_LOG_LEVEL` (`error` by default... `debug`, `info`, `warn`).
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) && r.target().starts_with("litestream") {
            // Never `eprintln!`: it panics when stderr fails (a closed pipe, which a host
            // ignoring SIGPIPE sees as EPIPE), and a panic in SQLite's callbacks aborts
            // the host process.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "litestream-vfs {} {}",
                r.level(),
                r.args()
            );
        }
    }
    fn flush(&self) {}
}

fn init_logging() {
    let level = match std::env::var("LITESTREAM_LOG_LEVEL")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "debug" | "trace" => log::LevelFilter::Debug,
        "info" => log::LevelFilter::Info,
        "warn" | "warning" => log::LevelFilter::Warn,
        _ => log::LevelFilter::Error,
    };
    if log::set_logger(&StderrLog).is_ok() {
        log::set_max_level(level);
    }
}

/// The first SQLite version whose routines table this extension may read whole; older
/// hosts have a shorter table, of which only their part is copied (fields they lack stay
/// NULL, and this extension calls none of them).
fn copy_len(host: c_int) -> Option<usize> {
    use std::mem::offset_of;
    type R = ffi::sqlite3_api_routines;
    Some(match host {
        ..3_038_000 => return None,
        3_038_000..3_039_000 => offset_of!(R, deserialize),
        3_039_000..3_040_000 => offset_of!(R, value_encoding),
        3_040_000..3_041_000 => offset_of!(R, is_interrupted),
        3_041_000..3_043_000 => offset_of!(R, stmt_explain),
        3_043_000..3_044_000 => offset_of!(R, get_clientdata),
        _ => std::mem::size_of::<R>(),
    })
}

/// Binds libsqlite3-sys's calls to the host's routines. libsqlite3-sys refuses a host
/// older than the headers it was generated from (3.45.3), although every routine this
/// extension calls is much older: the host's part of the table is copied and its version
/// routine answers the headers' version.
///
/// # Safety
/// `api` is the routines table SQLite passed to the entry point.
unsafe fn bind_api(api: *const ffi::sqlite3_api_routines) -> Result<(), String> {
    unsafe extern "C" fn headers_version() -> c_int {
        ffi::SQLITE_VERSION_NUMBER
    }
    // SAFETY: a table SQLite passed; libversion_number is one of its first fields.
    let host = match unsafe { (*api).libversion_number } {
        // SAFETY: SQLite's own function.
        Some(f) => unsafe { f() },
        None => return Err("SQLite passed no routines table".into()),
    };
    let len = copy_len(host).ok_or_else(|| {
        format!("litestream-vfs needs SQLite 3.38 or newer; this process runs {host}")
    })?;
    // SAFETY: all-zero is a valid table (every routine None).
    let mut table: Box<ffi::sqlite3_api_routines> = Box::new(unsafe { std::mem::zeroed() });
    // SAFETY: the host's table holds at least `len` bytes of the same layout (fields
    // are only ever appended, by version).
    unsafe {
        std::ptr::copy_nonoverlapping(
            api as *const u8,
            &mut *table as *mut ffi::sqlite3_api_routines as *mut u8,
            len,
        );
    }
    table.libversion_number = Some(headers_version);
    // The table must outlive every call: libsqlite3-sys keeps the function pointers only,
    // but keep it anyway for the process's life.
    let table = Box::leak(table);
    // SAFETY: a complete routines table.
    unsafe { ffi::rusqlite_extension_init2(table) }.map_err(|e| e.to_string())
}

/// Registers the SQL functions on every connection opened after loading.
unsafe extern "C" fn auto_functions(
    db: *mut ffi::sqlite3,
    _err: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: SQLite passes an open connection.
    unsafe { litestream::vfs::register_functions(db) }
}

/// The entry point SQLite derives from `liblitestream_vfs.so` (and from the official
/// `litestream-vfs.so`): binds to the host's SQLite, registers the VFS `litestream`
/// (once per process) and the SQL functions, and stays loaded.
///
/// # Safety
/// Called by SQLite's extension loader with its own arguments.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_litestreamvfs_init(
    db: *mut ffi::sqlite3,
    err: *mut *mut c_char,
    api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    let r = INIT.get_or_init(|| {
        init_logging();
        // SAFETY: `api` is the loader's routines table.
        unsafe { bind_api(api) }?;
        litestream::vfs::register_configurable("litestream").map_err(|e| e.to_string())?;
        type Entry = unsafe extern "C" fn();
        // SAFETY: SQLite calls the auto extension with (db, err, api), the signature
        // `auto_functions` has; the registry takes it as a generic function pointer.
        let entry: Entry = unsafe {
            std::mem::transmute::<
                unsafe extern "C" fn(
                    *mut ffi::sqlite3,
                    *mut *mut c_char,
                    *const ffi::sqlite3_api_routines,
                ) -> c_int,
                Entry,
            >(auto_functions)
        };
        // SAFETY: a function that lives as long as the process (the extension stays).
        match unsafe { ffi::sqlite3_auto_extension(Some(entry)) } {
            ffi::SQLITE_OK => Ok(()),
            rc => Err(format!("sqlite3_auto_extension failed: {rc}")),
        }
    });
    let r = match r {
        // SAFETY: the loading connection is open.
        Ok(()) => match unsafe { litestream::vfs::register_functions(db) } {
            ffi::SQLITE_OK => Ok(()),
            rc => Err(format!(
                "registering the litestream SQL functions failed: {rc}"
            )),
        },
        Err(e) => Err(e.clone()),
    };
    match r {
        Ok(()) => ffi::SQLITE_OK_LOAD_PERMANENTLY,
        Err(m) => {
            // SAFETY: `err` is the loader's message slot, freed with sqlite3_free; the
            // allocation goes through the host's table directly (it may be unbound).
            unsafe {
                if let (false, Some(malloc)) = (err.is_null(), (*api).malloc) {
                    let p = malloc(m.len() as c_int + 1) as *mut u8;
                    if !p.is_null() {
                        std::ptr::copy_nonoverlapping(m.as_ptr(), p, m.len());
                        *p.add(m.len()) = 0;
                        *err = p as *mut c_char;
                    }
                }
            }
            ffi::SQLITE_ERROR
        }
    }
}
