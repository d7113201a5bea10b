//! L9 snapshots: a full copy of the database uploaded to level 9 once per snapshot
//! interval, when the newest snapshot is behind the database.

use std::time::SystemTime;

use super::known::Known;
use crate::client::{FileInfo, SNAPSHOT_LEVEL};
use crate::db::DbHandle;
use crate::error::Result;
use crate::ltx::Txid;
use crate::replica::ReplicaShared;

/// Uploads a full snapshot to level 9 if the newest snapshot is older than the current
/// window and behind the database; copies one on the server instead when a level up to
/// `max_level` already ends in a full snapshot made in this window.
pub(super) fn snapshot(
    db: &DbHandle,
    replica: &ReplicaShared,
    known: &mut Known,
    window_start: SystemTime,
    max_level: u8,
) -> Result<Option<FileInfo>> {
    let client = replica.client();
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
    // A full snapshot made in this window already on the replica (the first file of a
    // new replica, or the first compaction of its L0 files) is copied on the server.
    for level in 0..=max_level.min(SNAPSHOT_LEVEL - 1) {
        let Some(f) = known.newest(client, level)? else {
            continue;
        };
        // Made in this window: as good a snapshot for it as one taken now.
        if f.min_txid != Txid(1) || f.created_at <= window_start {
            continue;
        }
        if dst.as_ref().is_some_and(|d| d.max_txid >= f.max_txid) {
            break;
        }
        if let Some(info) = client.copy_ltx_file(&f, SNAPSHOT_LEVEL)? {
            log::info!(
                "{}: snapshot 1-{pos} copied from {f} on the server ({} bytes)",
                db.path().display(),
                info.size
            );
            return Ok(Some(record(known, info)));
        }
        break;
    }
    let snap = db.snapshot()?;
    let header = snap.header();
    let info = client.write_ltx_file(SNAPSHOT_LEVEL, Txid(1), header.max_txid, &snap.open()?)?;
    log::info!(
        "{}: snapshot 1-{} uploaded ({} bytes)",
        db.path().display(),
        header.max_txid,
        info.size
    );
    Ok(Some(record(known, info)))
}

/// Records `info` as the newest snapshot.
fn record(known: &mut Known, info: FileInfo) -> FileInfo {
    known.set(SNAPSHOT_LEVEL, info.clone());
    known.snapshots_dirty = true;
    info
}
