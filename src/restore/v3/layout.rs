//! Litestream v0.3's replica layout, read back: `generations/<id>/snapshots/<index>.snapshot.lz4`
//! and `generations/<id>/wal/<index>_<offset>.wal.lz4` (names as v0.3.13 writes them and
//! as the official 0.5.17 parses them), and one listing of the whole tree.

use std::time::SystemTime;

use crate::client::{ObjectInfo, ReplicaClient};
use crate::error::Result;

/// The directory that holds every generation, relative to the replica's root.
pub const GENERATIONS_DIR: &str = "generations/";

/// A v0.3 snapshot: the whole database file at the start of WAL index `index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Generation id (16 hex digits).
    pub generation: String,
    /// WAL index the snapshot was taken at.
    pub index: u32,
    /// Object path relative to the replica's root.
    pub path: String,
    /// Compressed size in bytes.
    pub size: u64,
    /// When it was written (file mtime, S3 `LastModified`), as the official uses it.
    pub created_at: SystemTime,
}

/// A v0.3 WAL segment: bytes `[offset, offset + len)` of the shadow WAL file `index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Generation id (16 hex digits).
    pub generation: String,
    /// WAL index (a new one starts after every WAL restart).
    pub index: u32,
    /// Byte offset of the segment in its WAL file (0: it starts with the WAL header).
    pub offset: u64,
    /// Object path relative to the replica's root.
    pub path: String,
    /// Compressed size in bytes.
    pub size: u64,
    /// When it was written.
    pub created_at: SystemTime,
}

/// Everything a replica holds of v0.3 backups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Snapshots of every generation, ordered by (generation, index).
    pub snapshots: Vec<Snapshot>,
    /// WAL segments of every generation, ordered by (generation, index, offset).
    pub segments: Vec<Segment>,
}

impl Listing {
    /// True if the replica holds no v0.3 snapshot or segment.
    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty() && self.segments.is_empty()
    }

    /// Builds a listing from objects under `generations/`; other names are ignored, as
    /// the official ignores them.
    pub fn from_objects(objects: &[ObjectInfo]) -> Listing {
        let mut l = Listing::default();
        for o in objects {
            let Some(rest) = o.path.strip_prefix(GENERATIONS_DIR) else {
                continue;
            };
            let mut parts = rest.split('/');
            let (Some(gen), Some(dir), Some(name), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if !is_generation(gen) {
                continue;
            }
            match dir {
                "snapshots" => {
                    if let Some(index) = parse_snapshot_name(name) {
                        l.snapshots.push(Snapshot {
                            generation: gen.to_string(),
                            index,
                            path: o.path.clone(),
                            size: o.size,
                            created_at: o.modified,
                        });
                    }
                }
                "wal" => {
                    if let Some((index, offset)) = parse_segment_name(name) {
                        l.segments.push(Segment {
                            generation: gen.to_string(),
                            index,
                            offset,
                            path: o.path.clone(),
                            size: o.size,
                            created_at: o.modified,
                        });
                    }
                }
                _ => {}
            }
        }
        l.snapshots
            .sort_by(|a, b| (&a.generation, a.index).cmp(&(&b.generation, b.index)));
        l.segments.sort_by(|a, b| {
            (&a.generation, a.index, a.offset).cmp(&(&b.generation, b.index, b.offset))
        });
        l
    }

    /// The oldest and newest time any snapshot or segment was written (the official's
    /// `TimeBoundsV3`), or `None` for an empty listing.
    pub fn time_bounds(&self) -> Option<(SystemTime, SystemTime)> {
        let times = self
            .snapshots
            .iter()
            .map(|s| s.created_at)
            .chain(self.segments.iter().map(|s| s.created_at));
        times.fold(None, |acc, t| match acc {
            None => Some((t, t)),
            Some((lo, hi)) => Some((lo.min(t), hi.max(t))),
        })
    }
}

/// Lists the v0.3 tree of `client` (one listing request on object stores).
pub fn list(client: &dyn ReplicaClient) -> Result<Listing> {
    Ok(Listing::from_objects(
        &client.list_objects(GENERATIONS_DIR)?,
    ))
}

fn is_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A generation id: 16 lowercase hex digits.
pub fn is_generation(s: &str) -> bool {
    s.len() == 16 && is_hex(s)
}

/// The index of `<8 hex>.snapshot.lz4`.
pub fn parse_snapshot_name(name: &str) -> Option<u32> {
    let idx = name.strip_suffix(".snapshot.lz4")?;
    (idx.len() == 8 && is_hex(idx))
        .then(|| u32::from_str_radix(idx, 16).ok())
        .flatten()
}

/// The index and offset of `<8 hex>_<8..16 hex>.wal.lz4`.
pub fn parse_segment_name(name: &str) -> Option<(u32, u64)> {
    let (idx, off) = name.strip_suffix(".wal.lz4")?.split_once('_')?;
    if idx.len() != 8 || !is_hex(idx) || !(8..=16).contains(&off.len()) || !is_hex(off) {
        return None;
    }
    Some((
        u32::from_str_radix(idx, 16).ok()?,
        u64::from_str_radix(off, 16).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn obj(path: &str, secs: u64) -> ObjectInfo {
        ObjectInfo {
            path: path.into(),
            size: 10,
            modified: UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    #[test]
    fn names_as_v0_3_13_writes_them() {
        assert_eq!(parse_snapshot_name("0000000a.snapshot.lz4"), Some(10));
        assert_eq!(parse_snapshot_name("0000000A.snapshot.lz4"), None);
        assert_eq!(parse_snapshot_name("000000a.snapshot.lz4"), None);
        assert_eq!(
            parse_segment_name("00000001_00001020.wal.lz4"),
            Some((1, 0x1020))
        );
        assert_eq!(
            parse_segment_name("00000001_0000000100001020.wal.lz4"),
            Some((1, 0x1_0000_1020))
        );
        assert_eq!(parse_segment_name("00000001_1020.wal.lz4"), None);
        assert_eq!(parse_segment_name("00000001.wal"), None);
        assert!(is_generation("0123456789abcdef"));
        assert!(!is_generation("0123456789abcdeg"));
    }

    #[test]
    fn listing_sorts_and_ignores_strangers() {
        let g = "0123456789abcdef";
        let l = Listing::from_objects(&[
            obj(&format!("generations/{g}/wal/00000001_00000000.wal.lz4"), 5),
            obj(&format!("generations/{g}/wal/00000000_00001020.wal.lz4"), 4),
            obj(&format!("generations/{g}/wal/00000000_00000000.wal.lz4"), 3),
            obj(
                &format!("generations/{g}/snapshots/00000000.snapshot.lz4"),
                2,
            ),
            obj(&format!("generations/{g}/snapshots/x.tmp"), 9),
            obj("generations/nothex/snapshots/00000000.snapshot.lz4", 9),
            obj("ltx/0/0000000000000001-0000000000000001.ltx", 9),
        ]);
        assert_eq!(l.snapshots.len(), 1);
        let segs: Vec<(u32, u64)> = l.segments.iter().map(|s| (s.index, s.offset)).collect();
        assert_eq!(segs, [(0, 0), (0, 0x1020), (1, 0)]);
        let (lo, hi) = l.time_bounds().expect("bounds");
        assert_eq!(lo, UNIX_EPOCH + Duration::from_secs(2));
        assert_eq!(hi, UNIX_EPOCH + Duration::from_secs(5));
    }
}
