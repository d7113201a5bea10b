//! Restore: turn a replica's chain of LTX files back into a database file.
//!
//! [`plan`] picks the files (Litestream v0.5.8+'s algorithm: the best L9 snapshot, then
//! repeatedly the file from any level 8..0 that extends the restored range furthest);
//! [`restore`] streams them in order into a temporary file next to the output, verifying
//! every file's checksum and that every page of the result is present, then fsyncs and
//! moves it into place. The output path is never overwritten, and on any failure nothing
//! is left behind.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::client::{FileInfo, ReplicaClient, ResumableReader, SNAPSHOT_LEVEL};
use crate::durable::{sibling, sync_dir, TempFile};
use crate::error::{Error, Result};
use crate::ltx::{self, Decoder, Txid, HEADER_SIZE};

/// Which SQLite check to run on the restored database.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IntegrityCheck {
    /// No check (the default, as in Litestream).
    #[default]
    None,
    /// `PRAGMA quick_check`.
    Quick,
    /// `PRAGMA integrity_check`.
    Full,
}

impl std::str::FromStr for IntegrityCheck {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(IntegrityCheck::None),
            "quick" => Ok(IntegrityCheck::Quick),
            "full" => Ok(IntegrityCheck::Full),
            _ => Err(Error::Invalid(format!(
                "invalid integrity check {s:?}: want none, quick or full"
            ))),
        }
    }
}

/// How far a restore has come, for progress displays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestoreProgress {
    /// Files fully applied.
    pub files_done: usize,
    /// Files in the plan.
    pub files_total: usize,
    /// Bytes read from the replica so far.
    pub bytes_done: u64,
    /// Bytes of all planned files.
    pub bytes_total: u64,
}

/// A progress callback.
pub type ProgressFn = std::sync::Arc<dyn Fn(&RestoreProgress) + Send + Sync>;

