//! The VFS's cache on disk (`cache_dir`): what a reader learnt of its replica, kept so a
//! process restarted while the replica is unreachable still serves the last state —
//! each LTX file's header and page index (`meta/`), byte ranges of LTX files read on
//! misses (`pages/`) and when the replica last answered (`state`).
//!
//! LTX files never change, so their cached bytes stay true; what can go wrong is the
//! cache file itself (a crash mid-write, a full disk, a stray edit). Every file is sealed:
//! a magic, a kind, the payload and a SHA-256 of them, written to a temp file and renamed
//! into place. A file whose seal does not verify is logged, deleted and never served.
//! Files the replica no longer lists are deleted when the reader plans from a full
//! listing, so the cache holds one lineage and stays about the size of the replica.
//! In memory it keeps only the list of cached ranges (a few bytes per range).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::client::FileInfo;
use crate::error::{Error, Result};
use crate::ltx::{Header, IndexEntry, Txid, HEADER_SIZE};

const MAGIC: &[u8; 4] = b"LSVC";
const SEAL: usize = 16;
const KIND_META: u8 = 1;
const KIND_PAGES: u8 = 2;
const KIND_STATE: u8 = 3;
/// The `state` file is rewritten at most this often while nothing changes.
const STATE_EVERY: Duration = Duration::from_secs(5);

/// A file of the replica: (level, min TXID, max TXID).
type Key = (u8, Txid, Txid);

/// What is cached of one LTX file.
#[derive(Debug, Default)]
struct Entry {
    /// Its size on the replica when its meta was written (`None`: no meta cached).
    size: Option<u64>,
    /// Cached byte ranges: (offset, length).
    ranges: Vec<(u64, u64)>,
}

/// One LTX file's header and page index as cached.
#[derive(Debug)]
pub(crate) struct Meta {
    pub info: FileInfo,
    pub pages_end: u64,
    pub header: Header,
    pub index: Vec<IndexEntry>,
}

/// The cache directory of one replica.
#[derive(Debug)]
pub(crate) struct DiskCache {
    dir: PathBuf,
    files: Mutex<HashMap<Key, Entry>>,
    state_written: Mutex<Option<(Instant, Txid)>>,
    /// Set after the first failed write: later ones are logged at debug level only.
    write_failed: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn seal(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 5 + SEAL);
    out.extend_from_slice(MAGIC);
    out.push(kind);
    out.extend_from_slice(payload);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum[..SEAL]);
    out
}

/// The payload of a sealed file of `kind`, or why it is not one.
fn unseal(kind: u8, data: &[u8]) -> std::result::Result<&[u8], &'static str> {
    if data.len() < 5 + SEAL || &data[..4] != MAGIC || data[4] != kind {
        return Err("not a litestream VFS cache file of this kind (truncated?)");
    }
    let (body, sum) = data.split_at(data.len() - SEAL);
    if Sha256::digest(body)[..SEAL] != *sum {
        return Err("checksum mismatch (torn or damaged)");
    }
    Ok(&body[5..])
}

fn stem(k: Key) -> String {
    format!("{}-{:016x}-{:016x}", k.0, k.1 .0, k.2 .0)
}

fn parse_stem(parts: &[&str]) -> Option<Key> {
    let [l, min, max] = parts else { return None };
    Some((
        l.parse().ok()?,
        Txid(u64::from_str_radix(min, 16).ok()?),
        Txid(u64::from_str_radix(max, 16).ok()?),
    ))
}

