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
/// window and behind the database.
pub(super) fn snapshot(
    db: &DbHandle,
    replica: &ReplicaShared,
    known: &mut Known,
    window_start: SystemTime,
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
    let snap = db.snapshot()?;
    let header = snap.header();
    let info = client.write_ltx_file(SNAPSHOT_LEVEL, Txid(1), header.max_txid, &snap.open()?)?;
    known.set(SNAPSHOT_LEVEL, info.clone());
    known.snapshots_dirty = true;
    log::info!(
        "{}: snapshot 1-{} uploaded ({} bytes)",
        db.path().display(),
        header.max_txid,
        info.size
    );
    Ok(Some(info))
}