/// What to restore and where.
#[derive(Clone)]
pub struct RestoreOptions {
    /// Where to write the database. Must not exist.
    pub output: PathBuf,
    /// Restore up to and including this TXID (default: the latest).
    pub txid: Option<Txid>,
    /// Restore the latest state whose files were all created strictly before this time.
    pub timestamp: Option<SystemTime>,
    /// Check to run on the result.
    pub integrity_check: IntegrityCheck,
    /// Called after each file and every few thousand pages.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("output", &self.output)
            .field("txid", &self.txid)
            .field("timestamp", &self.timestamp)
            .field("integrity_check", &self.integrity_check)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl RestoreOptions {
    /// Options to restore the latest state to `output`.
    pub fn new(output: impl Into<PathBuf>) -> Self {
        RestoreOptions {
            output: output.into(),
            txid: None,
            timestamp: None,
            integrity_check: IntegrityCheck::None,
            progress: None,
        }
    }

    /// Reports progress to `f`.
    pub fn progress(mut self, f: ProgressFn) -> Self {
        self.progress = Some(f);
        self
    }

    /// Restores up to `txid`.
    pub fn txid(mut self, txid: Txid) -> Self {
        self.txid = Some(txid);
        self
    }

    /// Restores the state as of `t`.
    pub fn timestamp(mut self, t: SystemTime) -> Self {
        self.timestamp = Some(t);
        self
    }

    /// Runs `check` on the result.
    pub fn integrity_check(mut self, check: IntegrityCheck) -> Self {
        self.integrity_check = check;
        self
    }
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreReport {
    /// The TXID the database was restored to.
    pub txid: Txid,
    /// The files applied, in order.
    pub files: Vec<FileInfo>,
    /// Bytes read from the replica.
    pub bytes_read: u64,
    /// Database page size.
    pub page_size: u32,
    /// Database size in pages.
    pub page_count: u32,
}

fn candidate_better(curr: &FileInfo, next: &FileInfo) -> bool {
    if next.max_txid != curr.max_txid {
        return next.max_txid > curr.max_txid;
    }
    if next.min_txid != curr.min_txid {
        return next.min_txid < curr.min_txid;
    }
    if next.level != curr.level {
        return next.level > curr.level;
    }
    next.created_at < curr.created_at
}

/// Chooses the files to restore from a listing of the replica (any order, any levels).
///
/// This is the pure part of [`plan`]; it never touches the network.
pub fn plan_files(
    listing: &[FileInfo],
    txid: Option<Txid>,
    timestamp: Option<SystemTime>,
) -> Result<Vec<FileInfo>> {
    if txid.is_some() && timestamp.is_some() {
        return Err(Error::Invalid(
            "cannot specify both a txid and a timestamp to restore".into(),
        ));
    }
    let mut levels: Vec<Vec<&FileInfo>> = vec![Vec::new(); SNAPSHOT_LEVEL as usize + 1];
    for f in listing {
        if f.level <= SNAPSHOT_LEVEL && f.min_txid.0 >= 1 && f.min_txid <= f.max_txid {
            levels[f.level as usize].push(f);
        }
    }
    for l in levels.iter_mut() {
        l.sort_by_key(|f| (f.min_txid, f.max_txid));
    }
    let eligible = |f: &FileInfo| {
        txid.is_none_or(|t| f.max_txid <= t) && timestamp.is_none_or(|ts| f.created_at < ts)
    };

    let mut plan: Vec<FileInfo> = Vec::new();
    let mut cur = Txid::ZERO;
    if let Some(s) = levels[SNAPSHOT_LEVEL as usize]
        .iter()
        .rfind(|f| eligible(f) && f.min_txid == Txid(1))
    {
        plan.push((*s).clone());
        cur = s.max_txid;
        if txid.is_some_and(|t| cur >= t) {
            return Ok(plan);
        }
    }

    // One cursor per level 8..=0: position in the level and the best candidate seen.
    let mut pos = [0usize; SNAPSHOT_LEVEL as usize];
    let mut cand: [Option<&FileInfo>; SNAPSHOT_LEVEL as usize] = [None; SNAPSHOT_LEVEL as usize];
    loop {
        let mut best: Option<usize> = None;
        for level in (0..SNAPSHOT_LEVEL as usize).rev() {
            if cand[level].is_some_and(|c| c.max_txid <= cur) {
                cand[level] = None;
            }
            let files = &levels[level];
            while pos[level] < files.len() && files[pos[level]].min_txid.0 <= cur.0 + 1 {
                let f = files[pos[level]];
                pos[level] += 1;
                if f.max_txid <= cur || !eligible(f) {
                    continue;
                }
                if cand[level].is_none_or(|c| candidate_better(c, f)) {
                    cand[level] = Some(f);
                }
            }
            if let Some(c) = cand[level] {
                let better = match best {
                    None => true,
                    Some(b) => cand[b].is_some_and(|bc| candidate_better(bc, c)),
                };
                if better {
                    best = Some(level);
                }
            }
        }
        let Some(level) = best else { break };
        let Some(f) = cand[level].take() else { break };
        cur = f.max_txid;
        plan.push(f.clone());
        if txid.is_some_and(|t| cur >= t) {
            break;
        }
    }

    if !plan.is_empty() && txid.is_none() && timestamp.is_none() {
        for level in 0..SNAPSHOT_LEVEL as usize {
            if let Some(next) = levels[level].get(pos[level]) {
                if next.min_txid.0 > cur.0 + 1 {
                    return Err(Error::NonContiguous {
                        have: cur,
                        next: next.min_txid,
                        file: format!("level {level} {}", next.name()),
                    });
                }
            }
        }
    }

    if plan.is_empty() {
        let has_start = levels.iter().flatten().any(|f| f.min_txid == Txid(1));
        if !has_start {
            return Err(Error::NoSnapshots);
        }
        let detail = match (txid, timestamp) {
            (Some(t), _) => format!("no snapshot at or before transaction {t}"),
            (_, Some(ts)) => format!(
                "no backup files were created before {}",
                crate::time::format_rfc3339(ts)
            ),
            _ => "no restorable files".to_string(),
        };
        return Err(Error::TxNotAvailable { txid, detail });
    }
    if let Some(t) = txid {
        if cur < t {
            return Err(Error::TxNotAvailable {
                txid: Some(t),
                detail: format!("the replica's files reach only {cur}"),
            });
        }
    }
    Ok(plan)
}

/// Lists every level of the replica.
pub(crate) fn list_all(client: &dyn ReplicaClient, accurate: bool) -> Result<Vec<FileInfo>> {
    let mut all = Vec::new();
    for level in 0..=SNAPSHOT_LEVEL {
        all.extend(client.ltx_files(level, Txid::ZERO, accurate)?);
    }
    Ok(all)
}

/// Chooses the files to restore to `txid` / `timestamp` (both `None`: the latest state).
pub fn plan(
    client: &dyn ReplicaClient,
    txid: Option<Txid>,
    timestamp: Option<SystemTime>,
) -> Result<Vec<FileInfo>> {
    let listing = list_all(client, timestamp.is_some())?;
    plan_files(&listing, txid, timestamp)
}

/// Restores the replica to `opts.output`.
pub fn restore(client: &dyn ReplicaClient, opts: &RestoreOptions) -> Result<RestoreReport> {
    if opts.output.as_os_str().is_empty() {
        return Err(Error::Invalid("restore: output path required".into()));
    }
    if opts.output.symlink_metadata().is_ok() {
        return Err(Error::OutputExists(opts.output.clone()));
    }
    for suffix in ["-wal", "-shm"] {
        let p = sibling(&opts.output, suffix);
        if p.symlink_metadata().is_ok() {
            return Err(Error::State(format!(
                "cannot restore to {}: a stale {} exists beside it and SQLite would apply it to the restored database; remove it first",
                opts.output.display(),
                p.display()
            )));
        }
    }
    let files = plan(client, opts.txid, opts.timestamp)?;
    for f in &files {
        if f.size < HEADER_SIZE as u64 {
            return Err(Error::corrupt(
                0,
                format!(
                    "file has {} bytes, less than the {HEADER_SIZE}-byte header",
                    f.size
                ),
            )
            .in_file(&f.to_string()));
        }
    }
    let dir = match opts.output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = opts
        .output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "db".into());
    let tmp = dir.join(format!(".{file_name}.{}.restore.tmp", std::process::id()));
    let cleanup = TempFile::new(tmp.clone());
    let out = OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
    let report = apply(client, &files, &out, &tmp, opts.progress.as_ref())?;
    out.sync_all()
        .map_err(|e| Error::io(format!("fsync {}", tmp.display()), e))?;
    drop(out);
    // Link rather than rename: linking fails if the output appeared meanwhile, so a
    // database is never overwritten.
    match fs::hard_link(&tmp, &opts.output) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::OutputExists(opts.output.clone()))
        }
        Err(_) => {
            if opts.output.symlink_metadata().is_ok() {
                return Err(Error::OutputExists(opts.output.clone()));
            }
            fs::rename(&tmp, &opts.output).map_err(|e| {
                Error::io(
                    format!("rename {} to {}", tmp.display(), opts.output.display()),
                    e,
                )
            })?;
        }
    }
    let _ = fs::remove_file(&tmp);
    sync_dir(&dir)?;
    cleanup.keep();

    if opts.integrity_check != IntegrityCheck::None {
        if let Err(e) = integrity_check(&opts.output, opts.integrity_check) {
            for p in [
                opts.output.clone(),
                sibling(&opts.output, "-wal"),
                sibling(&opts.output, "-shm"),
            ] {
                let _ = fs::remove_file(p);
            }
            return Err(e);
        }
    }
    log::debug!(
        "restored {} to txid {} from {} files ({} pages of {} bytes)",
        opts.output.display(),
        report.txid,
        report.files.len(),
        report.page_count,
        report.page_size
    );
    Ok(report)
}