/// Big-endian field reader over a payload.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl DiskCache {
    /// Opens (creating) the cache directory `dir` and lists what it holds.
    pub fn open(dir: &Path) -> Result<DiskCache> {
        let mut files: HashMap<Key, Entry> = HashMap::new();
        for sub in ["meta", "pages"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| {
                Error::io(
                    format!(
                        "create the VFS cache directory {} (cache_dir: a writable directory)",
                        d.display()
                    ),
                    e,
                )
            })?;
            let rd =
                std::fs::read_dir(&d).map_err(|e| Error::io(format!("list {}", d.display()), e))?;
            for ent in rd.flatten() {
                let name = ent.file_name().to_string_lossy().into_owned();
                let parts: Vec<&str> = name.split(['-', '.']).collect();
                let parsed = match (sub, parts.as_slice()) {
                    ("meta", [l, a, b, size, "meta"]) => parse_stem(&[l, a, b])
                        .zip(size.parse().ok())
                        .map(|(k, s)| (k, Some(s), None)),
                    ("pages", [l, a, b, off, len, "pages"]) => parse_stem(&[l, a, b])
                        .zip(off.parse().ok().zip(len.parse().ok()))
                        .map(|(k, r)| (k, None, Some(r))),
                    _ => None,
                };
                match parsed {
                    Some((k, size, range)) => {
                        let e = files.entry(k).or_default();
                        if size.is_some() {
                            e.size = size;
                        }
                        e.ranges.extend(range);
                    }
                    // Temp files of a write that never finished, and strays.
                    None => {
                        log::debug!("litestream vfs: cache: removing {}", ent.path().display());
                        let _ = std::fs::remove_file(ent.path());
                    }
                }
            }
        }
        Ok(DiskCache {
            dir: dir.to_path_buf(),
            files: Mutex::new(files),
            state_written: Mutex::new(None),
            write_failed: Default::default(),
        })
    }

    fn meta_path(&self, k: Key, size: u64) -> PathBuf {
        self.dir
            .join("meta")
            .join(format!("{}-{size}.meta", stem(k)))
    }

    fn pages_path(&self, k: Key, off: u64, len: u64) -> PathBuf {
        self.dir
            .join("pages")
            .join(format!("{}-{off}-{len}.pages", stem(k)))
    }

    /// Writes a sealed file: temp file, rename. No fsync: a file a crash tears fails its
    /// seal and is ignored, which is all a cache needs.
    fn write(&self, path: &Path, kind: u8, payload: &[u8]) -> bool {
        let tmp = crate::durable::sibling(path, ".tmp");
        let r = std::fs::write(&tmp, seal(kind, payload)).and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            let first = !self
                .write_failed
                .swap(true, std::sync::atomic::Ordering::Relaxed);
            let msg = format!(
                "litestream vfs: cache: cannot write {}: {e} (reads go to the replica)",
                path.display()
            );
            if first {
                log::warn!("{msg}");
            } else {
                log::debug!("{msg}");
            }
            return false;
        }
        true
    }

    /// Reads and unseals a cache file; a damaged one is logged and deleted.
    fn read(&self, path: &Path, kind: u8) -> Option<Vec<u8>> {
        let data = std::fs::read(path).ok()?;
        match unseal(kind, &data) {
            Ok(p) => Some(p.to_vec()),
            Err(why) => {
                log::warn!(
                    "litestream vfs: cache: ignoring and deleting {}: {why}",
                    path.display()
                );
                let _ = std::fs::remove_file(path);
                None
            }
        }
    }

    /// Caches a file's header and page index.
    pub fn put_meta(&self, info: &FileInfo, pages_end: u64, h: &Header, idx: &[IndexEntry]) {
        let k = (info.level, info.min_txid, info.max_txid);
        if lock(&self.files)
            .get(&k)
            .is_some_and(|e| e.size == Some(info.size))
        {
            return;
        }
        let mut p = Vec::with_capacity(HEADER_SIZE + 24 + idx.len() * 16);
        p.extend_from_slice(&millis(info.created_at).to_be_bytes());
        p.extend_from_slice(&pages_end.to_be_bytes());
        p.extend_from_slice(&h.to_bytes());
        p.extend_from_slice(&(idx.len() as u64).to_be_bytes());
        for e in idx {
            p.extend_from_slice(&e.pgno.to_be_bytes());
            p.extend_from_slice(&e.offset.to_be_bytes());
            p.extend_from_slice(&e.size.to_be_bytes());
        }
        if self.write(&self.meta_path(k, info.size), KIND_META, &p) {
            lock(&self.files).entry(k).or_default().size = Some(info.size);
        }
    }

    /// Every file with a cached meta, as a listing to plan from.
    pub fn listing(&self) -> Vec<FileInfo> {
        let files = lock(&self.files);
        files
            .iter()
            .filter_map(|(k, e)| Some(FileInfo::new(k.0, k.1, k.2, e.size?, UNIX_EPOCH)))
            .collect()
    }

    /// The cached meta of `info` (checked against its seal and its name).
    pub fn meta(&self, info: &FileInfo) -> Option<Meta> {
        let k = (info.level, info.min_txid, info.max_txid);
        let path = self.meta_path(k, info.size);
        let Some(p) = self.read(&path, KIND_META) else {
            self.forget(k);
            return None;
        };
        let parsed = (|| {
            let mut f = Fields(&p);
            let created = UNIX_EPOCH + Duration::from_millis(f.u64()?);
            let pages_end = f.u64()?;
            let hb: [u8; HEADER_SIZE] = f.take(HEADER_SIZE)?.try_into().ok()?;
            let header = Header::from_bytes(&hb).ok()?;
            let n = f.u64()? as usize;
            if n > f.0.len() / 16 || (header.min_txid, header.max_txid) != (k.1, k.2) {
                return None;
            }
            let mut index = Vec::with_capacity(n);
            for _ in 0..n {
                let (pgno, offset, size) = (f.u32()?, f.u64()?, f.u32()?);
                index.push(IndexEntry { pgno, offset, size });
            }
            let info = FileInfo::new(k.0, k.1, k.2, info.size, created);
            Some(Meta {
                info,
                pages_end,
                header,
                index,
            })
        })();
        if parsed.is_none() {
            log::warn!(
                "litestream vfs: cache: ignoring and deleting {}: its content does not parse",
                path.display()
            );
            let _ = std::fs::remove_file(&path);
            self.forget(k);
        }
        parsed
    }

    fn forget(&self, k: Key) {
        if let Some(e) = lock(&self.files).get_mut(&k) {
            e.size = None;
        }
    }

    /// Caches bytes `[offset, offset + data.len())` of a file.
    pub fn put_pages(&self, info: &FileInfo, offset: u64, data: &[u8]) {
        let k = (info.level, info.min_txid, info.max_txid);
        let len = data.len() as u64;
        let covered = lock(&self.files).get(&k).is_some_and(|e| {
            e.ranges
                .iter()
                .any(|&(o, l)| o <= offset && offset + len <= o + l)
        });
        if covered || len == 0 {
            return;
        }
        if self.write(&self.pages_path(k, offset, len), KIND_PAGES, data) {
            lock(&self.files)
                .entry(k)
                .or_default()
                .ranges
                .push((offset, len));
        }
    }

    /// Cached bytes of a file covering `[offset, offset + len)`: the bytes from `offset`
    /// to the end of the cached range.
    pub fn pages(&self, info: &FileInfo, offset: u64, len: u64) -> Option<Vec<u8>> {
        let k = (info.level, info.min_txid, info.max_txid);
        loop {
            let range = lock(&self.files).get(&k).and_then(|e| {
                e.ranges
                    .iter()
                    .copied()
                    .find(|&(o, l)| o <= offset && offset + len <= o + l)
            })?;
            let path = self.pages_path(k, range.0, range.1);
            match self.read(&path, KIND_PAGES) {
                Some(d) if d.len() as u64 == range.1 => {
                    return Some(d[(offset - range.0) as usize..].to_vec())
                }
                _ => {
                    // Damaged or gone: forget it and look for another range.
                    if let Some(e) = lock(&self.files).get_mut(&k) {
                        e.ranges.retain(|r| *r != range);
                    }
                }
            }
        }
    }

    /// Deletes what is cached of every file `listing` (a full listing of the replica)
    /// does not hold, or holds with another size (another lineage reused the name).
    pub fn retain(&self, listing: &[FileInfo]) {
        let live: HashMap<Key, u64> = listing
            .iter()
            .map(|f| ((f.level, f.min_txid, f.max_txid), f.size))
            .collect();
        let mut files = lock(&self.files);
        files.retain(|&k, e| {
            if live.get(&k).is_some_and(|&s| e.size.is_none_or(|c| c == s)) {
                return true;
            }
            if let Some(s) = e.size {
                let _ = std::fs::remove_file(self.meta_path(k, s));
            }
            for &(o, l) in &e.ranges {
                let _ = std::fs::remove_file(self.pages_path(k, o, l));
            }
            false
        });
    }

    /// Records that the replica answered at `at` with `txid` as its newest transaction
    /// (rewritten at most every few seconds unless the TXID moved).
    pub fn put_state(&self, txid: Txid, at: SystemTime) {
        let mut w = lock(&self.state_written);
        if w.is_some_and(|(when, t)| t == txid && when.elapsed() < STATE_EVERY) {
            return;
        }
        let mut p = txid.0.to_be_bytes().to_vec();
        p.extend_from_slice(&millis(at).to_be_bytes());
        if self.write(&self.dir.join("state"), KIND_STATE, &p) {
            *w = Some((Instant::now(), txid));
        }
    }

    /// The newest TXID and the time the replica last answered, as last recorded.
    pub fn state(&self) -> Option<(Txid, SystemTime)> {
        let p = self.read(&self.dir.join("state"), KIND_STATE)?;
        let mut f = Fields(&p);
        Some((Txid(f.u64()?), UNIX_EPOCH + Duration::from_millis(f.u64()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_files_verify_and_damage_is_ignored() {
        let dir = std::env::temp_dir().join(format!("lsvfs-disk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let c = DiskCache::open(&dir).unwrap();
        let info = FileInfo::new(0, Txid(1), Txid(2), 1000, UNIX_EPOCH);
        c.put_pages(&info, 100, &[7u8; 50]);
        assert_eq!(c.pages(&info, 110, 10).unwrap(), vec![7u8; 40]);
        assert!(c.pages(&info, 90, 10).is_none());
        c.put_state(Txid(2), UNIX_EPOCH + Duration::from_secs(5));
        assert_eq!(
            c.state(),
            Some((Txid(2), UNIX_EPOCH + Duration::from_secs(5)))
        );
        // A reopened cache finds the range; a flipped byte makes it unusable.
        let c = DiskCache::open(&dir).unwrap();
        let p = c.pages_path((0, Txid(1), Txid(2)), 100, 50);
        let mut raw = std::fs::read(&p).unwrap();
        raw[20] ^= 1;
        std::fs::write(&p, raw).unwrap();
        assert!(c.pages(&info, 110, 10).is_none(), "damaged bytes served");
        assert!(!p.exists(), "the damaged file is deleted");
        std::fs::write(dir.join("state"), b"LSVC\x03short").unwrap();
        assert_eq!(c.state(), None);
        // Files the replica no longer lists go.
        c.put_pages(&info, 0, &[1u8; 10]);
        c.retain(&[]);
        assert!(c.pages(&info, 0, 10).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
