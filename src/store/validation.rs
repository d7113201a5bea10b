//! Validation: every interval, each level (0..=the highest compaction level; not the L9
//! snapshots, which are not contiguous) of each replica of each running database is
//! listed and checked for order, gaps and overlaps, as Litestream's `validation:`. What is
//! wrong is logged with the file names and kept in the store's stats (metrics).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::background::Background;
use super::StoreHandle;
use crate::client::{FileInfo, ReplicaClient};
use crate::error::Result;

/// What is wrong between two neighbouring files of a level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValidationKind {
    /// A file's min TXID is below its predecessor's.
    Unsorted,
    /// TXIDs missing between two files.
    Gap,
    /// Two files cover some TXIDs twice.
    Overlap,
}

impl ValidationKind {
    /// Litestream's name: `unsorted`, `gap`, `overlap`.
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationKind::Unsorted => "unsorted",
            ValidationKind::Gap => "gap",
            ValidationKind::Overlap => "overlap",
        }
    }
}

/// One problem found in a replica's level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// The database.
    pub db: PathBuf,
    /// The replica's index in the database's list.
    pub replica: usize,
    /// The level.
    pub level: u8,
    /// What is wrong.
    pub kind: ValidationKind,
    /// The earlier file's name.
    pub prev: String,
    /// The later file's name.
    pub curr: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: replica {} level {}: {} between {} and {}",
            self.db.display(),
            self.replica,
            self.level,
            match self.kind {
                ValidationKind::Unsorted => "files out of order",
                ValidationKind::Gap => "TXID gap",
                ValidationKind::Overlap => "TXID overlap",
            },
            self.prev,
            self.curr
        )
    }
}

/// Checks one listing of a level, in the order the backend gave it.
pub(crate) fn check_files(files: &[FileInfo]) -> Vec<(ValidationKind, &FileInfo, &FileInfo)> {
    let mut out = Vec::new();
    for w in files.windows(2) {
        let (prev, curr) = (&w[0], &w[1]);
        let kind = if curr.min_txid < prev.min_txid {
            ValidationKind::Unsorted
        } else if curr.min_txid.0 > prev.max_txid.0 + 1 {
            ValidationKind::Gap
        } else if curr.min_txid.0 < prev.max_txid.0 + 1 {
            ValidationKind::Overlap
        } else {
            continue;
        };
        out.push((kind, prev, curr));
    }
    out
}

/// Lists and checks levels `0..=max_level` of one replica.
pub(crate) fn validate_replica(
    client: &dyn ReplicaClient,
    max_level: u8,
) -> Result<Vec<(u8, ValidationKind, String, String)>> {
    let mut out = Vec::new();
    for level in 0..=max_level {
        let files = client.ltx_files(level, crate::ltx::Txid::ZERO, false)?;
        for (k, p, c) in check_files(&files) {
            out.push((level, k, p.name(), c.name()));
        }
    }
    Ok(out)
}

impl StoreHandle {
    /// Checks every level of every replica of every running database now (what the
    /// periodic validation does); the problems found, each naming its files.
    pub fn validate(&self) -> Result<Vec<ValidationError>> {
        let max_level = self.levels().max_level();
        let mut out = Vec::new();
        for e in self.running_entries() {
            for (i, r) in e.replicas.iter().enumerate() {
                for (level, kind, prev, curr) in validate_replica(r.client(), max_level)? {
                    out.push(ValidationError {
                        db: e.db.path().to_path_buf(),
                        replica: i,
                        level,
                        kind,
                        prev,
                        curr,
                    });
                }
            }
        }
        Ok(out)
    }
}

/// Starts the validation thread.
pub(super) fn start(every: Duration, store: StoreHandle) -> Result<Background> {
    log::info!("validation: every {every:?}");
    Background::start("litestream-validation", every, move || {
        match store.validate() {
            Ok(errs) => {
                for e in &errs {
                    log::warn!("validation error detected: {e}");
                }
                store.stats_mut(|s| {
                    s.validation_runs += 1;
                    s.validation_errors = errs;
                });
            }
            Err(e) => {
                store.stats_mut(|s| s.validation_failures += 1);
                log::error!("validation check failed: {e}");
            }
        }
    })
}
