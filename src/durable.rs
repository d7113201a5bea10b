//! Local files written the durable way, shared by the database engine, compaction and
//! restore: side paths (`app.db` → `app.db-wal`), temp files removed unless kept, and the
//! directory fsync that makes a rename durable; positioned reads that leave a file's cursor
//! alone (`ReadAt`).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `path` with `suffix` appended (`app.db` → `app.db-wal`).
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// `.<name><suffix>` beside `path`: a hidden work file that no directory scan (a `dir:`
/// entry's pattern, a glob) mistakes for a database even when it holds one.
pub(crate) fn hidden_sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(suffix);
    path.with_file_name(name)
}

/// fsyncs a directory so a rename in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsync directory {}", dir.display()), e))
}

/// Opens `path` for reading and writing, creating it with permission bits `mode` (the
/// umask narrows them further) and truncating it; `new` fails if it exists. The files we
/// create hold a database's pages, so they never get more than the caller allows (an
/// existing file keeps its own bits).
pub(crate) fn create_file(path: &Path, mode: u32, new: bool) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true).mode(mode & 0o7777);
    if new {
        o.create_new(true);
    } else {
        o.create(true).truncate(true);
    }
    o.open(path)
}

/// The permission bits for files holding a copy of the database at `db`: the owner may
/// read and write, the group and others what they may do with the database itself.
/// `fallback` when it cannot be read.
pub(crate) fn mode_like(db: &Path, fallback: u32) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(db) {
        Ok(m) => (m.permissions().mode() & 0o066) | 0o600,
        Err(_) => fallback,
    }
}

/// A temporary file, removed when this is dropped unless [`TempFile::keep`] was called.
#[derive(Debug)]
pub(crate) struct TempFile(Option<PathBuf>);

impl TempFile {
    /// Guards `path`.
    pub(crate) fn new(path: PathBuf) -> TempFile {
        TempFile(Some(path))
    }

    /// The guarded path.
    pub(crate) fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    /// Keeps the file (it was renamed into place, or is wanted).
    pub(crate) fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Reads a file from its start with positioned reads, leaving the file's cursor alone, so
/// several uploads can read one file at once.
pub(crate) struct ReadAt<'a> {
    f: &'a File,
    pos: u64,
}

impl<'a> ReadAt<'a> {
    pub(crate) fn new(f: &'a File) -> Self {
        ReadAt { f, pos: 0 }
    }

    /// Reads from `pos` on.
    pub(crate) fn at(f: &'a File, pos: u64) -> Self {
        ReadAt { f, pos }
    }
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.f.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A scratch directory for the crate's unit tests, removed on drop.
#[cfg(test)]
pub(crate) struct Scratch(pub(crate) PathBuf);

#[cfg(test)]
impl Scratch {
    /// A new empty directory under the system's temp directory, named after `tag`.
    pub(crate) fn new(tag: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let p =
            std::env::temp_dir().join(format!("lsrs-unit-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

#[cfg(test)]
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
