//! A minimal safe wrapper over the SQLite C API (`libsqlite3-sys`): just what replication
//! needs. All `unsafe` code of the crate that talks to SQLite lives here.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use std::ptr;

use libsqlite3_sys as ffi;

use crate::error::{Error, Result};

/// One SQLite connection, used from one thread at a time.
pub(crate) struct Conn {
    db: *mut ffi::sqlite3,
    path: String,
}

// SAFETY: `Conn::open` refuses a SQLite built with SQLITE_THREADSAFE=0, so a connection
// may be moved to and used from another thread; we never share one between threads.
unsafe impl Send for Conn {}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("path", &self.path).finish()
    }
}

/// Checkpoint modes of `sqlite3_wal_checkpoint_v2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CheckpointMode {
    Passive,
}

/// The version of the linked SQLite library, e.g. `"3.54.1"`.
pub fn sqlite_version() -> &'static str {
    // SAFETY: sqlite3_libversion returns a pointer to a static NUL-terminated string.
    unsafe { CStr::from_ptr(ffi::sqlite3_libversion()) }
        .to_str()
        .unwrap_or("unknown")
}

/// For a process whose SQLite serves only our connections (the `litestream` daemon): no
/// page-cache bulk. SQLite gives each connection's page cache a first slab of 20 pages
/// (about 87 KiB, all of it touched as the slab is threaded into a free list) before a
/// `PRAGMA cache_size` can shrink it; with two connections per database that is 17 MiB
/// for a hundred databases. Process-wide and only before SQLite initializes, so the
/// library never does it to its host; a no-op where SQLite is not compiled in.
pub(crate) fn no_page_cache_slabs() {
    #[cfg(sqlite_compiled_in)]
    {
        // SAFETY: SQLITE_CONFIG_PAGECACHE takes (void*, int, int); a null buffer with no
        // lines only sets the initial bulk to none. Before sqlite3_initialize it is a
        // plain store into SQLite's global configuration; after, it returns MISUSE and
        // changes nothing.
        let rc = unsafe {
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_PAGECACHE,
                ptr::null_mut::<c_void>(),
                0 as c_int,
                0 as c_int,
            )
        };
        if rc != ffi::SQLITE_OK {
            log::debug!("sqlite: page cache slabs left as they are (SQLite already started)");
        }
    }
}

impl Conn {
    /// Opens a read-write connection to an existing database (never creates one).
    pub(crate) fn open(path: &Path) -> Result<Conn> {
        Self::open_with(path, ffi::SQLITE_OPEN_READWRITE)
    }

