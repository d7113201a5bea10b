//! Compaction: the levels a store keeps (a public setting), and the compaction thread
//! that keeps them — merging level L-1 into L, uploading L9 snapshots and enforcing
//! retention for every database and replica, on one thread driven by a timer wheel.
//!
//! Level 0 holds one file per sync. Each higher level `L` periodically merges the files of
//! `L-1` that come after its own newest file into one file, so a restore reads a few large
//! files instead of thousands of small ones. Level 9 holds full snapshots. Files in a
//! level never overlap: each compaction starts right after the level's newest file.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`CompactionLevels`] and the thread's settings |
//! | `known.rs` | what the thread knows of each replica's levels (so idle passes cost nothing) |
//! | `level.rs` | merging level L-1 into L |
//! | `snapshot.rs` | L9 snapshots |
//! | `retention.rs` | deleting expired snapshots and compacted L0 files |
//! | `thread.rs` | the thread and its timer wheel |

mod known;
mod level;
mod retention;
mod snapshot;
mod thread;

use std::time::Duration;

pub(crate) use thread::{Compactor, Target};

use crate::db::DbHandle;
use crate::replica::ReplicaShared;

/// Uploads a full snapshot of `db` to level 9 of `replica` now, unless its newest
/// snapshot already holds the database's TXID (`replicate -force-snapshot`).
pub(crate) fn snapshot_now(db: &DbHandle, replica: &ReplicaShared) -> Result<()> {
    let mut known = known::Known::default();
    known.forget();
    let far = std::time::SystemTime::now() + Duration::from_secs(366 * 24 * 3600);
    // No file is newer than `far`: the snapshot is always built from the database.
    snapshot::snapshot(db, replica, &mut known, far, 0).map(|_| ())
}

/// Enforces snapshot retention on `replica` now (`replicate -enforce-retention`).
pub(crate) fn retention_now(
    db: &DbHandle,
    replica: &ReplicaShared,
    retention: Duration,
    max_level: u8,
) -> Result<()> {
    let mut known = known::Known::default();
    known.forget();
    known.snapshots_dirty = true;
    retention::enforce_snapshot_retention(
        db,
        replica,
        &mut known,
        retention,
        max_level,
        std::time::SystemTime::now(),
    )
}

use crate::client::SNAPSHOT_LEVEL;
use crate::error::{Error, Result};

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

/// What the compaction thread does besides compacting, with Litestream's defaults.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// How often an L9 snapshot is taken.
    pub snapshot_interval: Duration,
    /// How long snapshots are kept.
    pub snapshot_retention: Duration,
    /// How long L0 files are kept after compaction into L1 (zero: forever).
    pub l0_retention: Duration,
    /// How often L0 retention runs.
    pub l0_retention_check_interval: Duration,
    /// Remote deletes by retention are on.
    pub retention: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            snapshot_interval: Duration::from_secs(24 * 3600),
            snapshot_retention: Duration::from_secs(24 * 3600),
            l0_retention: Duration::from_secs(300),
            l0_retention_check_interval: Duration::from_secs(15),
            retention: true,
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
