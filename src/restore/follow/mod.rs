//! Following a replica (`litestream restore -f`): restore once, then keep applying new LTX
//! files to the output as they appear, until asked to stop.
//!
//! The output stays in rollback-journal mode and readers may keep it open read-only.
//! Each file is applied under SQLite's EXCLUSIVE lock, taken with `BEGIN EXCLUSIVE` on a
//! real connection (readers wait in SQLite's own locking), through a rollback journal in
//! SQLite's format (`journal`), so a reader never sees half a transaction and a follower
//! killed mid-file leaves a hot journal SQLite rolls back. Pages are written through that
//! connection's own file handle: closing a descriptor of ours would drop every POSIX lock
//! the process holds on the file (an in-process reader's too). The applied TXID is kept where the
//! official keeps it, in `<output>-txid` (16 hex digits and a newline), written after each
//! commit; a restarted follower resumes from it (re-applying at most the one file whose
//! commit it did not record, which is harmless: LTX files hold whole pages). A file's
//! pages are decoded before the lock is taken into a `spool`: memory for an L0 file, a
//! temp file beside the output for a big compacted file bridging a gap.

mod journal;
mod spool;

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{IntegrityCheck, RestoreOptions};
use crate::client::{FileInfo, ReplicaClient, ResumableReader, SNAPSHOT_LEVEL};
use crate::durable::{sibling, sync_dir};
use crate::error::{Error, Result};
use crate::ltx::{Decoder, Txid};
use crate::sqlite::Conn;

/// The official default `-follow-interval`.
pub const DEFAULT_FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

/// What to follow into and how often to look.
#[derive(Clone, Debug)]
pub struct FollowOptions {
    /// The database kept up to date. Created by a first restore if missing; an existing
    /// one is resumed from its `-txid` file.
    pub output: PathBuf,
    /// How often to list the replica for new files.
    pub interval: Duration,
    /// Check to run after the first restore.
    pub integrity_check: IntegrityCheck,
    /// Permission bits of a database the first restore creates (see
    /// [`RestoreOptions::mode`]); its journal and `-txid` file get the database's own.
    pub mode: u32,
}

impl FollowOptions {
    /// Follow into `output`, looking every second.
    pub fn new(output: impl Into<PathBuf>) -> Self {
        FollowOptions {
            output: output.into(),
            interval: DEFAULT_FOLLOW_INTERVAL,
            integrity_check: IntegrityCheck::None,
            mode: super::DEFAULT_MODE,
        }
    }
}

/// What a follower did before it stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowReport {
    /// The TXID the output holds.
    pub txid: Txid,
    /// LTX files applied after the first restore (or resume).
    pub files_applied: usize,
    /// True if it resumed an existing output.
    pub resumed: bool,
}

/// The sidecar that records the applied TXID: `<output>-txid`.
pub fn txid_path(output: &Path) -> PathBuf {
    sibling(output, "-txid")
}

