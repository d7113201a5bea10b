//! Choosing what to restore from v0.3 backups, as the official 0.5.17 does
//! (`Replica.RestoreV3`): the newest snapshot across generations (by the time it was
//! written), at or before the target time if one is given, then every WAL segment of its
//! generation from its index on, written at or before the target time. Pure (fuzzed).

use std::time::SystemTime;

use super::layout::{Listing, Segment, Snapshot};
use crate::error::{Error, Result};

/// A v0.3 restore: one snapshot and the WAL segments to replay over it, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The snapshot to start from.
    pub snapshot: Snapshot,
    /// The segments of its generation to apply, ordered by (index, offset).
    pub segments: Vec<Segment>,
}

impl Plan {
    /// Compressed bytes to download.
    pub fn bytes(&self) -> u64 {
        self.snapshot.size + self.segments.iter().map(|s| s.size).sum::<u64>()
    }
}

/// The newest snapshot written at or before `timestamp` (any time: the newest).
pub(crate) fn best_snapshot(listing: &Listing, timestamp: Option<SystemTime>) -> Option<&Snapshot> {
    // Ordered by time; ties keep the listing's (generation, index) order.
    let mut by_time: Vec<&Snapshot> = listing.snapshots.iter().collect();
    by_time.sort_by_key(|s| s.created_at);
    by_time
        .into_iter()
        .rev()
        .find(|s| timestamp.is_none_or(|ts| s.created_at <= ts))
}

/// Chooses the snapshot and segments that restore the newest state, or the state as of
/// `timestamp`.
pub fn plan_listing(listing: &Listing, timestamp: Option<SystemTime>) -> Result<Plan> {
    if listing.snapshots.is_empty() {
        return Err(Error::NoSnapshots);
    }
    let Some(snapshot) = best_snapshot(listing, timestamp) else {
        let ts = timestamp
            .map(crate::time::format_rfc3339)
            .unwrap_or_default();
        return Err(Error::TxNotAvailable {
            txid: None,
            detail: format!("no v0.3 snapshot was written at or before {ts}"),
        });
    };
    let segments = listing
        .segments
        .iter()
        .filter(|s| {
            s.generation == snapshot.generation
                && s.index >= snapshot.index
                && timestamp.is_none_or(|ts| s.created_at <= ts)
        })
        .cloned()
        .collect();
    Ok(Plan {
        snapshot: snapshot.clone(),
        segments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ObjectInfo;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn listing(objects: &[(&str, u64)]) -> Listing {
        let objs: Vec<ObjectInfo> = objects
            .iter()
            .map(|(p, t)| ObjectInfo {
                path: format!("generations/{p}"),
                size: 1,
                modified: at(*t),
            })
            .collect();
        Listing::from_objects(&objs)
    }

    const G1: &str = "1111111111111111";
    const G2: &str = "0000000000000002";

    fn sample() -> Listing {
        listing(&[
            (&format!("{G1}/snapshots/00000000.snapshot.lz4"), 10),
            (&format!("{G1}/wal/00000000_00000000.wal.lz4"), 11),
            (&format!("{G1}/wal/00000000_00001020.wal.lz4"), 12),
            (&format!("{G1}/wal/00000001_00000000.wal.lz4"), 13),
            // A later generation whose id sorts first: time decides, not the id.
            (&format!("{G2}/snapshots/00000003.snapshot.lz4"), 20),
            (&format!("{G2}/wal/00000002_00000000.wal.lz4"), 19),
            (&format!("{G2}/wal/00000003_00000000.wal.lz4"), 21),
            (&format!("{G2}/wal/00000003_00001020.wal.lz4"), 22),
        ])
    }

    #[test]
    fn latest_is_the_newest_snapshot_and_its_generation_from_its_index() {
        let p = plan_listing(&sample(), None).expect("plan");
        assert_eq!((p.snapshot.generation.as_str(), p.snapshot.index), (G2, 3));
        let segs: Vec<(u32, u64)> = p.segments.iter().map(|s| (s.index, s.offset)).collect();
        assert_eq!(segs, [(3, 0), (3, 0x1020)]);
    }

    #[test]
    fn by_timestamp_cuts_snapshots_and_segments_written_after_it() {
        let p = plan_listing(&sample(), Some(at(12))).expect("plan");
        assert_eq!((p.snapshot.generation.as_str(), p.snapshot.index), (G1, 0));
        assert_eq!(p.segments.len(), 2);
        let p = plan_listing(&sample(), Some(at(21))).expect("plan");
        assert_eq!(p.segments.len(), 1);
        let e = plan_listing(&sample(), Some(at(9))).expect_err("too early");
        assert!(e.is_no_backup(), "{e}");
        let e = plan_listing(&Listing::default(), None).expect_err("empty");
        assert!(matches!(e, Error::NoSnapshots));
    }
}
