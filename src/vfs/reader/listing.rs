//! Listing the whole replica for a plan (open, a rebuild, time travel): one recursive
//! listing ([`ReplicaClient::all_ltx_files`]) where the backend has one, else one listing
//! per level.

use std::sync::atomic::Ordering;

use super::ReplicaReader;
use crate::client::{FileInfo, SNAPSHOT_LEVEL};
use crate::error::Result;
use crate::ltx::Txid;

impl ReplicaReader {
    /// Every LTX file of every level. With `accurate_timestamps` each file's time is its
    /// header timestamp (what `restore -timestamp` plans with), as
    /// [`ReplicaClient::ltx_files`](crate::client::ReplicaClient::ltx_files) gives it.
    pub(super) fn list_replica(&self, accurate_timestamps: bool) -> Result<Vec<FileInfo>> {
        self.counters.lists.fetch_add(1, Ordering::Relaxed);
        if let Some(all) = self.client.all_ltx_files(accurate_timestamps)? {
            return Ok(all);
        }
        let mut listing = self.client.ltx_files(0, Txid::ZERO, accurate_timestamps)?;
        for level in 1..=SNAPSHOT_LEVEL {
            self.counters.lists.fetch_add(1, Ordering::Relaxed);
            listing.extend(
                self.client
                    .ltx_files(level, Txid::ZERO, accurate_timestamps)?,
            );
        }
        Ok(listing)
    }
}
