//! The database's local state directory (`.<name>-litestream`) and what is in it: L0
//! files under `ltx/0/`, interrupted writes to clean up, and the WAL's identity.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::ltx::{self, Header, Txid};

/// `<dir>/.<name>-litestream`.
pub(crate) fn default_meta_path(db: &Path) -> PathBuf {
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    db.with_file_name(format!(".{name}-litestream"))
}

/// Narrows the local state directory `meta` to who may read the database `db`: its files
/// hold the database's pages, so a group or others that cannot read the database lose
/// access to the directory. Never widens it.
pub(crate) fn restrict_to_db(meta: &Path, db: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let db_mode = fs::metadata(db)
        .map_err(|e| Error::io(format!("stat {}", db.display()), e))?
        .mode();
    let mut allowed = 0o700;
    if db_mode & 0o040 != 0 {
        allowed |= 0o050;
    }
    if db_mode & 0o004 != 0 {
        allowed |= 0o005;
    }
    let mode = fs::metadata(meta)
        .map_err(|e| Error::io(format!("stat {}", meta.display()), e))?
        .mode()
        & 0o7777;
    if mode & !allowed & 0o777 != 0 {
        fs::set_permissions(meta, fs::Permissions::from_mode(mode & (allowed | 0o7000)))
            .map_err(|e| Error::io(format!("restrict permissions of {}", meta.display()), e))?;
    }
    Ok(())
}

/// The LTX files of a local state directory (`<meta>/ltx`).
pub(crate) fn ltx_dir(meta: &Path) -> PathBuf {
    meta.join("ltx")
}

/// The L0 files of a local state directory (`<meta>/ltx/0`).
pub(crate) fn l0_dir(meta: &Path) -> PathBuf {
    ltx_dir(meta).join("0")
}

/// The newest local L0 file of a local state directory: its TXID (zero when there is
/// none) and when it was written.
pub(crate) fn newest_l0(meta: &Path) -> Result<(Txid, Option<SystemTime>)> {
    let dir = l0_dir(meta);
    let txid = max_local_txid(&dir)?;
    let written = fs::metadata(dir.join(ltx::file_name(txid, txid)))
        .and_then(|m| m.modified())
        .ok();
    Ok((txid, written))
}

/// A WAL file's identity and size, to detect changes with one `stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct StatKey {
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_ns: i64,
}

pub(super) fn stat_key(path: &Path) -> Option<StatKey> {
    fs::metadata(path).ok().map(|m| StatKey {
        ino: m.ino(),
        size: m.len(),
        mtime: m.mtime(),
        mtime_ns: m.mtime_nsec(),
    })
}

/// Removes leftover `*.tmp` files of an interrupted write.
pub(super) fn remove_temp_files(dir: &Path) {
    remove_where(dir, |name| name.ends_with(".tmp"));
}

/// Removes the snapshot and compaction temp files a killed process left in the meta
/// directory (`snapshot-*.ltx.tmp`, `compact-*.ltx.tmp`: each as large as the database).
/// Only before this process makes any of its own for the database.
pub(super) fn remove_leftover_work_files(meta: &Path) {
    remove_where(meta, |name| {
        (name.starts_with("snapshot-") || name.starts_with("compact-"))
            && name.ends_with(".ltx.tmp")
    });
}

/// Removes the files of `dir` whose names `doomed` picks (best effort).
fn remove_where(dir: &Path, doomed: impl Fn(&str) -> bool) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if doomed(&e.file_name().to_string_lossy()) {
            log::debug!("removing leftover {}", e.path().display());
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Highest TXID of the L0 files in `dir`.
pub(super) fn max_local_txid(dir: &Path) -> Result<Txid> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Txid::ZERO),
        Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
    };
    Ok(rd
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(ltx::parse_file_name)
                .map(|(_, max)| max)
        })
        .max()
        .unwrap_or_default())
}

/// Removes the L0 files in `dir` up to `through`, never `newest` or later.
pub(super) fn retire_l0(dir: &Path, through: Txid, newest: Txid) {
    if through == Txid::ZERO {
        return;
    }
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if let Some((_, max)) = e.file_name().to_str().and_then(ltx::parse_file_name) {
            if max <= through && max < newest {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// Reads and fully verifies an LTX file, returning its header.
pub(super) fn read_verified_header(path: &Path) -> Result<Header> {
    let f = File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let d = ltx::Decoder::new(io::BufReader::new(f))
        .map_err(|e| e.in_file(&path.display().to_string()))?;
    let h = d.header().clone();
    d.finish()
        .map_err(|e| e.in_file(&path.display().to_string()))?;
    Ok(h)
}

/// The copy of `pgno` stored in an LTX file, if it holds one.
pub(super) fn find_page_in_ltx(path: &Path, pgno: u32) -> Result<Option<Vec<u8>>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(_) => return Ok(None),
    };
    let mut d = match ltx::Decoder::new(io::BufReader::new(f)) {
        Ok(d) => d,
        Err(_) => return Ok(None),
    };
    let mut buf = vec![0u8; d.header().page_size as usize];
    loop {
        match d.next_page(&mut buf) {
            Ok(Some(p)) if p == pgno => return Ok(Some(buf)),
            Ok(Some(p)) if p > pgno => return Ok(None),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return Ok(None),
        }
    }
}
