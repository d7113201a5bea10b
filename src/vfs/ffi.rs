//! The SQLite C interface of the VFS: the `sqlite3_vfs` and `sqlite3_io_methods` tables,
//! their callbacks (each a thin shim over `Conn`), and the `litestream_*()` SQL functions.
//!
//! Safety contract, shared by every callback: SQLite calls them with the pointers it was
//! given (`sqlite3_vfs` whose `pAppData` is our leaked `VfsData`; `sqlite3_file`s of at
//! least `szOsFile` bytes that `x_open` initialised) and serialises calls on one file.
//! Files other than main databases (temp files, statement journals) are opened by the
//! default VFS in the same memory and never reach our io methods. Nothing here unwinds
//! into C: every Rust callback catches panics.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;

use libsqlite3_sys as ffi;

use super::conn::{Conn, PragmaAnswer};
use super::reader::ReplicaReader;
use super::UriParams;
use crate::error::{Error, Result};

/// How a VFS finds the replica of a database it opens.
pub(crate) type Resolver = dyn Fn(&UriParams<'_>) -> Result<Arc<ReplicaReader>> + Send + Sync;

/// `pAppData` of our VFSes.
struct VfsData {
    /// The default VFS at registration: temp files, randomness, time, sleep.
    parent: *mut ffi::sqlite3_vfs,
    resolve: Box<Resolver>,
}

/// Our part of an open main database file.
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    conn: *mut Conn,
}

/// Registers a VFS named `name` (never the default) whose databases come from `resolve`.
pub(crate) fn register(name: &str, resolve: Box<Resolver>) -> Result<()> {
    let cname = CString::new(name)
        .map_err(|_| Error::Invalid(format!("VFS name {name:?} contains a NUL byte")))?;
    // SAFETY: sqlite3_vfs_find takes a NUL-terminated name (or NULL for the default).
    let parent = unsafe { ffi::sqlite3_vfs_find(ptr::null()) };
    // SAFETY: as above.
    if parent.is_null() || !unsafe { ffi::sqlite3_vfs_find(cname.as_ptr()) }.is_null() {
        return Err(Error::Invalid(if parent.is_null() {
            "SQLite has no default VFS to delegate temp files to".into()
        } else {
            format!("a SQLite VFS named {name:?} is already registered in this process")
        }));
    }
    // SAFETY: the default VFS lives as long as the process.
    let (parent_size, mx_path) = unsafe { ((*parent).szOsFile, (*parent).mxPathname) };
    let data = Box::into_raw(Box::new(VfsData { parent, resolve }));
    let vfs = Box::new(ffi::sqlite3_vfs {
        iVersion: 2,
        szOsFile: parent_size.max(std::mem::size_of::<File>() as c_int),
        mxPathname: mx_path.max(512),
        pNext: ptr::null_mut(),
        zName: cname.into_raw(),
        pAppData: data as *mut c_void,
        xOpen: Some(x_open),
        xDelete: Some(x_delete),
        xAccess: Some(x_access),
        xFullPathname: Some(x_full_pathname),
        xDlOpen: Some(x_dl_open),
        xDlError: Some(x_dl_error),
        xDlSym: Some(x_dl_sym),
        xDlClose: Some(x_dl_close),
        xRandomness: Some(x_randomness),
        xSleep: Some(x_sleep),
        xCurrentTime: Some(x_current_time),
        xGetLastError: Some(x_get_last_error),
        xCurrentTimeInt64: Some(x_current_time_int64),
        xSetSystemCall: None,
        xGetSystemCall: None,
        xNextSystemCall: None,
    });
    // The VFS must outlive every connection: it is leaked on purpose (one per name).
    let vfs = Box::into_raw(vfs);
    // SAFETY: `vfs` is a complete, leaked sqlite3_vfs.
    let rc = unsafe { ffi::sqlite3_vfs_register(vfs, 0) };
    if rc != ffi::SQLITE_OK {
        return Err(Error::Sqlite {
            context: format!("register the VFS {name:?}"),
            code: rc,
            message: "sqlite3_vfs_register failed".into(),
        });
    }
    Ok(())
}

static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// Runs `f`, turning a panic into `err` (a panic must not cross into C).
fn guard<T>(err: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(err)
}

/// SAFETY: `vfs` is one of ours.
unsafe fn data<'a>(vfs: *mut ffi::sqlite3_vfs) -> &'a VfsData {
    // SAFETY: pAppData was set to a leaked VfsData at registration.
    unsafe { &*((*vfs).pAppData as *const VfsData) }
}

