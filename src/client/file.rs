//! The `file` backend: `<root>/ltx/<level>/<min>-<max>.ltx` on a local filesystem.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::key::{self, Layout};
use super::{check_object_path, read_header, FileInfo, ObjectInfo, ReplicaClient, SNAPSHOT_LEVEL};
use crate::durable::sync_dir;
use crate::error::{Error, Result};
use crate::ltx::{self, Txid};

/// A replica in a local directory, laid out exactly as Litestream's file replica.
#[derive(Debug)]
pub struct FileClient {
    root: PathBuf,
    /// Levels whose leftover temp files (from a crash mid-write) were already removed.
    swept: std::sync::Mutex<[bool; 10]>,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl FileClient {
    /// A client for the replica rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileClient {
            root: root.into(),
            swept: std::sync::Mutex::new([false; 10]),
        }
    }

    /// The replica's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory that holds the files of `level`.
    fn level_dir(&self, level: u8) -> PathBuf {
        let dir = key::level_prefix("", level, Layout::Ltx);
        self.root.join(dir.trim_end_matches('/'))
    }

    /// Once per level and process: removes temp files older than ten minutes, left by a
    /// writer that crashed mid-write.
    fn sweep(&self, level: u8, dir: &Path) {
        let first = match self.swept.lock() {
            Ok(mut s) => !std::mem::replace(&mut s[(level as usize).min(9)], true),
            Err(_) => false,
        };
        if !first {
            return;
        }
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let old = e
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(600));
            if old && e.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// The directory of `level`, created, with a crash's leftover temp files removed.
    fn ready_dir(&self, level: u8) -> Result<PathBuf> {
        let dir = self.level_dir(level);
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        self.sweep(level, &dir);
        Ok(dir)
    }

    /// A fresh temp path in `dir` for the file `min-max` (swept after a crash).
    fn tmp_path(&self, dir: &Path, min: Txid, max: Txid) -> PathBuf {
        dir.join(format!(
            "{}.{}.{}.tmp",
            ltx::file_name(min, max),
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// The key of the LTX file `(level, min, max)`: its path under the root.
    fn key(&self, level: u8, min: Txid, max: Txid) -> PathBuf {
        self.root
            .join(key::ltx_key("", level, min, max, Layout::Ltx))
    }
}

/// Renames the finished temp file `tmp` (when `written` is Ok) to `key` and syncs `dir`,
/// so the file appears whole or not at all; removes `tmp` on any failure.
fn publish(tmp: &Path, key: &Path, dir: &Path, written: Result<FileInfo>) -> Result<FileInfo> {
    let result = written.and_then(|info| {
        fs::rename(tmp, key).map_err(|e| Error::io(format!("rename to {}", key.display()), e))?;
        sync_dir(dir)?;
        Ok(info)
    });
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

impl ReplicaClient for FileClient {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn ltx_files(&self, level: u8, seek: Txid, _accurate: bool) -> Result<Vec<FileInfo>> {
        let dir = self.level_dir(level);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
            let name = entry.file_name();
            let Some((min, max)) = name.to_str().and_then(ltx::parse_file_name) else {
                continue;
            };
            if min < seek {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("stat {}", entry.path().display()), e)),
            };
            if !meta.is_file() {
                continue;
            }
            out.push(FileInfo::new(
                level,
                min,
                max,
                meta.len(),
                meta.modified().unwrap_or(std::time::UNIX_EPOCH),
            ));
        }
        out.sort_by_key(|f| (f.min_txid, f.max_txid));
        Ok(out)
    }

    fn all_ltx_files(&self, accurate: bool) -> Result<Option<Vec<FileInfo>>> {
        // A walk of the level directories: nothing to save on a local disk but calls.
        let mut out = Vec::new();
        for level in 0..=SNAPSHOT_LEVEL {
            out.extend(self.ltx_files(level, Txid::ZERO, accurate)?);
        }
        Ok(Some(out))
    }

    fn open_ltx_file(
        &self,
        level: u8,
        min: Txid,
        max: Txid,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Box<dyn Read + Send>> {
        let key = self.key(level, min, max);
        let mut f = match File::open(&key) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    backend: "file",
                    target: key.display().to_string(),
                })
            }
            Err(e) => return Err(Error::io(format!("open {}", key.display()), e)),
        };
        if offset > 0 {
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| Error::io(format!("seek {}", key.display()), e))?;
        }
        Ok(match len {
            Some(n) => Box::new(f.take(n)),
            None => Box::new(f),
        })
    }

    fn write_ltx_file(&self, level: u8, min: Txid, max: Txid, src: &File) -> Result<FileInfo> {
        let header = read_header(src)?;
        let dir = self.ready_dir(level)?;
        let key = self.key(level, min, max);
        let tmp = self.tmp_path(&dir, min, max);
        let result = (|| {
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
            let size = crate::sys::copy_file(src, &mut out)
                .map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
            let created = crate::time::from_millis(header.timestamp);
            out.set_modified(created)
                .map_err(|e| Error::io(format!("set mtime of {}", tmp.display()), e))?;
            out.sync_all()
                .map_err(|e| Error::io(format!("fsync {}", tmp.display()), e))?;
            drop(out);
            Ok(FileInfo::new(level, min, max, size, created))
        })();
        publish(&tmp, &key, &dir, result)
    }

    fn copy_ltx_file(&self, src: &FileInfo, level: u8) -> Result<Option<FileInfo>> {
        // LTX files are never modified: a hard link is a copy. Where links are not
        // allowed, the caller copies the bytes.
        let from = self.key(src.level, src.min_txid, src.max_txid);
        let dir = self.ready_dir(level)?;
        let key = self.key(level, src.min_txid, src.max_txid);
        let tmp = self.tmp_path(&dir, src.min_txid, src.max_txid);
        match fs::hard_link(&from, &tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    backend: "file",
                    target: from.display().to_string(),
                })
            }
            Err(e) => {
                log::debug!("file: cannot link {}: {e}; copying", from.display());
                return Ok(None);
            }
        }
        let info = FileInfo {
            level,
            ..src.clone()
        };
        publish(&tmp, &key, &dir, Ok(info)).map(Some)
    }

    fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        for f in files {
            let key = self.key(f.level, f.min_txid, f.max_txid);
            match fs::remove_file(&key) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("delete {}", key.display()), e)),
            }
        }
        Ok(())
    }

    fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        check_object_path(prefix.trim_end_matches('/'))?;
        let mut out = Vec::new();
        let mut dirs = vec![prefix.trim_end_matches('/').to_string()];
        while let Some(rel) = dirs.pop() {
            let dir = self.root.join(&rel);
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let path = format!("{rel}/{name}");
                let meta = match entry.metadata() {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(format!("stat {}", entry.path().display()), e)),
                };
                if meta.is_dir() {
                    dirs.push(path);
                } else if meta.is_file() {
                    let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                    out.push(ObjectInfo {
                        path,
                        size: meta.len(),
                        modified,
                    });
                }
            }
        }
        Ok(out)
    }

    fn open_object(&self, path: &str) -> Result<Box<dyn Read + Send>> {
        check_object_path(path)?;
        let full = self.root.join(path);
        match File::open(&full) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound {
                backend: "file",
                target: full.display().to_string(),
            }),
            Err(e) => Err(Error::io(format!("open {}", full.display()), e)),
        }
    }

    fn delete_all(&self) -> Result<()> {
        match fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("delete {}", self.root.display()), e)),
        }
    }
}
