//! Compaction levels, compaction of one level into the next, L9 snapshots and retention.
//!
//! Level 0 holds one file per sync. Each higher level `L` periodically merges the files of
//! `L-1` that come after its own newest file into one file, so a restore reads a few large
//! files instead of thousands of small ones. Level 9 holds full snapshots. Files in a
//! level never overlap: each compaction starts right after the level's newest file.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::client::{FileInfo, ReplicaClient, ResumableReader, SNAPSHOT_LEVEL};
use crate::db::{Cmd, DbShared};
use crate::error::{Error, Result};
use crate::ltx::{self, Decoder, PageEncoding, Txid};
use crate::replica::ReplicaShared;

/// One compaction level and how often it is compacted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionLevel {
    /// Level number, 0..=8.
    pub level: u8,
    /// Compaction interval (zero for level 0).
    pub interval: Duration,
}

/// The compaction levels of a store: level 0 (required), then levels 1.. with intervals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactionLevels(Vec<CompactionLevel>);

impl Default for CompactionLevels {
    /// Litestream's defaults: L1 every 30 s, L2 every 5 min, L3 every hour.
    fn default() -> Self {
        CompactionLevels(vec![
            CompactionLevel {
                level: 0,
                interval: Duration::ZERO,
            },
            CompactionLevel {
                level: 1,
                interval: Duration::from_secs(30),
            },
            CompactionLevel {
                level: 2,
                interval: Duration::from_secs(300),
            },
            CompactionLevel {
                level: 3,
                interval: Duration::from_secs(3600),
            },
        ])
    }
}

impl CompactionLevels {
    /// Validates a level list: non-empty, `levels[i].level == i`, at most level 8, level 0
    /// with no interval and every other level with one.
    pub fn new(levels: Vec<CompactionLevel>) -> Result<Self> {
        if levels.is_empty() {
            return Err(Error::Invalid(
                "compaction levels: level 0 is required".into(),
            ));
        }
        for (i, l) in levels.iter().enumerate() {
            if l.level as usize != i {
                return Err(Error::Invalid(format!(
                    "compaction levels: level at index {i} is {}, want {i}",
                    l.level
                )));
            }
            if l.level >= SNAPSHOT_LEVEL {
                return Err(Error::Invalid(format!(
                    "compaction levels: level {} is reserved for snapshots (max 8)",
                    l.level
                )));
            }
            if l.level == 0 && !l.interval.is_zero() {
                return Err(Error::Invalid(
                    "compaction levels: level 0 takes no interval".into(),
                ));
            }
            if l.level > 0 && l.interval.is_zero() {
                return Err(Error::Invalid(format!(
                    "compaction levels: level {} needs an interval",
                    l.level
                )));
            }
        }
        Ok(CompactionLevels(levels))
    }

    /// Level 0 plus levels 1.. with the given intervals (the config file's `levels:` form).
    pub fn from_intervals(intervals: &[Duration]) -> Result<Self> {
        let mut v = vec![CompactionLevel {
            level: 0,
            interval: Duration::ZERO,
        }];
        for (i, d) in intervals.iter().enumerate() {
            v.push(CompactionLevel {
                level: i as u8 + 1,
                interval: *d,
            });
        }
        Self::new(v)
    }

    /// The levels, level 0 first.
    pub fn levels(&self) -> &[CompactionLevel] {
        &self.0
    }

    /// The highest compaction level.
    pub fn max_level(&self) -> u8 {
        self.0.last().map(|l| l.level).unwrap_or(0)
    }
}

/// The newest file of a level (by max TXID), if any.
fn newest(client: &dyn ReplicaClient, level: u8) -> Result<Option<FileInfo>> {
    Ok(client
        .ltx_files(level, Txid::ZERO, false)?
        .into_iter()
        .max_by_key(|f| (f.max_txid, f.min_txid)))
}