/// SAFETY: `f` is a file x_open gave our io methods; SQLite serialises calls on it.
unsafe fn conn<'a>(f: *mut ffi::sqlite3_file) -> &'a mut Conn {
    // SAFETY: x_open stored a live Box<Conn> there; x_close frees it last.
    unsafe { &mut *(*(f as *mut File)).conn }
}

/// SAFETY: `s` is NULL or a NUL-terminated string.
unsafe fn text<'a>(s: *const c_char) -> Option<&'a str> {
    // SAFETY: see above.
    (!s.is_null())
        .then(|| unsafe { CStr::from_ptr(s) }.to_str().ok())
        .flatten()
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: callback contract (module docs).
    let d = unsafe { data(vfs) };
    if flags & ffi::SQLITE_OPEN_MAIN_DB == 0 {
        // Temp files and journals of temp databases: the default VFS, in this memory.
        // SAFETY: szOsFile covers the parent's file size.
        return unsafe {
            match (*d.parent).xOpen {
                Some(open) => open(d.parent, name, file, flags, out_flags),
                None => ffi::SQLITE_CANTOPEN,
            }
        };
    }
    // SAFETY: `file` has szOsFile bytes; NULL methods tell SQLite not to close it.
    unsafe { (*file).pMethods = ptr::null() };
    let opened = guard(Err(Error::State("panic in the VFS open".into())), || {
        let get = |key: &str| -> Option<String> {
            let k = CString::new(key).ok()?;
            // SAFETY: `name` is the main database's filename as SQLite passed it, which
            // sqlite3_uri_parameter accepts.
            let v = unsafe { ffi::sqlite3_uri_parameter(name, k.as_ptr()) };
            // SAFETY: NULL or a NUL-terminated string inside `name`.
            unsafe { text(v) }.map(str::to_string)
        };
        (d.resolve)(&UriParams { get: &get })
    });
    match opened {
        Ok(reader) => {
            let c = Box::into_raw(Box::new(Conn::new(reader)));
            // SAFETY: `file` has room for a File (szOsFile >= size_of::<File>()).
            unsafe {
                let f = file as *mut File;
                (*f).conn = c;
                (*f).base.pMethods = &IO_METHODS;
                // Opened as asked: a connection that asked to write is refused at its
                // first write lock (`x_lock`), which says why in the log; a file
                // reported read-only here would fail the write inside SQLite, unseen.
                if !out_flags.is_null() {
                    *out_flags = flags;
                }
            }
            ffi::SQLITE_OK
        }
        Err(e) => {
            // SAFETY: NULL or NUL-terminated.
            let n = unsafe { text(name) }.unwrap_or("?");
            guard((), || log::error!("litestream vfs: open {n}: {e}"));
            ffi::SQLITE_CANTOPEN
        }
    }
}

/// True for the side files of a rollback or WAL database, which a replica never has.
fn side_file(name: &str) -> bool {
    name.ends_with("-journal") || name.ends_with("-wal") || name.ends_with("-shm")
}

unsafe extern "C" fn x_delete(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync: c_int,
) -> c_int {
    // SAFETY: callback contract; NULL or NUL-terminated name.
    let (d, n) = unsafe { (data(vfs), text(name)) };
    if n.is_some_and(side_file) {
        return ffi::SQLITE_OK;
    }
    // SAFETY: the parent VFS's own entry point with our arguments.
    unsafe {
        (*d.parent)
            .xDelete
            .map_or(ffi::SQLITE_OK, |f| f(d.parent, name, sync))
    }
}

unsafe extern "C" fn x_access(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    // SAFETY: callback contract; NULL or NUL-terminated name.
    let (d, n) = unsafe { (data(vfs), text(name)) };
    if n.is_some_and(side_file) {
        // SAFETY: `out` is SQLite's result slot.
        unsafe { *out = 0 };
        return ffi::SQLITE_OK;
    }
    // SAFETY: the parent VFS's own entry point.
    unsafe {
        (*d.parent)
            .xAccess
            .map_or(ffi::SQLITE_ERROR, |f| f(d.parent, name, flags, out))
    }
}

unsafe extern "C" fn x_full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n_out: c_int,
    out: *mut c_char,
) -> c_int {
    // A replica database's name is only a key: kept as given.
    // SAFETY: NUL-terminated name; `out` has n_out bytes.
    unsafe {
        let src = CStr::from_ptr(name).to_bytes_with_nul();
        if src.len() > n_out.max(0) as usize {
            return ffi::SQLITE_CANTOPEN;
        }
        ptr::copy_nonoverlapping(src.as_ptr() as *const c_char, out, src.len());
    }
    ffi::SQLITE_OK
}

