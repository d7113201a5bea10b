//! Restore: turn a replica's chain of LTX files back into a database file.
//!
//! [`plan`] picks the files (Litestream v0.5.8+'s algorithm: the best L9 snapshot, then
//! repeatedly the file from any level 8..0 that extends the restored range furthest);
//! [`restore`] streams them in order into a temporary file next to the output, verifying
//! every file's checksum and that every page of the result is present, then fsyncs and
//! moves it into place. The output path is never overwritten, and on any failure nothing
//! is left behind.
//!
//! `mod.rs` holds the options, the report and the file handling around a restore;
//! `plan.rs` the choice of files; `fetch.rs` downloading a large file in parallel ranges;
//! `apply.rs` decoding their pages in order; `write.rs` writing them out on a second
//! thread; `v3/` restoring
//! Litestream v0.3 backups; `follow/` keeping a restored copy up to date (`restore -f`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

mod apply;
mod fetch;
mod follow;
mod plan;
pub mod v3;
mod write;

pub use follow::{
    follow, read_txid, txid_path, FollowOptions, FollowReport, DEFAULT_FOLLOW_INTERVAL,
};

pub use fetch::DEFAULT_PARALLELISM;
pub use plan::{plan, plan_files};

use crate::client::{FileInfo, ReplicaClient};
use crate::durable::{sibling, sync_dir, TempFile};
use crate::error::{Error, Result};
use crate::ltx::{Txid, HEADER_SIZE};

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
    /// Ranged requests in flight for a file larger than 4 MiB of a remote replica
    /// (default [`DEFAULT_PARALLELISM`]; 1 reads every file as one stream). Memory for
    /// downloads stays under `(parallelism + 1) × 4 MiB`.
    pub parallelism: usize,
    /// Permission bits of the restored database and of every file written beside it
    /// (its temp file, a v0.3 restore's WAL); the umask narrows them further. Default
    /// [`DEFAULT_MODE`] (0600: the database's pages stay private until you widen them).
    /// The CLI passes the mode of the database being replaced or restored beside.
    pub mode: u32,
}

/// The permission bits of a restored database when none are asked for: owner only,
/// never wider than what the official Litestream gives (the umask's 0644 default).
pub const DEFAULT_MODE: u32 = 0o600;

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("output", &self.output)
            .field("txid", &self.txid)
            .field("timestamp", &self.timestamp)
            .field("integrity_check", &self.integrity_check)
            .field("progress", &self.progress.is_some())
            .field("parallelism", &self.parallelism)
            .field("mode", &format_args!("{:o}", self.mode))
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
            parallelism: DEFAULT_PARALLELISM,
            mode: DEFAULT_MODE,
        }
    }

    /// Fetches a large file of a remote replica with `n` ranged requests at a time.
    pub fn parallelism(mut self, n: usize) -> Self {
        self.parallelism = n;
        self
    }

    /// Creates the database (and its temp files) with permission bits `mode`.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
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
    /// Set when the database was restored from Litestream v0.3 backups (then `txid` is
    /// zero and `files` empty): the snapshot and WAL segments applied.
    pub v3: Option<v3::Plan>,
}

/// Restores the replica to `opts.output`: from its LTX files, or from the Litestream
/// v0.3 backups it holds when those are newer (or the only ones) and no TXID is asked
/// for, as the official 0.5.17 chooses (see [`v3::preferred`]).
pub fn restore(client: &dyn ReplicaClient, opts: &RestoreOptions) -> Result<RestoreReport> {
    check_output(opts)?;
    if opts.txid.is_none() {
        if let Some(p) = v3::preferred(client, opts.timestamp)? {
            return v3::restore_plan(client, &p, opts);
        }
    }
    restore_ltx(client, opts)
}

/// Restores from the LTX files only.
fn restore_ltx(client: &dyn ReplicaClient, opts: &RestoreOptions) -> Result<RestoreReport> {
    check_output(opts)?;
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
    place(opts, |out, tmp| {
        apply::apply(
            client,
            &files,
            out,
            tmp,
            opts.progress.as_ref(),
            opts.parallelism,
        )
    })
}

/// Refuses an output path that is empty or taken, or that has a stale `-wal`, `-shm` or
/// `-journal` beside it.
fn check_output(opts: &RestoreOptions) -> Result<()> {
    if opts.output.as_os_str().is_empty() {
        return Err(Error::Invalid("restore: output path required".into()));
    }
    if opts.output.symlink_metadata().is_ok() {
        return Err(Error::OutputExists(opts.output.clone()));
    }
    refuse_stale_sidecars(&opts.output)
}

/// Refuses to restore to `output` while a `-wal`, `-shm` or `-journal` of an earlier
/// database lies beside it: SQLite never checks which database such a file belongs to,
/// and would apply it to the restored one (a hot journal is rolled back into it on the
/// first read, whatever the restored database's journal mode).
pub(crate) fn refuse_stale_sidecars(output: &Path) -> Result<()> {
    for suffix in ["-wal", "-shm", "-journal"] {
        let p = sibling(output, suffix);
        if p.symlink_metadata().is_ok() {
            return Err(Error::State(format!(
                "cannot restore to {}: a stale {} exists beside it and SQLite would apply it to the restored database; remove it first",
                output.display(),
                p.display()
            )));
        }
    }
    Ok(())
}

/// Moves the finished private file `tmp` to `output`, never over an existing file (the
/// output may have appeared meanwhile: [`Error::OutputExists`]), and makes the move
/// durable.
pub(crate) fn link_into_place(tmp: &Path, output: &Path) -> Result<()> {
    // Link rather than rename: linking fails if the output exists.
    match fs::hard_link(tmp, output) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::OutputExists(output.to_path_buf()))
        }
        Err(_) => {
            if output.symlink_metadata().is_ok() {
                return Err(Error::OutputExists(output.to_path_buf()));
            }
            fs::rename(tmp, output).map_err(|e| {
                Error::io(
                    format!("rename {} to {}", tmp.display(), output.display()),
                    e,
                )
            })?;
        }
    }
    let _ = fs::remove_file(tmp);
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    sync_dir(dir)
}

/// Runs `fill` on a fresh temp file beside the output, then fsyncs it, links it into
/// place (never over an existing file) and runs the integrity check. On failure nothing
/// is left behind.
fn place(
    opts: &RestoreOptions,
    fill: impl FnOnce(&std::fs::File, &Path) -> Result<RestoreReport>,
) -> Result<RestoreReport> {
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
    let out = crate::durable::create_file(&tmp, opts.mode, true)
        .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
    let report = fill(&out, &tmp)?;
    out.sync_all()
        .map_err(|e| Error::io(format!("fsync {}", tmp.display()), e))?;
    drop(out);
    // Checked while still private: once linked, an application (or a replicator watching
    // the directory) may open it, and its -wal and -shm are no longer ours to remove.
    integrity_check(&tmp, opts.integrity_check, &opts.output)?;
    link_into_place(&tmp, &opts.output)?;
    cleanup.keep();

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

/// Runs `PRAGMA quick_check` or `integrity_check` on `path` (the restore's private file,
/// to become `output`) and requires `ok`; removes the -wal and -shm the check made.
fn integrity_check(path: &Path, check: IntegrityCheck, output: &Path) -> Result<()> {
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
            output.display(),
            result.join("; ")
        )))
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
