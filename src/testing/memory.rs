//! [`MemoryClient`]: a replica held in memory, for tests of the engine.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Cursor, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::client::{FileInfo, ReplicaClient};
use crate::durable::ReadAt;
use crate::error::{Error, Result};
use crate::ltx::{Header, Txid, HEADER_SIZE};

/// One stored file: its bytes and creation time.
#[derive(Clone, Debug)]
struct Stored {
    bytes: Arc<Vec<u8>>,
    created_at: SystemTime,
}

/// A replica in memory: files keyed by `(level, min, max)`, written atomically.
///
/// Besides [`ReplicaClient`] it lets a test look inside ([`files`](Self::files),
/// [`get`](Self::get)), plant files a real store would never write ([`put`](Self::put):
/// a hostile or foreign replica), and count what was asked of it.
#[derive(Debug, Default)]
pub struct MemoryClient {
    files: Mutex<BTreeMap<(u8, Txid, Txid), Stored>>,
    writes: AtomicU64,
    deletes: AtomicU64,
}

impl MemoryClient {
    /// An empty replica.
    pub fn new() -> MemoryClient {
        MemoryClient::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(u8, Txid, Txid), Stored>> {
        // A panic while holding the lock leaves the map whole (every change is one insert
        // or remove), so a poisoned lock is still usable.
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every file stored, ordered by (level, min, max).
    pub fn files(&self) -> Vec<FileInfo> {
        self.lock()
            .iter()
            .map(|(&(level, min, max), s)| {
                FileInfo::new(level, min, max, s.bytes.len() as u64, s.created_at)
            })
            .collect()
    }

    /// The bytes of file `(level, min, max)`, if stored.
    pub fn get(&self, level: u8, min: Txid, max: Txid) -> Option<Vec<u8>> {
        self.lock()
            .get(&(level, min, max))
            .map(|s| s.bytes.as_ref().clone())
    }

    /// Stores `bytes` as file `(level, min, max)` as they are (no check that they are an
    /// LTX file, or that the name matches its header): for planting damaged or foreign
    /// files. The creation time is the header's timestamp when there is a header.
    pub fn put(&self, level: u8, min: Txid, max: Txid, bytes: Vec<u8>) {
        let created_at = created_at(&bytes);
        self.lock().insert(
            (level, min, max),
            Stored {
                bytes: Arc::new(bytes),
                created_at,
            },
        );
    }

    /// A copy of the replica as it is now (a backup taken at one instant), with fresh
    /// counters.
    pub fn copy(&self) -> MemoryClient {
        MemoryClient {
            files: Mutex::new(self.lock().clone()),
            ..MemoryClient::default()
        }
    }

    /// Files written through [`ReplicaClient::write_ltx_file`] so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Files deleted through [`ReplicaClient::delete_ltx_files`] so far (those that were
    /// there).
    pub fn deletes(&self) -> u64 {
        self.deletes.load(Ordering::SeqCst)
    }
}

/// The header timestamp of an LTX file's bytes, or the epoch when they have no header.
fn created_at(bytes: &[u8]) -> SystemTime {
    bytes
        .get(..HEADER_SIZE)
        .and_then(|b| <&[u8; HEADER_SIZE]>::try_from(b).ok())
        .and_then(|b| Header::from_bytes(b).ok())
        .map(|h| crate::time::from_millis(h.timestamp))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

impl ReplicaClient for MemoryClient {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn ltx_files(&self, level: u8, seek: Txid, _accurate: bool) -> Result<Vec<FileInfo>> {
        Ok(self
            .files()
            .into_iter()
            .filter(|f| f.level == level && f.min_txid >= seek)
            .collect())
    }

    fn open_ltx_file(
        &self,
        level: u8,
        min: Txid,
        max: Txid,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Box<dyn Read + Send>> {
        let bytes = self
            .lock()
            .get(&(level, min, max))
            .map(|s| s.bytes.clone())
            .ok_or_else(|| Error::NotFound {
                backend: "memory",
                target: format!("level {level} {}", crate::ltx::file_name(min, max)),
            })?;
        let size = bytes.len() as u64;
        let start = offset.min(size);
        let end = len.map_or(size, |n| start.saturating_add(n).min(size));
        let mut c = Cursor::new(ArcBytes(bytes));
        c.set_position(start);
        Ok(Box::new(c.take(end - start)))
    }

    fn write_ltx_file(&self, level: u8, min: Txid, max: Txid, src: &File) -> Result<FileInfo> {
        let mut bytes = Vec::new();
        ReadAt::new(src)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("read upload for the memory replica", e))?;
        if bytes.len() < HEADER_SIZE {
            return Err(Error::Invalid(format!(
                "memory replica: level {level} {} is {} bytes, shorter than an LTX header",
                crate::ltx::file_name(min, max),
                bytes.len()
            )));
        }
        let size = bytes.len() as u64;
        let created = created_at(&bytes);
        self.put(level, min, max, bytes);
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(FileInfo::new(level, min, max, size, created))
    }

    fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        let mut map = self.lock();
        for f in files {
            if map.remove(&(f.level, f.min_txid, f.max_txid)).is_some() {
                self.deletes.fetch_add(1, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    fn delete_all(&self) -> Result<()> {
        self.lock().clear();
        Ok(())
    }
}

/// Shared bytes readable through a `Cursor`.
struct ArcBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_clamp_and_missing_files_are_not_found() {
        let m = MemoryClient::new();
        m.put(0, Txid(1), Txid(1), (0u8..200).collect());
        let mut out = Vec::new();
        m.open_ltx_file(0, Txid(1), Txid(1), 190, Some(50))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, (190u8..200).collect::<Vec<_>>());
        assert!(matches!(
            m.open_ltx_file(0, Txid(2), Txid(2), 0, None),
            Err(Error::NotFound { .. })
        ));
        assert_eq!(m.ltx_files(0, Txid(2), false).unwrap(), vec![]);
        assert_eq!(m.ltx_files(0, Txid(1), false).unwrap().len(), 1);
        m.delete_ltx_files(&m.files()).unwrap();
        assert_eq!(m.deletes(), 1);
        assert!(m.files().is_empty());
    }
}
