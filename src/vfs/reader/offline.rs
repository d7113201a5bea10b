//! A reader without its replica: opening at the state cached on disk (`cache_dir`) when
//! the replica does not answer in time, and page misses served from the disk cache or
//! bounded by `miss_timeout`, so a query fails with an I/O error instead of hanging.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::{apply, lock, ReplicaReader};
use crate::client::{FileInfo, ReplicaClient};
use crate::error::{Error, Result};
use crate::vfs::pagemap::Slot;

impl ReplicaReader {
    /// Plans the newest state from the replica. With a cache on disk that holds a state,
    /// the replica gets `miss_timeout` to answer; past it (or on an error) the cached
    /// state is served, and the plan still under way is published when it completes.
    pub(super) fn open_state(self: &Arc<Self>) -> Result<()> {
        let cached = self.disk.as_ref().is_some_and(|d| !d.listing().is_empty());
        if !cached {
            let snap = self.build_planned(None, None)?;
            self.publish(snap);
            self.answered();
            return Ok(());
        }
        let (tx, rx) = mpsc::channel();
        let me = self.clone();
        std::thread::Builder::new()
            .name("litestream-vfs-open".into())
            .spawn(move || match tx.send(me.build_planned(None, None)) {
                Ok(()) => {}
                // The open went on from the cache: this plan is simply newer news.
                Err(mpsc::SendError(Ok(snap))) => {
                    log::info!("litestream vfs: the replica answers again");
                    me.publish(snap);
                    me.answered();
                }
                Err(mpsc::SendError(Err(e))) => {
                    log::debug!("litestream vfs: open after the timeout: {e}")
                }
            })
            .map_err(|e| Error::io("start the VFS open thread", e))?;
        let why = match rx.recv_timeout(self.opts.miss_timeout) {
            Ok(Ok(snap)) => {
                self.publish(snap);
                self.answered();
                return Ok(());
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "no answer within {:?} (miss_timeout)",
                self.opts.miss_timeout
            ),
        };
        let snap = self.build_cached().map_err(|e| {
            Error::State(format!(
                "litestream vfs: the replica is unreachable ({why}) and the cache cannot stand in: {e}"
            ))
        })?;
        let known = self.disk.as_ref().and_then(|d| d.state());
        if let Some((_, at)) = known {
            // Lag counts from when the replica last answered the process that cached it.
            let ago = SystemTime::now().duration_since(at).unwrap_or_default();
            let then = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
            *lock(&self.last_poll_ok) = Some((then, at));
        }
        log::warn!(
            "litestream vfs: the replica {:?} is unreachable ({why}): serving the state cached \
             in {} (transaction {}{})",
            self.client,
            self.opts
                .cache_dir
                .as_deref()
                .unwrap_or(std::path::Path::new("?"))
                .display(),
            snap.txid,
            known.map_or(String::new(), |(_, at)| format!(
                ", last seen {}",
                crate::time::format_rfc3339(at)
            )),
        );
        self.publish(snap);
        Ok(())
    }

    /// The newest state the metas cached on disk can build.
    fn build_cached(&self) -> Result<crate::vfs::pagemap::Snapshot> {
        let disk = self
            .disk
            .as_ref()
            .ok_or_else(|| Error::State("no cache_dir".into()))?;
        // A damaged meta is dropped from the listing (`meta` forgets it): plan again.
        'plan: loop {
            let plan = crate::restore::plan_files(&disk.listing(), None, None)?;
            let mut snap = None;
            for info in &plan {
                let Some(m) = disk.meta(info) else {
                    continue 'plan;
                };
                let id = self.file_id(&m.info, m.pages_end);
                apply(&mut snap, id, &m.header, &m.index)?;
            }
            return snap.ok_or(Error::NoSnapshots);
        }
    }

    /// Bytes `[slot.offset, slot.offset + len)` of a file for a miss (at least the
    /// slot's frame): from the disk cache, else from the replica within `miss_timeout`
    /// (then cached on disk).
    pub(super) fn read_pages(&self, info: &FileInfo, slot: Slot, len: u64) -> Result<Vec<u8>> {
        if let Some(d) = &self.disk {
            if let Some(b) = d.pages(info, slot.offset, slot.size as u64) {
                return Ok(b);
            }
        }
        let data = self.get_within(info, slot.offset, len, self.opts.miss_timeout)?;
        if let Some(d) = &self.disk {
            d.put_pages(info, slot.offset, &data);
        }
        Ok(data)
    }

    /// A ranged read that gives up after `timeout` (the read goes on in its thread and
    /// its result is dropped).
    fn get_within(
        &self,
        info: &FileInfo,
        offset: u64,
        len: u64,
        timeout: Duration,
    ) -> Result<Vec<u8>> {
        use std::sync::atomic::Ordering;
        self.counters.gets.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let (client, f) = (self.client.clone(), info.clone());
        std::thread::Builder::new()
            .name("litestream-vfs-read".into())
            .spawn(move || {
                let _ = tx.send(read_range(client.as_ref(), &f, offset, Some(len)));
            })
            .map_err(|e| Error::io("start a VFS read thread", e))?;
        let out = match rx.recv_timeout(timeout) {
            Ok(r) => r?,
            Err(_) => {
                return Err(Error::io(
                    format!(
                        "read {info} at offset {offset}: the replica did not answer within \
                         {timeout:?} (miss_timeout)"
                    ),
                    std::io::ErrorKind::TimedOut.into(),
                ))
            }
        };
        self.counters
            .bytes
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(out)
    }
}

/// Reads `[offset, offset + len)` of a file from the replica (`None`: to its end).
pub(super) fn read_range(
    client: &dyn ReplicaClient,
    info: &FileInfo,
    offset: u64,
    len: Option<u64>,
) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut r = client.open_ltx_file(info.level, info.min_txid, info.max_txid, offset, len)?;
    let mut out = Vec::with_capacity(len.unwrap_or(info.size) as usize);
    r.read_to_end(&mut out)
        .map_err(|e| Error::io(format!("read {info} at offset {offset}"), e))?;
    if let Some(n) = len {
        if out.len() as u64 != n {
            return Err(Error::corrupt(
                offset,
                format!(
                    "read {} bytes, want {n}: the file is shorter than listed",
                    out.len()
                ),
            )
            .in_file(&info.to_string()));
        }
    }
    Ok(out)
}
