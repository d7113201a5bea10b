//! What the compaction thread knows about one replica's levels, so that an idle pass
//! makes no requests at all.

use std::time::SystemTime;

use crate::client::{FileInfo, ReplicaClient};
use crate::error::Result;
use crate::ltx::Txid;

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
pub(super) struct Known {
    /// Newest file per level 0..=9: `None` = not known (list it), `Some(None)` = empty.
    newest: [Option<Option<FileInfo>>; 10],
    /// A new L1 file exists since L0 retention last ran.
    pub(super) l0_dirty: bool,
    /// When L0 retention next has a file old enough to delete.
    pub(super) l0_due: Option<SystemTime>,
    /// A new snapshot exists since snapshot retention last ran.
    pub(super) snapshots_dirty: bool,
    /// When snapshot retention next has a snapshot old enough to delete.
    pub(super) snapshots_due: Option<SystemTime>,
    /// The replica's rebase count this cache reflects.
    pub(super) rebases: u64,
}

impl Known {
    /// The newest file of `level`, from the cache or by listing.
    pub(super) fn newest(
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

    pub(super) fn set(&mut self, level: u8, info: FileInfo) {
        self.newest[level as usize] = Some(Some(info));
    }

    /// Forgets everything (after an error, or when another component changed the replica).
    pub(super) fn forget(&mut self) {
        *self = Known {
            rebases: self.rebases,
            l0_dirty: true,
            snapshots_dirty: true,
            ..Known::default()
        };
    }
}
