//! Restoring Litestream v0.3 backups (the `generations/` tree of snapshots and WAL
//! segments), the way the official 0.5.17 restores them: latest or by timestamp, from
//! every backend v0.3 wrote to (file and S3 as the official; GCS, Azure Blob and SFTP
//! too). Backends v0.3 never wrote to say they cannot.
//!
//! `layout` (names and the listing), `plan` (which snapshot and segments; pure, fuzzed),
//! `apply` (decompress, rebuild each WAL, checkpoint through SQLite), `lz4` (the LZ4
//! frame format v0.3 wrote; fuzzed). [`super::restore`] uses this by itself when the
//! replica's v0.3 backups are newer than its LTX files (or there are no LTX files), as
//! the official does.

mod apply;
mod layout;
mod lz4;
mod plan;

use std::time::SystemTime;

pub use layout::{list, Listing, Segment, Snapshot, GENERATIONS_DIR};
pub use plan::{plan_listing, Plan};

use super::{RestoreOptions, RestoreReport};
use crate::client::{ReplicaClient, SNAPSHOT_LEVEL};
use crate::error::{Error, Result};
use crate::ltx::Txid;

/// Lists the replica's v0.3 backups and plans a restore of the latest state, or of the
/// state as of `timestamp`.
pub fn plan(client: &dyn ReplicaClient, timestamp: Option<SystemTime>) -> Result<Plan> {
    plan_listing(&list(client)?, timestamp)
}

/// The v0.3 plan when the official would restore from v0.3 backups rather than LTX files
/// (`shouldUseV3Restore`): the replica holds v0.3 backups and no LTX files, or, without
/// a target time, its newest v0.3 object is newer than its newest LTX file, or, with
/// one, its best v0.3 snapshot is newer than its best LTX snapshot. `None` otherwise,
/// and for backends that cannot read v0.3 backups.
pub fn preferred(
    client: &dyn ReplicaClient,
    timestamp: Option<SystemTime>,
) -> Result<Option<Plan>> {
    let listing = match list(client) {
        Ok(l) => l,
        Err(Error::Unsupported(m)) => {
            log::debug!("not looking for v0.3 backups: {m}");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let Some((_, v3_updated)) = listing.time_bounds() else {
        return Ok(None);
    };
    let mut ltx = Vec::new();
    for level in 0..=SNAPSHOT_LEVEL {
        ltx.extend(client.ltx_files(level, Txid::ZERO, false)?);
    }
    let use_v3 = if ltx.is_empty() {
        log::debug!("using the v0.3 backups: the replica has no LTX files");
        true
    } else if let Some(ts) = timestamp {
        let ltx_snapshot = client
            .ltx_files(SNAPSHOT_LEVEL, Txid::ZERO, true)?
            .into_iter()
            .filter(|f| f.created_at < ts)
            .map(|f| f.created_at)
            .max();
        plan::best_snapshot(&listing, Some(ts))
            .is_some_and(|s| ltx_snapshot.is_none_or(|l| s.created_at > l))
    } else {
        let ltx_updated = ltx.iter().map(|f| f.created_at).max();
        ltx_updated.is_none_or(|l| v3_updated > l)
    };
    if !use_v3 {
        return Ok(None);
    }
    plan_listing(&listing, timestamp).map(Some)
}

/// Restores the replica's v0.3 backups to `opts.output` (latest, or as of
/// `opts.timestamp`; `opts.txid` has no meaning for them and is refused), whatever LTX
/// files it also holds.
pub fn restore(client: &dyn ReplicaClient, opts: &RestoreOptions) -> Result<RestoreReport> {
    if opts.txid.is_some() {
        return Err(Error::Invalid(
            "v0.3 backups have no transaction ids: restore them by -timestamp or latest".into(),
        ));
    }
    super::check_output(opts)?;
    let p = plan(client, opts.timestamp)?;
    restore_plan(client, &p, opts)
}

/// Writes the restore `p` to `opts.output` (already checked to be free).
pub(super) fn restore_plan(
    client: &dyn ReplicaClient,
    p: &Plan,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    log::debug!(
        "restoring v0.3 generation {} from snapshot {:08x} and {} WAL segments",
        p.snapshot.generation,
        p.snapshot.index,
        p.segments.len()
    );
    super::place(opts, |out, tmp| {
        let a = apply::apply(client, p, out, tmp)?;
        Ok(RestoreReport {
            txid: Txid::ZERO,
            files: Vec::new(),
            bytes_read: a.bytes_read,
            page_size: a.page_size,
            page_count: a.page_count,
            v3: Some(p.clone()),
        })
    })
}

/// The LZ4 decoder and the listing parser over arbitrary bytes, for the fuzz target.
#[cfg(fuzzing)]
pub(crate) fn fuzz(data: &[u8]) {
    let _ = lz4::decode(data, &mut std::io::sink());
    if let Ok(s) = std::str::from_utf8(data) {
        let objects: Vec<crate::client::ObjectInfo> = s
            .lines()
            .enumerate()
            .map(|(i, l)| crate::client::ObjectInfo {
                path: l.to_string(),
                size: i as u64,
                modified: std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs((i * 7 % 5) as u64),
            })
            .collect();
        let listing = Listing::from_objects(&objects);
        let _ = listing.time_bounds();
        let _ = plan_listing(&listing, None);
        let _ = plan_listing(
            &listing,
            Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(2)),
        );
    }
}