macro_rules! delegate {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $default:expr) => {
        unsafe extern "C" fn $name(vfs: *mut ffi::sqlite3_vfs, $($arg: $ty),*) -> $ret {
            // SAFETY: callback contract; the parent VFS's own entry point.
            unsafe {
                let p = data(vfs).parent;
                match (*p).$field {
                    Some(f) => f(p, $($arg),*),
                    None => $default,
                }
            }
        }
    };
}

delegate!(x_dl_open, xDlOpen, (f: *const c_char) -> *mut c_void, ptr::null_mut());
delegate!(x_dl_error, xDlError, (n: c_int, msg: *mut c_char) -> (), ());
delegate!(x_dl_close, xDlClose, (h: *mut c_void) -> (), ());
delegate!(x_randomness, xRandomness, (n: c_int, out: *mut c_char) -> c_int, 0);
delegate!(x_sleep, xSleep, (us: c_int) -> c_int, 0);
delegate!(x_current_time, xCurrentTime, (t: *mut f64) -> c_int, ffi::SQLITE_ERROR);
delegate!(x_get_last_error, xGetLastError, (n: c_int, msg: *mut c_char) -> c_int, 0);
delegate!(x_current_time_int64, xCurrentTimeInt64, (t: *mut ffi::sqlite3_int64) -> c_int, ffi::SQLITE_ERROR);

type DlSym = Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)>;

unsafe extern "C" fn x_dl_sym(
    vfs: *mut ffi::sqlite3_vfs,
    h: *mut c_void,
    sym: *const c_char,
) -> DlSym {
    // SAFETY: callback contract; the parent VFS's own entry point.
    unsafe {
        let p = data(vfs).parent;
        (*p).xDlSym.and_then(|f| f(p, h, sym))
    }
}