/// Runs `PRAGMA quick_check` or `integrity_check` and requires `ok`.
fn integrity_check(path: &Path, check: IntegrityCheck) -> Result<()> {
    let pragma = match check {
        IntegrityCheck::None => return Ok(()),
        IntegrityCheck::Quick => "PRAGMA quick_check",
        IntegrityCheck::Full => "PRAGMA integrity_check",
    };
    let result = {
        let conn = crate::sqlite::Conn::open(path)?;
        conn.query_column(pragma)?
    };
    for suffix in ["-wal", "-shm"] {
        let _ = fs::remove_file(sibling(path, suffix));
    }
    if result.len() == 1 && result[0] == "ok" {
        Ok(())
    } else {
        Err(Error::State(format!(
            "post-restore integrity check of {} failed: {}",
            path.display(),
            result.join("; ")
        )))
    }
}

/// Applies `files` in order to `out` (an empty file): each file's pages overwrite earlier
/// copies; the result is truncated to the last file's commit size and must hold every page.
fn apply(
    client: &dyn ReplicaClient,
    files: &[FileInfo],
    out: &File,
    out_path: &Path,
    progress: Option<&ProgressFn>,
) -> Result<RestoreReport> {
    let bytes_total: u64 = files.iter().map(|f| f.size).sum();
    let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let report = |files_done: usize| {
        if let Some(p) = progress {
            p(&RestoreProgress {
                files_done,
                files_total: files.len(),
                bytes_done: read.load(std::sync::atomic::Ordering::Relaxed),
                bytes_total,
            });
        }
    };
    let mut page_size = 0u32;
    let mut commit = 0u32;
    let mut have: Vec<u64> = Vec::new(); // bitmap of pages written
    let mut prev_max = Txid::ZERO;
    let mut bytes_read = 0u64;
    let mut buf = Vec::new();
    let mut batch = WriteBatch::default();
    for (i, info) in files.iter().enumerate() {
        let name = info.to_string();
        // Page headers and LZ4 frames make many small reads: buffer them.
        let reader = std::io::BufReader::with_capacity(
            256 << 10,
            Counted {
                inner: ResumableReader::new(client, info.clone()),
                n: read.clone(),
            },
        );
        let mut dec = Decoder::new(reader).map_err(|e| e.in_file(&name))?;
        let h = dec.header().clone();
        if (h.min_txid, h.max_txid) != (info.min_txid, info.max_txid) {
            return Err(Error::corrupt(
                16,
                format!(
                    "header covers {}-{} but the file is named {}",
                    h.min_txid,
                    h.max_txid,
                    info.name()
                ),
            )
            .in_file(&name));
        }
        if i == 0 {
            if !h.is_snapshot() {
                return Err(Error::NoSnapshots);
            }
            page_size = h.page_size;
            buf = vec![0u8; page_size as usize];
        } else {
            if h.page_size != page_size {
                return Err(Error::Invalid(format!(
                    "input files have mismatched page sizes: {name} has {}, earlier files {page_size}",
                    h.page_size
                )));
            }
            if !(h.min_txid.0 <= prev_max.0 + 1 && h.max_txid > prev_max) {
                return Err(Error::NonContiguous {
                    have: prev_max,
                    next: h.min_txid,
                    file: name,
                });
            }
        }
        prev_max = h.max_txid;
        commit = h.commit;
        let mut pages = 0u64;
        while let Some(pgno) = dec.next_page(&mut buf).map_err(|e| e.in_file(&name))? {
            pages += 1;
            if pages % 4096 == 0 {
                report(i);
            }
            let off = (pgno as u64 - 1) * page_size as u64;
            batch.push(off, &buf, out, out_path)?;
            let idx = (pgno - 1) as usize;
            if have.len() <= idx / 64 {
                have.resize(idx / 64 + 1, 0);
            }
            have[idx / 64] |= 1 << (idx % 64);
        }
        batch.flush(out, out_path)?;
        dec.finish().map_err(|e| e.in_file(&name))?;
        bytes_read += info.size;
        report(i + 1);
    }
    let lock = ltx::lock_pgno(page_size);
    for pgno in 1..=commit {
        if pgno == lock {
            continue;
        }
        let idx = (pgno - 1) as usize;
        if have
            .get(idx / 64)
            .is_none_or(|w| w & (1 << (idx % 64)) == 0)
        {
            return Err(Error::State(format!(
                "restore is incomplete: page {pgno} of {commit} is in none of the files up to {prev_max}; the replica is damaged"
            )));
        }
    }
    out.set_len(commit as u64 * page_size as u64)
        .map_err(|e| Error::io(format!("truncate {}", out_path.display()), e))?;
    if lock <= commit {
        out.write_all_at(
            &vec![0u8; page_size as usize],
            (lock as u64 - 1) * page_size as u64,
        )
        .map_err(|e| Error::io(format!("write {}", out_path.display()), e))?;
    }
    Ok(RestoreReport {
        txid: prev_max,
        files: files.to_vec(),
        bytes_read,
        page_size,
        page_count: commit,
    })
}

