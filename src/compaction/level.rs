//! Merging the files of level L-1 that follow level L's newest file into one file of
//! level L (latest page wins), reading local copies of L0 files where it can.

use std::fs::File;
use std::io::BufWriter;
use std::time::SystemTime;

use super::known::Known;
use crate::client::{FileInfo, ResumableReader};
use crate::db::DbHandle;
use crate::durable::TempFile;
use crate::error::{Error, Result};
use crate::ltx::{self, Decoder, Txid};
use crate::replica::ReplicaShared;

/// Merges the files of `level - 1` that follow `level`'s newest file into one file of
/// `level`. `window_start` is the start of the current compaction window: a level whose
/// newest file is younger than it was compacted already (after a restart). Returns the
/// new file, or `None` when there was nothing to do.
pub(super) fn compact_level(
    db: &DbHandle,
    replica: &ReplicaShared,
    known: &mut Known,
    level: u8,
    window_start: SystemTime,
) -> Result<Option<FileInfo>> {
    let client = replica.client();
    let dst = known.newest(client, level)?;
    if let Some(d) = &dst {
        if d.created_at > window_start {
            return Ok(None);
        }
    }
    // Nothing new below: no request at all.
    let src_max = if level == 1 {
        replica.remote_txid()
    } else {
        known
            .newest(client, level - 1)?
            .map(|f| f.max_txid)
            .or(Some(Txid::ZERO))
    };
    if let Some(sm) = src_max {
        if sm <= dst.as_ref().map(|d| d.max_txid).unwrap_or_default() {
            return Ok(None);
        }
    }
    let seek = dst.as_ref().map(|d| d.max_txid.next()).unwrap_or(Txid(1));
    let src = client.ltx_files(level - 1, seek, false)?;
    // The longest contiguous run from the first file.
    let mut inputs: Vec<FileInfo> = Vec::new();
    for f in src {
        let ok = match inputs.last() {
            None => true,
            Some(prev) => f.min_txid.0 <= prev.max_txid.0 + 1 && f.max_txid > prev.max_txid,
        };
        if !ok {
            break;
        }
        inputs.push(f);
        if inputs.len() >= 512 {
            break;
        }
    }
    let Some(first) = inputs.first() else {
        return Ok(None);
    };
    if first.min_txid != seek && dst.is_some() {
        log::warn!(
            "{}: level {} ends at {} but level {} continues at {}; the level will have a gap",
            db.path().display(),
            level,
            seek.0.saturating_sub(1),
            level - 1,
            first.min_txid
        );
    }
    let min = first.min_txid;
    let max = inputs.last().map(|f| f.max_txid).unwrap_or(min);
    // One file passed up alone is already the compaction's output (the same pages,
    // header and timestamp; an L0 file keeps its WAL fields, which restores ignore):
    // copy it on the server where the backend can, so a large snapshot is shipped once.
    if let [only] = inputs.as_slice() {
        if let Some(info) = client.copy_ltx_file(only, level)? {
            log::debug!(
                "{}: copied {only} up to level {level} on the server ({} bytes)",
                db.path().display(),
                info.size
            );
            return Ok(Some(finish(known, level, info)));
        }
    }

    let tmp = TempFile::new(db.temp_path(&format!("compact-{level}-{min}-{max}.ltx.tmp")));
    {
        let mut decoders = Vec::with_capacity(inputs.len());
        for f in &inputs {
            // Prefer our local copy of an L0 file (no download, and never a half-visible
            // object on an eventually consistent store) when it is the same file.
            let local = if level == 1 && f.min_txid == f.max_txid {
                File::open(db.l0_path(f.min_txid))
                    .ok()
                    .filter(|file| file.metadata().is_ok_and(|m| m.len() == f.size))
            } else {
                None
            };
            let reader: Box<dyn std::io::Read + '_> = match local {
                Some(file) => Box::new(std::io::BufReader::new(file)),
                _ => Box::new(std::io::BufReader::with_capacity(
                    256 << 10,
                    ResumableReader::new(client, f.clone()),
                )),
            };
            let d = Decoder::new(reader).map_err(|e| e.in_file(&f.to_string()))?;
            decoders.push((f.to_string(), d));
        }
        let out = File::create(tmp.path())
            .map_err(|e| Error::io(format!("create {}", tmp.path().display()), e))?;
        let (w, _) = ltx::compact(
            decoders,
            BufWriter::with_capacity(1 << 20, out),
            db.encoding(),
        )?;
        let f = w
            .into_inner()
            .map_err(|e| Error::io(format!("write {}", tmp.path().display()), e.into_error()))?;
        f.sync_all()
            .map_err(|e| Error::io(format!("fsync {}", tmp.path().display()), e))?;
    }
    let f = File::open(tmp.path())
        .map_err(|e| Error::io(format!("open {}", tmp.path().display()), e))?;
    let info = client.write_ltx_file(level, min, max, &f)?;
    log::debug!(
        "{}: compacted {} files into level {level} {min}-{max} ({} bytes)",
        db.path().display(),
        inputs.len(),
        info.size
    );
    Ok(Some(finish(known, level, info)))
}

/// Records `info` as `level`'s newest file.
fn finish(known: &mut Known, level: u8, info: FileInfo) -> FileInfo {
    known.set(level, info.clone());
    if level == 1 {
        known.l0_dirty = true;
    }
    info
}