/// What the compactor knows about one replica's levels, so that an idle pass makes no
/// requests at all. Only this process writes the replica, so the cache stays true; it is
/// dropped after any error.
#[derive(Debug, Default)]
pub(crate) struct Known {
    /// Newest file per level 0..=9: `None` = not known (list it), `Some(None)` = empty.
    newest: [Option<Option<FileInfo>>; 10],
    /// A new L1 file exists since L0 retention last ran.
    pub l0_dirty: bool,
    /// When L0 retention next has a file old enough to delete.
    pub l0_due: Option<SystemTime>,
    /// A new snapshot exists since snapshot retention last ran.
    pub snapshots_dirty: bool,
    /// When snapshot retention next has a snapshot old enough to delete.
    pub snapshots_due: Option<SystemTime>,
    /// The replica's rebase count this cache reflects.
    pub rebases: u64,
}

impl Known {
    /// The newest file of `level`, from the cache or by listing.
    pub(crate) fn newest(
        &mut self,
        client: &dyn ReplicaClient,
        level: u8,
    ) -> Result<Option<FileInfo>> {
        if let Some(n) = &self.newest[level as usize] {
            return Ok(n.clone());
        }
        let n = newest(client, level)?;
        self.newest[level as usize] = Some(n.clone());
        Ok(n)
    }

    pub(crate) fn set(&mut self, level: u8, info: FileInfo) {
        self.newest[level as usize] = Some(Some(info));
    }

    /// Forgets everything (after an error, or when another component changed the replica).
    pub(crate) fn forget(&mut self) {
        *self = Known {
            rebases: self.rebases,
            l0_dirty: true,
            snapshots_dirty: true,
            ..Known::default()
        };
    }
}

/// Removes a temp file when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Merges the files of `level - 1` that follow `level`'s newest file into one file of
/// `level`. `window_start` is the start of the current compaction window: a level whose
/// newest file is younger than it was compacted already (after a restart). Returns the
/// new file, or `None` when there was nothing to do.
pub(crate) fn compact_level(
    db: &DbShared,
    replica: &ReplicaShared,
    known: &mut Known,
    level: u8,
    window_start: SystemTime,
    encoding: PageEncoding,
) -> Result<Option<FileInfo>> {
    let client = replica.client.as_ref();
    let dst = known.newest(client, level)?;
    if let Some(d) = &dst {
        if d.created_at > window_start {
            return Ok(None);
        }
    }
    // Nothing new below: no request at all.
    let src_max = if level == 1 {
        replica.remote_txid()
    } else {
        known
            .newest(client, level - 1)?
            .map(|f| f.max_txid)
            .or(Some(Txid::ZERO))
    };
    if let Some(sm) = src_max {
        if sm <= dst.as_ref().map(|d| d.max_txid).unwrap_or_default() {
            return Ok(None);
        }
    }
    let seek = dst.as_ref().map(|d| d.max_txid.next()).unwrap_or(Txid(1));
    let src = client.ltx_files(level - 1, seek, false)?;
    // The longest contiguous run from the first file.
    let mut inputs: Vec<FileInfo> = Vec::new();
    for f in src {
        let ok = match inputs.last() {
            None => true,
            Some(prev) => f.min_txid.0 <= prev.max_txid.0 + 1 && f.max_txid > prev.max_txid,
        };
        if !ok {
            break;
        }
        inputs.push(f);
        if inputs.len() >= 512 {
            break;
        }
    }
    let Some(first) = inputs.first() else {
        return Ok(None);
    };
    if first.min_txid != seek && dst.is_some() {
        log::warn!(
            "{}: level {} ends at {} but level {} continues at {}; the level will have a gap",
            db.path.display(),
            level,
            seek.0.saturating_sub(1),
            level - 1,
            first.min_txid
        );
    }
    let min = first.min_txid;
    let max = inputs.last().map(|f| f.max_txid).unwrap_or(min);

    let tmp = TempFile(
        db.meta_path
            .join(format!("compact-{level}-{min}-{max}.ltx.tmp")),
    );
    {
        let mut decoders = Vec::with_capacity(inputs.len());
        for f in &inputs {
            // Prefer our local copy of an L0 file (no download, and never a half-visible
            // object on an eventually consistent store) when it is the same file.
            let local = if level == 1 && f.min_txid == f.max_txid {
                File::open(db.l0_path(f.min_txid))
                    .ok()
                    .filter(|file| file.metadata().is_ok_and(|m| m.len() == f.size))
            } else {
                None
            };
            let reader: Box<dyn std::io::Read + '_> = match local {
                Some(file) => Box::new(std::io::BufReader::new(file)),
                _ => Box::new(std::io::BufReader::with_capacity(
                    256 << 10,
                    ResumableReader::new(client, f.clone()),
                )),
            };
            let d = Decoder::new(reader).map_err(|e| e.in_file(&f.to_string()))?;
            decoders.push((f.to_string(), d));
        }
        let out = File::create(&tmp.0)
            .map_err(|e| Error::io(format!("create {}", tmp.0.display()), e))?;
        let (w, _) = ltx::compact(decoders, BufWriter::with_capacity(1 << 20, out), encoding)?;
        let f = w
            .into_inner()
            .map_err(|e| Error::io(format!("write {}", tmp.0.display()), e.into_error()))?;
        f.sync_all()
            .map_err(|e| Error::io(format!("fsync {}", tmp.0.display()), e))?;
    }
    let f = File::open(&tmp.0).map_err(|e| Error::io(format!("open {}", tmp.0.display()), e))?;
    let info = client.write_ltx_file(level, min, max, &f)?;
    known.set(level, info.clone());
    if level == 1 {
        known.l0_dirty = true;
    }
    log::debug!(
        "{}: compacted {} files into level {level} {min}-{max} ({} bytes)",
        db.path.display(),
        inputs.len(),
        info.size
    );
    Ok(Some(info))
}