/// Reads `<output>-txid`; `None` if it does not exist.
pub fn read_txid(output: &Path) -> Result<Option<Txid>> {
    let p = txid_path(output);
    match fs::read_to_string(&p) {
        Ok(s) => s.trim().parse::<Txid>().map(Some).map_err(|e| {
            Error::State(format!(
                "{} does not hold a transaction id ({e}); delete it and {} to restore again",
                p.display(),
                output.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("read {}", p.display()), e)),
    }
}

/// Writes `<output>-txid` durably (temp file, fsync, rename, directory fsync), with
/// permission bits `mode`.
fn write_txid(output: &Path, txid: Txid, mode: u32) -> Result<()> {
    let p = txid_path(output);
    let tmp = sibling(&p, ".tmp");
    let mut f = crate::durable::create_file(&tmp, mode, false)
        .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
    writeln!(f, "{txid}")
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
    drop(f);
    fs::rename(&tmp, &p).map_err(|e| Error::io(format!("rename to {}", p.display()), e))?;
    sync_dir(parent(output))
}

fn parent(p: &Path) -> &Path {
    p.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Restores `opts.output` (or resumes it), then applies new LTX files every
/// `opts.interval` until `stop` is set; returns once it is, between two files.
pub fn follow(
    client: &dyn ReplicaClient,
    opts: &FollowOptions,
    stop: &AtomicBool,
) -> Result<FollowReport> {
    let out = &opts.output;
    let _ = fs::remove_file(spool::spill_path(out)); // a leftover of a killed follower
    let resumed = out.symlink_metadata().is_ok();
    let txid = if resumed {
        let Some(t) = read_txid(out)? else {
            return Err(Error::State(format!(
                "cannot resume follow mode: database exists but no -txid file found; delete the database to re-restore: {}",
                out.display()
            )));
        };
        let newest = (0..=SNAPSHOT_LEVEL)
            .map(|l| client.ltx_files(l, Txid::ZERO, false))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .map(|f| f.max_txid)
            .max()
            .unwrap_or(Txid::ZERO);
        if newest < t {
            return Err(Error::State(format!(
                "cannot resume follow mode: {} holds transaction {t} but the replica only reaches {newest} (was it reset?); delete {} and {} to re-restore",
                out.display(),
                out.display(),
                txid_path(out).display()
            )));
        }
        log::info!("resuming follow mode of {} from txid {t}", out.display());
        t
    } else {
        first_restore(client, opts)?
    };
    let mut f = Follower::open(client, out, txid)?;
    log::info!(
        "entering follow mode: {} at txid {} every {:?}",
        out.display(),
        f.txid,
        opts.interval
    );
    let mut applied = 0;
    while !stop.load(Ordering::SeqCst) {
        match f.poll(stop) {
            Ok(n) => applied += n,
            Err(e) => log::error!("follow: applying updates to {} failed: {e}", out.display()),
        }
        let until = Instant::now() + opts.interval;
        while !stop.load(Ordering::SeqCst) && Instant::now() < until {
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
    }
    log::info!("follow mode stopped at txid {}", f.txid);
    Ok(FollowReport {
        txid: f.txid,
        files_applied: applied,
        resumed,
    })
}

/// Restores the replica's LTX files beside the output, switches the copy to
/// rollback-journal mode, records its TXID, then moves it into place.
fn first_restore(client: &dyn ReplicaClient, opts: &FollowOptions) -> Result<Txid> {
    let out = &opts.output;
    super::refuse_stale_sidecars(out)?;
    let tmp = crate::durable::hidden_sibling(out, ".follow-tmp");
    for p in [
        tmp.clone(),
        sibling(&tmp, "-wal"),
        sibling(&tmp, "-shm"),
        sibling(&tmp, "-journal"),
    ] {
        let _ = fs::remove_file(p); // a leftover of a follower killed here
    }
    let ro = RestoreOptions::new(&tmp)
        .integrity_check(opts.integrity_check)
        .mode(opts.mode);
    let report = super::restore_ltx(client, &ro)?;
    let set_mode = (|| {
        let f = OpenOptions::new().read(true).write(true).open(&tmp)?;
        f_write_mode(&f)?;
        f.sync_all()
    })();
    set_mode.map_err(|e| {
        Error::io(
            format!("switch {} to rollback-journal mode", tmp.display()),
            e,
        )
    })?;
    let mode = crate::durable::mode_like(&tmp, opts.mode);
    // The sidecar only once the database is ours: written first, it would overwrite the
    // TXID of a database that appeared meanwhile. A crash between the two leaves a
    // database without one, which resuming reports.
    if let Err(e) = super::link_into_place(&tmp, out) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    write_txid(out, report.txid, mode)?;
    Ok(report.txid)
}

/// Header bytes 18/19 = 1: rollback-journal mode, so readers never look for a WAL.
fn f_write_mode(f: &File) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[1, 1], 18)
}

/// An output being followed: the connection that holds SQLite's locks and whose file
/// handle pages are written through, open for the follower's lifetime.
struct Follower<'a> {
    client: &'a dyn ReplicaClient,
    path: PathBuf,
    conn: Conn,
    page_size: u32,
    txid: Txid,
    /// Polls so far: with nothing new in L0, the higher levels are looked at on the
    /// first poll and every `IDLE_BRIDGE_EVERY` polls (their L0 files may have been
    /// compacted away while no follower ran).
    polls: u64,
}

/// How often an idle follower also lists levels 1..8.
const IDLE_BRIDGE_EVERY: u64 = 30;

impl<'a> Follower<'a> {
    fn open(client: &'a dyn ReplicaClient, path: &Path, txid: Txid) -> Result<Self> {
        let conn = Conn::open(path)?;
        conn.busy_timeout(200);
        // The first read rolls back a hot journal left by a follower killed mid-file.
        let mut tries = 0;
        loop {
            match conn.query_i64("SELECT count(*) FROM sqlite_master") {
                Ok(_) => break,
                Err(e) if is_busy(&e) && tries < 300 => tries += 1,
                Err(e) => return Err(e),
            }
        }
        if conn
            .query_column("PRAGMA journal_mode")?
            .first()
            .map(String::as_str)
            == Some("wal")
        {
            conn.exec("PRAGMA journal_mode=DELETE")?;
        }
        let mut h = [0u8; 2];
        if !conn.main_file()?.read_at(&mut h, 16)? {
            return Err(Error::State(format!(
                "{} is not a database: its header reads short",
                path.display()
            )));
        }
        let ps = u16::from_be_bytes(h);
        Ok(Follower {
            client,
            path: path.to_path_buf(),
            conn,
            page_size: if ps == 1 { 65536 } else { ps as u32 },
            txid,
            polls: 0,
        })
    }

    /// Applies every file that continues the output; returns how many.
    fn poll(&mut self, stop: &AtomicBool) -> Result<usize> {
        let l0 = self.client.ltx_files(0, self.txid.next(), false)?;
        let idle_check = self.polls % IDLE_BRIDGE_EVERY == 0;
        self.polls += 1;
        let mut i = 0;
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            while i < l0.len() && l0[i].max_txid <= self.txid {
                i += 1;
            }
            let next = if i < l0.len() && l0[i].min_txid <= self.txid.next() {
                i += 1;
                l0[i - 1].clone()
            } else if i < l0.len() || (idle_check && n == 0) {
                // A gap in L0 (its files were compacted away), or nothing new in L0 now
                // and then: bridge from above.
                match self.bridge()? {
                    Some(f) => f,
                    None => break,
                }
            } else {
                break;
            };
            self.apply(&next, stop)?;
            n += 1;
        }
        Ok(n)
    }

    /// The file of levels 1..=8 that continues the output furthest.
    fn bridge(&self) -> Result<Option<FileInfo>> {
        let mut best: Option<FileInfo> = None;
        for level in 1..SNAPSHOT_LEVEL {
            for f in self.client.ltx_files(level, Txid::ZERO, false)? {
                if f.min_txid <= self.txid.next()
                    && f.max_txid > self.txid
                    && best.as_ref().is_none_or(|b| f.max_txid > b.max_txid)
                {
                    best = Some(f);
                }
            }
        }
        Ok(best)
    }

    /// Applies one file under SQLite's EXCLUSIVE lock and records its TXID.
    fn apply(&mut self, info: &FileInfo, stop: &AtomicBool) -> Result<()> {
        let name = info.to_string();
        let mut dec = Decoder::new(BufReader::with_capacity(
            256 << 10,
            ResumableReader::new(self.client, info.clone()),
        ))
        .map_err(|e| e.in_file(&name))?;
        let h = dec.header().clone();
        super::apply::header_matches_name(&h, info)?;
        if h.page_size != self.page_size {
            return Err(Error::State(format!(
                "{name} has {}-byte pages but {} has {}; delete it and its -txid file to re-restore",
                h.page_size,
                self.path.display(),
                self.page_size
            )));
        }
        let mut pages = spool::Spool::new(self.page_size, spool::spill_path(&self.path));
        let mut buf = vec![0u8; self.page_size as usize];
        while let Some(pgno) = dec.next_page(&mut buf).map_err(|e| e.in_file(&name))? {
            pages.push(pgno, &buf)?;
        }
        dec.finish().map_err(|e| e.in_file(&name))?;

        self.lock(stop)?;
        let r = self
            .conn
            .main_file()
            .and_then(|f| journal::commit_pages(&self.path, &f, self.page_size, &pages, h.commit));
        // Nothing was written through SQLite: ROLLBACK only releases the lock (a COMMIT
        // could run an auto-vacuum step against the connection's stale page 1).
        let end = self.conn.exec("ROLLBACK");
        r?;
        end?;
        self.txid = info.max_txid;
        write_txid(
            &self.path,
            self.txid,
            crate::durable::mode_like(&self.path, super::DEFAULT_MODE),
        )?;
        log::debug!("follow: applied {name} ({} pages)", pages.len());
        Ok(())
    }

    /// `BEGIN EXCLUSIVE`, waiting for readers to finish.
    fn lock(&self, stop: &AtomicBool) -> Result<()> {
        loop {
            match self.conn.exec("BEGIN EXCLUSIVE") {
                Ok(()) => return Ok(()),
                Err(e) if is_busy(&e) && !stop.load(Ordering::SeqCst) => {
                    log::debug!("follow: waiting for readers of {}", self.path.display());
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn is_busy(e: &Error) -> bool {
    matches!(e, Error::Sqlite { code, .. } if code & 0xff == 5 || code & 0xff == 6)
}
