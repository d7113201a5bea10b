//! Applying a v0.3 plan as the official 0.5.17 does: the snapshot decompressed into the
//! output file, then each WAL index rebuilt from its segments (which must follow each
//! other byte for byte) beside it and checkpointed into it through SQLite. Every frame of
//! every segment must be accepted by SQLite, so a damaged segment is an error, not a
//! silently shorter database.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::lz4::{self, Lz4Error};
use super::plan::Plan;
use crate::client::ReplicaClient;
use crate::durable::sibling;
use crate::error::{Error, Result};
use crate::sqlite::{CheckpointMode, Conn};

/// What applying did: compressed bytes read, page size and page count of the result.
pub(super) struct Applied {
    pub(super) bytes_read: u64,
    pub(super) page_size: u32,
    pub(super) page_count: u32,
}

/// Decodes the object `path` into `w`; returns the decompressed size.
fn fetch(
    client: &dyn ReplicaClient,
    path: &str,
    w: &mut impl Write,
    read: &Arc<AtomicU64>,
) -> Result<u64> {
    let r = Counted {
        inner: client.open_object(path)?,
        n: read.clone(),
    };
    let mut bw = BufWriter::with_capacity(1 << 20, w);
    let n = lz4::decode(std::io::BufReader::with_capacity(256 << 10, r), &mut bw).map_err(
        |e| match e {
            Lz4Error::Io(e) => Error::io(format!("read v0.3 backup {path}"), e),
            bad => Error::State(format!(
                "v0.3 backup {path} is damaged ({bad}); restore to an earlier time (-timestamp) or from another replica"
            )),
        },
    )?;
    bw.flush()
        .map_err(|e| Error::io(format!("write decoded {path}"), e))?;
    Ok(n)
}

/// Applies `plan` to `out` (an empty file at `out_path`).
pub(super) fn apply(
    client: &dyn ReplicaClient,
    plan: &Plan,
    mut out: &File,
    out_path: &Path,
) -> Result<Applied> {
    let read = Arc::new(AtomicU64::new(0));
    let snap = &plan.snapshot;
    fetch(client, &snap.path, &mut out, &read)?;
    out.sync_all()
        .map_err(|e| Error::io(format!("fsync {}", out_path.display()), e))?;

    let wal_path = sibling(out_path, "-wal");
    let result = apply_segments(client, plan, out_path, &wal_path, &read);
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(sibling(out_path, suffix));
    }
    result?;

    let mut h = [0u8; 100];
    let mut f =
        File::open(out_path).map_err(|e| Error::io(format!("open {}", out_path.display()), e))?;
    f.read_exact(&mut h).map_err(|e| {
        Error::State(format!(
            "v0.3 snapshot {} does not hold a SQLite database: {e}",
            snap.path
        ))
    })?;
    if &h[..16] != b"SQLite format 3\0" {
        return Err(Error::State(format!(
            "v0.3 snapshot {} does not hold a SQLite database (bad header)",
            snap.path
        )));
    }
    let ps = u16::from_be_bytes([h[16], h[17]]);
    Ok(Applied {
        bytes_read: read.load(Ordering::Relaxed),
        page_size: if ps == 1 { 65536 } else { ps as u32 },
        page_count: u32::from_be_bytes([h[28], h[29], h[30], h[31]]),
    })
}

/// Rebuilds each WAL index from its segments and checkpoints it into the database.
fn apply_segments(
    client: &dyn ReplicaClient,
    plan: &Plan,
    db: &Path,
    wal_path: &Path,
    read: &Arc<AtomicU64>,
) -> Result<()> {
    let gen = &plan.snapshot.generation;
    let mut expected_index = plan.snapshot.index;
    let mut wal: Option<(File, u32)> = None;
    let mut offset = 0u64;
    for seg in &plan.segments {
        if seg.offset == 0 {
            if let Some((f, index)) = wal.take() {
                checkpoint(db, f, offset, gen, index)?;
            }
            if seg.index != expected_index {
                return Err(Error::State(format!(
                    "v0.3 generation {gen}: WAL index {expected_index:08x} is missing (next is {:08x}); the backup has a gap",
                    seg.index
                )));
            }
            // The temp database's own bits (a restore's `mode`), as SQLite gives its WAL.
            let f =
                crate::durable::create_file(wal_path, crate::durable::mode_like(db, 0o600), false)
                    .map_err(|e| Error::io(format!("create {}", wal_path.display()), e))?;
            wal = Some((f, seg.index));
            offset = 0;
            expected_index += 1;
        } else if seg.offset != offset || wal.as_ref().is_none_or(|(_, i)| *i != seg.index) {
            return Err(Error::State(format!(
                "v0.3 generation {gen}: WAL segment {:08x} at offset {offset:#x} is missing (next is {}); the backup has a gap",
                seg.index, seg.path
            )));
        }
        let Some((f, _)) = wal.as_mut() else {
            return Err(Error::State("v0.3 restore lost its WAL file".into()));
        };
        offset += fetch(client, &seg.path, f, read)?;
    }
    if let Some((f, index)) = wal.take() {
        checkpoint(db, f, offset, gen, index)?;
    }
    Ok(())
}

/// Checkpoints the rebuilt WAL `f` (`len` bytes) into `db`, requiring SQLite to accept
/// every frame.
fn checkpoint(db: &Path, f: File, len: u64, gen: &str, index: u32) -> Result<()> {
    f.sync_all()
        .map_err(|e| Error::io(format!("fsync WAL of {}", db.display()), e))?;
    let mut h = [0u8; 32];
    {
        use std::os::unix::fs::FileExt;
        f.read_exact_at(&mut h, 0).map_err(|_| {
            Error::State(format!(
                "v0.3 generation {gen}: WAL index {index:08x} is shorter than a WAL header"
            ))
        })?;
    }
    drop(f);
    let page_size = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as u64;
    let frame = 24 + page_size;
    if page_size < 512 || (len - 32) % frame != 0 {
        return Err(Error::State(format!(
            "v0.3 generation {gen}: WAL index {index:08x} holds {len} bytes, not a whole number of {page_size}-byte pages; it is damaged"
        )));
    }
    let frames = (len - 32) / frame;
    let conn = Conn::open(db)?;
    // A first read opens the WAL (a fresh connection has not looked at it yet).
    conn.query_i64("SELECT count(*) FROM sqlite_master")?;
    let (busy, log, done) = conn.checkpoint(CheckpointMode::Passive)?;
    if busy || log < 0 || log as u64 != frames || done != log {
        return Err(Error::State(format!(
            "v0.3 generation {gen}: SQLite accepted {log} of the {frames} frames of WAL index {index:08x} (checkpointed {done}); a segment is damaged"
        )));
    }
    conn.exec("PRAGMA wal_checkpoint(TRUNCATE)")?;
    drop(conn);
    log::debug!("applied v0.3 WAL index {index:08x} of generation {gen}: {frames} frames");
    Ok(())
}

/// Counts the bytes read through it.
struct Counted {
    inner: Box<dyn Read + Send>,
    n: Arc<AtomicU64>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