/// Uploads a full snapshot to level 9 if the newest snapshot is older than the current
/// window and behind the database.
pub(crate) fn snapshot(
    db: &DbShared,
    replica: &ReplicaShared,
    known: &mut Known,
    window_start: SystemTime,
) -> Result<Option<FileInfo>> {
    let client = replica.client.as_ref();
    let dst = known.newest(client, SNAPSHOT_LEVEL)?;
    let pos = db.txid();
    if let Some(d) = &dst {
        if d.created_at > window_start || d.max_txid >= pos {
            return Ok(None);
        }
    }
    if pos == Txid::ZERO {
        return Ok(None);
    }
    let (path, header) = db.request(Cmd::Snapshot)?;
    let tmp = TempFile(path);
    let f = File::open(&tmp.0).map_err(|e| Error::io(format!("open {}", tmp.0.display()), e))?;
    let info = client.write_ltx_file(SNAPSHOT_LEVEL, Txid(1), header.max_txid, &f)?;
    known.set(SNAPSHOT_LEVEL, info.clone());
    known.snapshots_dirty = true;
    log::info!(
        "{}: snapshot 1-{} uploaded ({} bytes)",
        db.path.display(),
        header.max_txid,
        info.size
    );
    Ok(Some(info))
}

/// Deletes snapshots older than `retention` (always keeping the newest), then every file
/// of levels 1..=`max_level` wholly before the snapshot preceding the oldest one kept
/// (never the last file of a level).
pub(crate) fn enforce_snapshot_retention(
    db: &DbShared,
    replica: &ReplicaShared,
    known: &mut Known,
    retention: Duration,
    max_level: u8,
    now: SystemTime,
) -> Result<()> {
    if !known.snapshots_dirty && known.snapshots_due.is_none_or(|d| now < d) {
        return Ok(());
    }
    known.snapshots_dirty = false;
    known.snapshots_due = None;
    let client = replica.client.as_ref();
    let mut snaps = client.ltx_files(SNAPSHOT_LEVEL, Txid::ZERO, false)?;
    snaps.sort_by_key(|f| (f.max_txid, f.created_at));
    if snaps.is_empty() {
        return Ok(());
    }
    let cutoff = now.checked_sub(retention).unwrap_or(std::time::UNIX_EPOCH);
    let last = snaps.len() - 1;
    let keep_from = snaps
        .iter()
        .position(|f| f.created_at >= cutoff)
        .unwrap_or(last)
        .min(last);
    let delete: Vec<FileInfo> = snaps[..keep_from].to_vec();
    if keep_from < last {
        known.snapshots_due = Some(snaps[keep_from].created_at + retention);
    }
    // One snapshot older than needed stays the floor, so in-flight restores keep their files.
    let floor = if keep_from == 0 {
        Txid::ZERO
    } else {
        snaps[keep_from - 1].max_txid
    };
    if !delete.is_empty() {
        client.delete_ltx_files(&delete)?;
        log::info!(
            "{}: deleted {} expired snapshots",
            db.path.display(),
            delete.len()
        );
    }
    if floor == Txid::ZERO {
        return Ok(());
    }
    for level in 1..=max_level {
        let files = client.ltx_files(level, Txid::ZERO, false)?;
        if files.len() <= 1 {
            continue;
        }
        let doomed: Vec<FileInfo> = files[..files.len() - 1]
            .iter()
            .filter(|f| f.max_txid < floor)
            .cloned()
            .collect();
        if !doomed.is_empty() {
            client.delete_ltx_files(&doomed)?;
        }
    }
    Ok(())
}