unsafe extern "C" fn x_close(f: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: callback contract; the Box was made by x_open and is freed once.
    unsafe {
        let file = f as *mut File;
        if !(*file).conn.is_null() {
            let c = Box::from_raw((*file).conn);
            (*file).conn = ptr::null_mut();
            // The last connection of a replica stops its poller and drops its client.
            guard((), || drop(c));
        }
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_read(
    f: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    // SAFETY: callback contract; `buf` has `amt` bytes.
    let (c, out) = unsafe {
        (
            conn(f),
            std::slice::from_raw_parts_mut(buf as *mut u8, amt.max(0) as usize),
        )
    };
    guard(ffi::SQLITE_IOERR_READ, || {
        match c.read(out, off.max(0) as u64) {
            Ok(true) => ffi::SQLITE_OK,
            Ok(false) => ffi::SQLITE_IOERR_SHORT_READ,
            Err(e) => {
                log::error!("litestream vfs: read {amt} bytes at {off}: {e}");
                ffi::SQLITE_IOERR_READ
            }
        }
    })
}

unsafe extern "C" fn x_write(
    f: *mut ffi::sqlite3_file,
    _: *const c_void,
    _: c_int,
    _: i64,
) -> c_int {
    // SAFETY: callback contract.
    guard((), || unsafe { conn(f) }.refuse_write());
    ffi::SQLITE_READONLY
}

unsafe extern "C" fn x_truncate(f: *mut ffi::sqlite3_file, _: i64) -> c_int {
    // SAFETY: callback contract.
    guard((), || unsafe { conn(f) }.refuse_write());
    ffi::SQLITE_READONLY
}

unsafe extern "C" fn x_sync(_: *mut ffi::sqlite3_file, _: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_size(f: *mut ffi::sqlite3_file, out: *mut i64) -> c_int {
    // SAFETY: callback contract; `out` is SQLite's result slot.
    match guard(None, || Some(unsafe { conn(f) }.size() as i64)) {
        Some(n) => {
            unsafe { *out = n };
            ffi::SQLITE_OK
        }
        // Never a size of 0 for a database that failed to say its size: it would look empty.
        None => ffi::SQLITE_IOERR_FSTAT,
    }
}

unsafe extern "C" fn x_lock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    if level > ffi::SQLITE_LOCK_SHARED {
        // A read replica: nothing may take the write locks.
        // SAFETY: callback contract.
        guard((), || unsafe { conn(f) }.refuse_write());
        return ffi::SQLITE_READONLY;
    }
    // SAFETY: callback contract.
    let c = unsafe { conn(f) };
    guard(ffi::SQLITE_IOERR_LOCK, || {
        c.begin_read();
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_unlock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    if level == ffi::SQLITE_LOCK_NONE {
        // SAFETY: callback contract.
        let c = unsafe { conn(f) };
        return guard(ffi::SQLITE_IOERR_UNLOCK, || {
            c.end_read();
            ffi::SQLITE_OK
        });
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_check_reserved_lock(_: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: `out` is SQLite's result slot.
    unsafe { *out = 0 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_control(
    f: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    if op != ffi::SQLITE_FCNTL_PRAGMA {
        return ffi::SQLITE_NOTFOUND;
    }
    // SAFETY: for SQLITE_FCNTL_PRAGMA, `arg` is char*[3]: result slot, name, value.
    let (c, az) = unsafe { (conn(f), arg as *mut *mut c_char) };
    // SAFETY: as above; name is NUL-terminated, value NULL or NUL-terminated.
    let (name, value) = unsafe { (text(*az.add(1)), text(*az.add(2))) };
    let Some(name) = name else {
        return ffi::SQLITE_NOTFOUND;
    };
    let answer = guard(PragmaAnswer::Failed("panic in the VFS".into()), || {
        c.pragma(name, value)
    });
    let (rc, msg) = match answer {
        PragmaAnswer::NotOurs => return ffi::SQLITE_NOTFOUND,
        PragmaAnswer::Done(v) => (ffi::SQLITE_OK, v),
        PragmaAnswer::Failed(m) => (ffi::SQLITE_ERROR, Some(m)),
    };
    if let Some(m) = msg {
        // SAFETY: SQLite frees the result slot with sqlite3_free.
        unsafe { *az = sqlite_string(&m) };
    }
    rc
}

/// A copy of `s` in memory from sqlite3_malloc (NULL if out of memory).
fn sqlite_string(s: &str) -> *mut c_char {
    let b = s.as_bytes();
    // SAFETY: a fresh allocation of len + 1 bytes, filled and NUL-terminated.
    unsafe {
        let p = ffi::sqlite3_malloc(b.len() as c_int + 1) as *mut u8;
        if !p.is_null() {
            ptr::copy_nonoverlapping(b.as_ptr(), p, b.len());
            *p.add(b.len()) = 0;
        }
        p as *mut c_char
    }
}

unsafe extern "C" fn x_sector_size(_: *mut ffi::sqlite3_file) -> c_int {
    4096
}

unsafe extern "C" fn x_device_characteristics(_: *mut ffi::sqlite3_file) -> c_int {
    0
}

/// Registers `litestream_txid()`, `litestream_lag()` and `litestream_time()` on `db`;
/// each asks the connection's main database file (a VFS database) through its PRAGMA.
///
/// # Safety
/// `db` must be an open SQLite connection handle of the SQLite this crate calls.
pub unsafe fn register_functions(db: *mut ffi::sqlite3) -> c_int {
    for (name, pragma) in [
        (c"litestream_txid", c"litestream_txid"),
        (c"litestream_lag", c"litestream_lag"),
        (c"litestream_time", c"litestream_time"),
    ] {
        // SAFETY: a valid handle; the user data is a 'static C string.
        let rc = unsafe {
            ffi::sqlite3_create_function_v2(
                db,
                name.as_ptr(),
                0,
                ffi::SQLITE_UTF8,
                pragma.as_ptr() as *mut c_void,
                Some(sql_function),
                None,
                None,
                None,
            )
        };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn sql_function(
    ctx: *mut ffi::sqlite3_context,
    _n: c_int,
    _args: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: SQLite's context of this call; user data is the PRAGMA's 'static name.
    unsafe {
        let db = ffi::sqlite3_context_db_handle(ctx);
        let pragma = ffi::sqlite3_user_data(ctx) as *mut c_char;
        let mut az: [*mut c_char; 3] = [ptr::null_mut(), pragma, ptr::null_mut()];
        let rc = ffi::sqlite3_file_control(
            db,
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_PRAGMA,
            az.as_mut_ptr() as *mut c_void,
        );
        let out = text(az[0]).map(str::to_string);
        if !az[0].is_null() {
            ffi::sqlite3_free(az[0] as *mut c_void);
        }
        match (rc, out) {
            (ffi::SQLITE_OK, Some(v)) => {
                if CStr::from_ptr(pragma).to_bytes() == b"litestream_lag" {
                    ffi::sqlite3_result_int64(ctx, v.parse().unwrap_or(-1));
                } else {
                    let b = v.as_bytes();
                    ffi::sqlite3_result_text(
                        ctx,
                        b.as_ptr() as *const c_char,
                        b.len() as c_int,
                        ffi::SQLITE_TRANSIENT(),
                    );
                }
            }
            (_, msg) => {
                let m = msg.unwrap_or_else(|| "not a litestream VFS database".into());
                ffi::sqlite3_result_error(ctx, m.as_ptr() as *const c_char, m.len() as c_int);
            }
        }
    }
}
