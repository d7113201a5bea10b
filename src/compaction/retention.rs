//! Retention: snapshots older than the retention period (always keeping the newest, and
//! the newest one older than the period, which the start of the period restores from),
//! files of levels 1.. wholly before the snapshot floor, and L0 files already compacted
//! into L1.

use std::time::{Duration, SystemTime};

use super::known::Known;
use crate::client::{FileInfo, SNAPSHOT_LEVEL};
use crate::db::DbHandle;
use crate::error::Result;
use crate::ltx::Txid;
use crate::replica::ReplicaShared;

/// Deletes snapshots older than `retention` but the newest of them (and always the newest
/// of all), then every file of levels 1..=`max_level` wholly before the oldest snapshot
/// kept (never the last file of a level).
pub(super) fn enforce_snapshot_retention(
    db: &DbHandle,
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
    let client = replica.client();
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
    // The newest snapshot older than the cutoff stays, with the files after it: a restore
    // to any time inside the retention window starts from it (and an in-flight restore
    // keeps its files). Deleting it too left the oldest part of the window unrestorable.
    let delete: Vec<FileInfo> = snaps[..keep_from.saturating_sub(1)].to_vec();
    if keep_from < last {
        known.snapshots_due = Some(snaps[keep_from].created_at + retention);
    }
    let floor = if keep_from == 0 {
        Txid::ZERO
    } else {
        snaps[keep_from - 1].max_txid
    };
    if !delete.is_empty() {
        client.delete_ltx_files(&delete)?;
        log::info!(
            "{}: deleted {} expired snapshots",
            db.path().display(),
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
/// first younger file (so L0 stays contiguous) and never deleting the newest one. False
/// when it did not look (nothing changed since the last run) or there is no L1 yet.
pub(super) fn enforce_l0_retention(
    replica: &ReplicaShared,
    known: &mut Known,
    retention: Duration,
    now: SystemTime,
) -> Result<bool> {
    if !known.l0_dirty && known.l0_due.is_none_or(|d| now < d) {
        return Ok(false);
    }
    known.l0_dirty = false;
    known.l0_due = None;
    let client = replica.client();
    let Some(max_l1) = known.newest(client, 1)?.map(|f| f.max_txid) else {
        return Ok(false);
    };
    let l0 = client.ltx_files(0, Txid::ZERO, false)?;
    let cutoff = now.checked_sub(retention).unwrap_or(std::time::UNIX_EPOCH);
    let mut doomed = Vec::new();
    let mut stopped = false;
    let (mut not_compacted, mut too_recent) = (0u64, 0u64);
    for (i, f) in l0.iter().enumerate() {
        if f.max_txid > max_l1 {
            not_compacted += 1;
        } else if stopped || i + 1 == l0.len() || f.created_at > cutoff {
            too_recent += 1;
        }
        if stopped || i + 1 == l0.len() {
            stopped = true;
            continue;
        }
        if f.created_at > cutoff {
            if f.max_txid <= max_l1 {
                known.l0_due = Some(f.created_at + retention);
            }
            stopped = true;
            continue;
        }
        if f.max_txid <= max_l1 {
            doomed.push(f.clone());
        }
    }
    replica.note_l0_retention([doomed.len() as u64, not_compacted, too_recent]);
    if let Some(last) = doomed.last() {
        let through = last.max_txid;
        client.delete_ltx_files(&doomed)?;
        replica.note_l0_deleted(through);
    }
    Ok(true)
}