/// Deletes L0 files already compacted into L1 and older than `retention`, stopping at the
/// first younger file (so L0 stays contiguous) and never deleting the newest one. Then
/// deletes local L0 copies every replica is done with.
pub(crate) fn enforce_l0_retention(
    db: &DbShared,
    replica: &ReplicaShared,
    known: &mut Known,
    retention: Duration,
    now: SystemTime,
) -> Result<()> {
    if !known.l0_dirty && known.l0_due.is_none_or(|d| now < d) {
        return Ok(());
    }
    known.l0_dirty = false;
    known.l0_due = None;
    let client = replica.client.as_ref();
    let Some(max_l1) = known.newest(client, 1)?.map(|f| f.max_txid) else {
        return Ok(());
    };
    let l0 = client.ltx_files(0, Txid::ZERO, false)?;
    let cutoff = now.checked_sub(retention).unwrap_or(std::time::UNIX_EPOCH);
    let mut doomed = Vec::new();
    for (i, f) in l0.iter().enumerate() {
        if i + 1 == l0.len() {
            break;
        }
        if f.created_at > cutoff {
            if f.max_txid <= max_l1 {
                known.l0_due = Some(f.created_at + retention);
            }
            break;
        }
        if f.max_txid <= max_l1 {
            doomed.push(f.clone());
        }
    }
    if let Some(last) = doomed.last() {
        let through = last.max_txid;
        client.delete_ltx_files(&doomed)?;
        if let Ok(mut s) = replica.state.lock() {
            s.l0_deleted_through = s.l0_deleted_through.max(through);
        }
    }
    cleanup_local_l0(db);
    Ok(())
}

/// Deletes local L0 files that every replica has uploaded and retired, keeping the newest
/// (it anchors the local position).
pub(crate) fn cleanup_local_l0(db: &DbShared) {
    let through = db
        .replicas
        .iter()
        .map(|r| r.state().l0_deleted_through)
        .min()
        .unwrap_or_default();
    let newest = db.txid();
    if through == Txid::ZERO {
        return;
    }
    let Ok(rd) = std::fs::read_dir(db.l0_dir()) else {
        return;
    };
    for e in rd.flatten() {
        if let Some((_, max)) = e.file_name().to_str().and_then(ltx::parse_file_name) {
            if max <= through && max < newest {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_validate() {
        assert_eq!(CompactionLevels::default().max_level(), 3);
        let s = Duration::from_secs(1);
        assert!(CompactionLevels::from_intervals(&[s, s]).is_ok());
        assert!(CompactionLevels::from_intervals(&[Duration::ZERO]).is_err());
        assert!(CompactionLevels::new(vec![]).is_err());
        assert!(CompactionLevels::new(vec![CompactionLevel {
            level: 1,
            interval: s
        }])
        .is_err());
        assert!(CompactionLevels::from_intervals(&[s; 9]).is_err());
        assert!(CompactionLevels::new(vec![CompactionLevel {
            level: 0,
            interval: s
        }])
        .is_err());
    }
}