    fn open_with(path: &Path, flags: c_int) -> Result<Conn> {
        let display = path.display().to_string();
        let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
            Error::Invalid(format!("database path {display:?} contains a NUL byte"))
        })?;
        // SAFETY: a pure query of how the library was compiled.
        if unsafe { ffi::sqlite3_threadsafe() } == 0 {
            // Our connections move between threads (the pacer's, the database's own).
            return Err(Error::Invalid(format!(
                "cannot open {display}: the linked SQLite was built with SQLITE_THREADSAFE=0; \
                 link one built thread-safe (the default, and libsqlite3-sys's bundled build)"
            )));
        }
        let mut db: *mut ffi::sqlite3 = ptr::null_mut();
        // SAFETY: valid C string and out-pointer; flags include NOMUTEX-free defaults.
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                c.as_ptr(),
                &mut db,
                flags | ffi::SQLITE_OPEN_NOFOLLOW,
                ptr::null(),
            )
        };
        let conn = Conn { db, path: display };
        if rc != ffi::SQLITE_OK {
            let err = conn.error(rc, &format!("open {}", conn.path));
            return Err(err);
        }
        // SAFETY: db is a valid open connection.
        unsafe { ffi::sqlite3_extended_result_codes(db, 1) };
        conn.no_lookaside();
        Ok(conn)
    }

    /// Turns off this connection's lookaside allocator, a slab of about 48 KiB SQLite
    /// gives every connection for its small allocations: our connections run a handful
    /// of statements, and with two per database a hundred databases would carry 10 MiB of
    /// slabs. Only where SQLite is compiled in (see `src/build.rs`); a no-op elsewhere.
    fn no_lookaside(&self) {
        #[cfg(sqlite_compiled_in)]
        // SAFETY: db is a valid open connection with no statement running (lookaside can
        // only change then); SQLITE_DBCONFIG_LOOKASIDE takes (void*, int, int) and a null
        // buffer with size 0 turns it off.
        unsafe {
            ffi::sqlite3_db_config(
                self.db,
                ffi::SQLITE_DBCONFIG_LOOKASIDE,
                ptr::null_mut::<c_void>(),
                0 as c_int,
                0 as c_int,
            );
        }
    }

    fn error(&self, rc: c_int, context: &str) -> Error {
        let message = if self.db.is_null() {
            // SAFETY: sqlite3_errstr returns a static string for any code.
            unsafe { CStr::from_ptr(ffi::sqlite3_errstr(rc)) }
                .to_string_lossy()
                .into_owned()
        } else {
            // SAFETY: db is valid; errmsg returns a NUL-terminated string owned by SQLite.
            unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.db)) }
                .to_string_lossy()
                .into_owned()
        };
        Error::Sqlite {
            context: context.to_string(),
            code: rc,
            message,
        }
    }

    /// Sets the busy timeout.
    pub(crate) fn busy_timeout(&self, ms: u32) {
        // SAFETY: db is valid.
        unsafe { ffi::sqlite3_busy_timeout(self.db, ms.min(i32::MAX as u32) as c_int) };
    }

    /// Installs a busy handler that retries at once a few thousand times, then every
    /// 100 µs, for up to about `max_wait`, so this connection can slip into the gaps
    /// between a saturating writer's transactions (SQLite's default handler sleeps up to
    /// 100 ms between tries and almost never wins them).
    pub(crate) fn eager_busy_handler(&self, max_wait: std::time::Duration) {
        const SPINS: usize = 5000;
        extern "C" fn handler(arg: *mut c_void, count: c_int) -> c_int {
            let max_tries = arg as usize;
            let count = count as usize;
            if count >= max_tries {
                return 0;
            }
            if count < SPINS {
                std::thread::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
            1
        }
        let tries = SPINS + (max_wait.as_micros() / 100).max(1) as usize;
        // SAFETY: valid connection; the callback is a plain function and its argument is an
        // integer smuggled in the pointer, never dereferenced.
        unsafe {
            ffi::sqlite3_busy_handler(self.db, Some(handler), tries as *mut c_void);
        }
    }

    /// Runs one or more statements that return no rows we need.
    pub(crate) fn exec(&self, sql: &str) -> Result<()> {
        let c = CString::new(sql).map_err(|_| Error::Invalid("SQL contains a NUL byte".into()))?;
        let mut errmsg: *mut c_char = ptr::null_mut();
        // SAFETY: valid connection and C string; errmsg is freed with sqlite3_free.
        let rc =
            unsafe { ffi::sqlite3_exec(self.db, c.as_ptr(), None, ptr::null_mut(), &mut errmsg) };
        if rc != ffi::SQLITE_OK {
            let message = if errmsg.is_null() {
                String::new()
            } else {
                // SAFETY: errmsg is a NUL-terminated string allocated by SQLite.
                let m = unsafe { CStr::from_ptr(errmsg) }
                    .to_string_lossy()
                    .into_owned();
                // SAFETY: allocated by sqlite3_malloc.
                unsafe { ffi::sqlite3_free(errmsg as *mut c_void) };
                m
            };
            return Err(Error::Sqlite {
                context: format!("{sql} on {}", self.path),
                code: rc,
                message,
            });
        }
        Ok(())
    }

    /// Runs a query and returns the first column of every row as text.
    pub(crate) fn query_column(&self, sql: &str) -> Result<Vec<String>> {
        let c = CString::new(sql).map_err(|_| Error::Invalid("SQL contains a NUL byte".into()))?;
        let mut stmt: *mut ffi::sqlite3_stmt = ptr::null_mut();
        // SAFETY: valid connection and C string.
        let rc =
            unsafe { ffi::sqlite3_prepare_v2(self.db, c.as_ptr(), -1, &mut stmt, ptr::null_mut()) };
        if rc != ffi::SQLITE_OK {
            return Err(self.error(rc, &format!("prepare {sql} on {}", self.path)));
        }
        let mut out = Vec::new();
        let result = loop {
            // SAFETY: stmt is a valid prepared statement.
            let rc = unsafe { ffi::sqlite3_step(stmt) };
            match rc {
                ffi::SQLITE_ROW => {
                    // SAFETY: column 0 exists when the statement returns rows; the text
                    // pointer is valid until the next step.
                    let p = unsafe { ffi::sqlite3_column_text(stmt, 0) };
                    let s = if p.is_null() {
                        String::new()
                    } else {
                        // SAFETY: column_text returns a NUL-terminated string.
                        unsafe { CStr::from_ptr(p as *const c_char) }
                            .to_string_lossy()
                            .into_owned()
                    };
                    out.push(s);
                }
                ffi::SQLITE_DONE => break Ok(out),
                rc => break Err(self.error(rc, &format!("{sql} on {}", self.path))),
            }
        };
        // SAFETY: stmt was prepared above and is finalized once.
        unsafe { ffi::sqlite3_finalize(stmt) };
        result
    }

    /// Runs a query returning one integer.
    pub(crate) fn query_i64(&self, sql: &str) -> Result<i64> {
        let rows = self.query_column(sql)?;
        rows.first()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::Sqlite {
                context: format!("{sql} on {}", self.path),
                code: 0,
                message: format!("expected an integer, got {rows:?}"),
            })
    }

    /// Keeps the WAL file when this connection closes (`SQLITE_FCNTL_PERSIST_WAL`).
    pub(crate) fn set_persist_wal(&self) -> Result<()> {
        let mut on: c_int = 1;
        // SAFETY: valid connection; the argument is a pointer to an int as documented.
        let rc = unsafe {
            ffi::sqlite3_file_control(
                self.db,
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_PERSIST_WAL,
                &mut on as *mut c_int as *mut c_void,
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(self.error(rc, "set persist-wal"));
        }
        Ok(())
    }

    /// Runs `sqlite3_wal_checkpoint_v2`; returns (busy, frames in log, frames checkpointed).
    /// SQLITE_BUSY is reported as `busy == true`, not as an error.
    pub(crate) fn checkpoint(&self, mode: CheckpointMode) -> Result<(bool, i32, i32)> {
        let m = match mode {
            CheckpointMode::Passive => ffi::SQLITE_CHECKPOINT_PASSIVE,
        };
        let (mut log, mut ckpt): (c_int, c_int) = (-1, -1);
        // SAFETY: valid connection and out-pointers.
        let rc = unsafe {
            ffi::sqlite3_wal_checkpoint_v2(self.db, c"main".as_ptr(), m, &mut log, &mut ckpt)
        };
        match rc & 0xff {
            ffi::SQLITE_OK => Ok((false, log, ckpt)),
            ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED => Ok((true, log, ckpt)),
            _ => Err(self.error(rc, &format!("checkpoint {mode:?} on {}", self.path))),
        }
    }

    /// This connection's own handle on the main database file. Every access the crate
    /// makes to a live database file goes through one: no other descriptor on it is ever
    /// opened or closed by us, since closing one drops every POSIX lock the process holds
    /// on the file (SQLite's shared lock among them, and with it the guarantee that another
    /// process's last connection does not delete the WAL under ours).
    pub(crate) fn main_file(&self) -> Result<MainFile<'_>> {
        let mut file: *mut ffi::sqlite3_file = ptr::null_mut();
        // SAFETY: valid connection; FILE_POINTER writes a sqlite3_file* into the pointer.
        let rc = unsafe {
            ffi::sqlite3_file_control(
                self.db,
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_FILE_POINTER,
                &mut file as *mut *mut ffi::sqlite3_file as *mut c_void,
            )
        };
        if rc != ffi::SQLITE_OK || file.is_null() {
            return Err(self.error(rc, "get database file handle"));
        }
        // SAFETY: file is the main-database handle owned by this connection; its methods
        // table is set while it is open.
        let methods = unsafe { (*file).pMethods };
        if methods.is_null() {
            return Err(Error::State(format!(
                "database file {} is not open",
                self.path
            )));
        }
        Ok(MainFile {
            conn: self,
            file,
            // SAFETY: checked non-null above; the table is static for the open file.
            methods: unsafe { &*methods },
        })
    }

    /// True if the connection has an open transaction.
    pub(crate) fn in_transaction(&self) -> bool {
        // SAFETY: valid connection.
        unsafe { ffi::sqlite3_get_autocommit(self.db) == 0 }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.db.is_null() {
            // SAFETY: db was opened by sqlite3_open_v2 and is closed exactly once;
            // every statement is finalized before this point.
            unsafe { ffi::sqlite3_close(self.db) };
        }
    }
}