/// Consecutive pages gathered into one write (a snapshot's pages come in order).
#[derive(Default)]
struct WriteBatch {
    off: u64,
    data: Vec<u8>,
}

impl WriteBatch {
    const MAX: usize = 1 << 20;

    fn push(&mut self, off: u64, page: &[u8], out: &File, path: &Path) -> Result<()> {
        if !self.data.is_empty()
            && (off != self.off + self.data.len() as u64 || self.data.len() >= Self::MAX)
        {
            self.flush(out, path)?;
        }
        if self.data.is_empty() {
            self.off = off;
        }
        self.data.extend_from_slice(page);
        Ok(())
    }

    fn flush(&mut self, out: &File, path: &Path) -> Result<()> {
        if !self.data.is_empty() {
            out.write_all_at(&self.data, self.off)
                .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
            self.data.clear();
        }
        Ok(())
    }
}

/// Counts the bytes read through it into a shared counter.
struct Counted<R> {
    inner: R,
    n: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// Restores the latest state to `path` if no database exists there yet: the
/// restore-on-start-up pattern. A replica with nothing in it yet is not an error
/// (returns `Ok(None)`, start with a fresh database); an existing database is left alone.
pub fn restore_if_not_exists(
    client: &dyn ReplicaClient,
    path: &Path,
) -> Result<Option<RestoreReport>> {
    if path.exists() {
        log::debug!("{} exists, skipping restore", path.display());
        return Ok(None);
    }
    let opts = RestoreOptions::new(path).integrity_check(IntegrityCheck::Quick);
    match restore(client, &opts) {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.is_no_backup() => {
            log::info!("no backup found for {}, starting fresh", path.display());
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