/// A connection's main database file, read and written through SQLite's own handle (see
/// [`Conn::main_file`]); borrowed from the connection, so it cannot outlive it.
pub(crate) struct MainFile<'a> {
    conn: &'a Conn,
    file: *mut ffi::sqlite3_file,
    methods: &'a ffi::sqlite3_io_methods,
}

impl MainFile<'_> {
    fn error(&self, rc: c_int, what: &str) -> Error {
        Error::Sqlite {
            context: format!("{what} {}", self.conn.path),
            code: rc,
            message: "database file I/O failed".into(),
        }
    }

    fn check(&self, rc: c_int, what: &str) -> Result<()> {
        match rc {
            ffi::SQLITE_OK => Ok(()),
            rc => Err(self.error(rc, what)),
        }
    }

    /// Reads `buf.len()` bytes at `offset`. Bytes past the end of the file read as zeros;
    /// returns false if the read was short.
    pub(crate) fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<bool> {
        let Some(read) = self.methods.xRead else {
            return Err(self.error(ffi::SQLITE_MISUSE, "read"));
        };
        // SAFETY: the handle is open (the connection is borrowed); buf is valid for its
        // length.
        let rc = unsafe {
            read(
                self.file,
                buf.as_mut_ptr() as *mut c_void,
                buf.len() as c_int,
                offset as i64,
            )
        };
        if rc == ffi::SQLITE_IOERR_SHORT_READ {
            return Ok(false);
        }
        self.check(
            rc,
            &format!("read {} bytes at offset {offset} of", buf.len()),
        )?;
        Ok(true)
    }

    /// Writes all of `buf` at `offset`.
    pub(crate) fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        let Some(write) = self.methods.xWrite else {
            return Err(self.error(ffi::SQLITE_MISUSE, "write"));
        };
        // SAFETY: as in read_at; SQLite does not write through the pointer.
        let rc = unsafe {
            write(
                self.file,
                buf.as_ptr() as *const c_void,
                buf.len() as c_int,
                offset as i64,
            )
        };
        self.check(
            rc,
            &format!("write {} bytes at offset {offset} of", buf.len()),
        )
    }

    /// The file's size in bytes.
    pub(crate) fn len(&self) -> Result<u64> {
        let Some(size) = self.methods.xFileSize else {
            return Err(self.error(ffi::SQLITE_MISUSE, "size of"));
        };
        let mut n: ffi::sqlite3_int64 = 0;
        // SAFETY: as in read_at; n is a valid out-pointer.
        let rc = unsafe { size(self.file, &mut n) };
        self.check(rc, "size of")?;
        Ok(n.max(0) as u64)
    }

    /// Cuts (or extends) the file to `len` bytes.
    pub(crate) fn truncate(&self, len: u64) -> Result<()> {
        let Some(truncate) = self.methods.xTruncate else {
            return Err(self.error(ffi::SQLITE_MISUSE, "truncate"));
        };
        // SAFETY: as in read_at.
        let rc = unsafe { truncate(self.file, len as i64) };
        self.check(rc, "truncate")
    }

    /// fsync (`data_only`: fdatasync) of the file.
    pub(crate) fn sync(&self, data_only: bool) -> Result<()> {
        let Some(sync) = self.methods.xSync else {
            return Err(self.error(ffi::SQLITE_MISUSE, "fsync"));
        };
        let flags = ffi::SQLITE_SYNC_NORMAL
            | if data_only {
                ffi::SQLITE_SYNC_DATAONLY
            } else {
                0
            };
        // SAFETY: as in read_at.
        let rc = unsafe { sync(self.file, flags) };
        self.check(rc, "fsync")
    }
}
