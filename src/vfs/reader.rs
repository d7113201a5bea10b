//! `ReplicaReader`: one replica as the VFS reads it, shared by every connection of the
//! process — the newest state and its page map, the table of LTX files seen (each file's
//! header and page index read once: files never change), the shared page cache with
//! read-ahead, and the one poller thread that follows new transactions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::cache::{Page, PageCache};
use super::disk::DiskCache;
use super::pagemap::{PageMap, Slot, Snapshot};
use super::ReaderOptions;

mod offline;
mod plan;

use crate::client::{FileInfo, ReplicaClient};
use crate::error::{Error, Result};
use crate::ltx::{self, Header, IndexEntry, Txid};
use offline::read_range;

/// What the reader knows of one LTX file.
#[derive(Debug)]
struct FileMeta {
    info: FileInfo,
    /// Offset of the end-of-pages marker: no page frame reaches past it.
    pages_end: u64,
}

#[derive(Debug, Default)]
struct FileTable {
    files: Vec<Arc<FileMeta>>,
    ids: HashMap<(u8, Txid, Txid), u32>,
}

/// Requests a reader made, for measurements and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Listings: of the whole replica in one request where the backend can, else of one
    /// level each.
    pub lists: u64,
    /// Reads of (part of) a file.
    pub gets: u64,
    /// Bytes read from files.
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    lists: AtomicU64,
    gets: AtomicU64,
    bytes: AtomicU64,
}

/// Stops the poller when the reader goes away.
#[derive(Debug, Default)]
struct Stop {
    stopped: Mutex<bool>,
    cv: Condvar,
}

/// A replica opened for reading: the state every VFS connection to it shares.
///
/// Create one with [`ReplicaReader::open`]; hand it to [`super::register`]. One poller
/// thread per reader follows new transactions; it stops when the reader is dropped.
pub struct ReplicaReader {
    client: Arc<dyn ReplicaClient>,
    opts: ReaderOptions,
    latest: RwLock<Arc<Snapshot>>,
    files: Mutex<FileTable>,
    cache: OnceLock<PageCache>,
    /// Held while polling, so polls never overlap.
    polling: Mutex<()>,
    last_poll_ok: Mutex<Option<(Instant, SystemTime)>>,
    /// When the poller last tried (whether or not the replica answered).
    last_poll_try: Mutex<Option<Instant>>,
    /// The cache on disk (`cache_dir`).
    disk: Option<DiskCache>,
    last_used: Mutex<Instant>,
    counters: Counters,
    stop: Arc<Stop>,
    /// Cache misses being fetched, by (file, page): a second reader of the same page
    /// waits for the first fetch instead of repeating it.
    inflight: Mutex<HashMap<(u32, u32), Arc<Stop>>>,
    /// Where recent reads of each file ended, newest last: a miss that continues one is
    /// part of a sequential read and gets the read-ahead.
    streams: Mutex<Vec<(u32, u64)>>,
}

impl std::fmt::Debug for ReplicaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaReader")
            .field("client", &self.client)
            .field("txid", &self.latest().txid)
            .finish()
    }
}

impl Drop for ReplicaReader {
    fn drop(&mut self) {
        *self.stop.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.stop.cv.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ReplicaReader {
    /// Opens the replica at its newest state (one listing of the whole replica where the
    /// backend can, else one per level; then the header and page index of each file of
    /// the restore plan) and starts its poller.
    ///
    /// With [`ReaderOptions::cache_dir`] holding what an earlier reader cached, a replica
    /// that does not answer within [`ReaderOptions::miss_timeout`] (or fails) is opened
    /// at the last cached state instead, and followed again once it answers.
    pub fn open(client: Arc<dyn ReplicaClient>, opts: ReaderOptions) -> Result<Arc<ReplicaReader>> {
        let disk = opts.cache_dir.as_deref().map(DiskCache::open).transpose()?;
        let empty = Snapshot {
            txid: Txid::ZERO,
            page_size: 4096,
            time: UNIX_EPOCH,
            map: PageMap::default(),
        };
        let reader = Arc::new(ReplicaReader {
            client,
            opts,
            latest: RwLock::new(Arc::new(empty)),
            files: Mutex::new(FileTable::default()),
            cache: OnceLock::new(),
            polling: Mutex::new(()),
            last_poll_ok: Mutex::new(None),
            last_poll_try: Mutex::new(Some(Instant::now())),
            disk,
            last_used: Mutex::new(Instant::now()),
            counters: Counters::default(),
            stop: Arc::new(Stop::default()),
            inflight: Mutex::new(HashMap::new()),
            streams: Mutex::new(Vec::new()),
        });
        reader.open_state()?;
        let weak = Arc::downgrade(&reader);
        let stop = reader.stop.clone();
        std::thread::Builder::new()
            .name("litestream-vfs-poll".into())
            .spawn(move || poller(weak, stop))
            .map_err(|e| Error::io("start the VFS poller thread", e))?;
        Ok(reader)
    }

    /// The replica this reader reads.
    pub(crate) fn client(&self) -> &Arc<dyn ReplicaClient> {
        &self.client
    }

    /// The newest state known.
    pub(crate) fn latest(&self) -> Arc<Snapshot> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The newest TXID known.
    pub fn txid(&self) -> Txid {
        self.latest().txid
    }

    /// Time since the replica last answered a poll (`None` before the first); opened
    /// from `cache_dir` while the replica is unreachable, since it answered the process
    /// that cached the state.
    pub fn lag(&self) -> Option<Duration> {
        lock(&self.last_poll_ok).map(|(at, wall)| {
            SystemTime::now()
                .duration_since(wall)
                .unwrap_or_else(|_| at.elapsed())
        })
    }

    /// Requests made so far.
    pub fn stats(&self) -> ReaderStats {
        ReaderStats {
            lists: self.counters.lists.load(Ordering::Relaxed),
            gets: self.counters.gets.load(Ordering::Relaxed),
            bytes: self.counters.bytes.load(Ordering::Relaxed),
        }
    }

    /// Pages the shared cache holds and bytes of the newest state's page map.
    pub fn memory(&self) -> (usize, usize) {
        let pages = self.cache.get().map_or(0, |c| c.len());
        (pages, self.latest().map.bytes())
    }

    /// The replica answered: fresh (and the cache on disk says so).
    fn answered(&self) {
        let now = SystemTime::now();
        *lock(&self.last_poll_ok) = Some((Instant::now(), now));
        if let Some(d) = &self.disk {
            d.put_state(self.latest().txid, now);
        }
    }

    fn publish(&self, snap: Snapshot) {
        let mut l = self.latest.write().unwrap_or_else(|e| e.into_inner());
        if snap.txid >= l.txid || l.txid == Txid::ZERO {
            *l = Arc::new(snap);
        }
    }

    fn cache(&self, page_size: u32) -> &PageCache {
        self.cache
            .get_or_init(|| PageCache::new(self.opts.cache_size, page_size))
    }

    /// A connection starts a read transaction. After a pause (the poller sleeps longer
    /// when nobody reads) or while polls fail, it wakes the poller and waits for its poll
    /// — at most one poll interval, so an unreachable replica never blocks a reader long.
    pub(crate) fn touch(&self) {
        *lock(&self.last_used) = Instant::now();
        let base = self.opts.poll_interval;
        let fresh = || lock(&self.last_poll_try).is_some_and(|at| at.elapsed() <= base * 3);
        if fresh() {
            return;
        }
        self.stop.cv.notify_all();
        let deadline = Instant::now() + base;
        while !fresh() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// How long the poller sleeps next: the poll interval while connections read,
    /// doubling for each idle minute up to `max_idle_poll_interval`.
    fn next_interval(&self) -> Duration {
        let idle = lock(&self.last_used).elapsed().as_secs() / 60;
        let base = self.opts.poll_interval;
        (base * (1u32 << idle.min(10) as u32)).min(self.opts.max_idle_poll_interval.max(base))
    }

    /// Looks for new transactions (one listing of L0 after the newest TXID) and publishes
    /// them; after a gap in L0 (files compacted away while we slept, a new lineage) it
    /// plans again from every level. Returns whether the state moved.
    pub fn poll(&self) -> Result<bool> {
        let r = self.poll_once();
        *lock(&self.last_poll_try) = Some(Instant::now());
        r
    }

    fn poll_once(&self) -> Result<bool> {
        let _g = lock(&self.polling);
        let cur = self.latest();
        self.counters.lists.fetch_add(1, Ordering::Relaxed);
        let files = self.client.ltx_files(0, cur.txid.next(), false)?;
        let mut next: Vec<FileInfo> = Vec::new();
        let mut at = cur.txid;
        for f in files {
            if f.max_txid <= at {
                continue;
            }
            if f.min_txid != at.next() {
                log::info!("litestream vfs: {f} does not follow transaction {at}: planning again");
                let snap = self.build_planned(None, None)?;
                let moved = snap.txid != cur.txid;
                self.publish(snap);
                self.answered();
                return Ok(moved);
            }
            at = f.max_txid;
            next.push(f);
        }
        if next.is_empty() {
            self.answered();
            return Ok(false);
        }
        let loaded = self.load_many(&next)?;
        let mut snap = Some((*cur).clone());
        for (id, h, idx) in loaded {
            apply(&mut snap, id, &h, &idx)?;
        }
        if let Some(s) = snap {
            log::debug!("litestream vfs: now at transaction {}", s.txid);
            self.publish(s);
        }
        self.answered();
        Ok(true)
    }

    /// The state at a point in time, as `restore -timestamp` would rebuild it.
    pub(crate) fn snapshot_at(&self, t: SystemTime) -> Result<Arc<Snapshot>> {
        self.build_planned(None, Some(t)).map(Arc::new)
    }

    /// The state at `txid` rebuilt from a new plan (its files were compacted away). The
    /// newest state rebuilt (its L0 files deleted while the writer idles) is published:
    /// else every later transaction would pin the old map, miss, and plan again.
    pub(crate) fn rebuild_at(&self, txid: Txid) -> Result<Arc<Snapshot>> {
        let snap = Arc::new(self.build_planned(Some(txid), None)?);
        if txid == self.latest().txid {
            self.publish((*snap).clone());
        }
        Ok(snap)
    }

    fn build_planned(&self, txid: Option<Txid>, t: Option<SystemTime>) -> Result<Snapshot> {
        let listing = self.list_replica(t.is_some())?;
        let plan = crate::restore::plan_files(&listing, txid, t)?;
        if let Some(d) = &self.disk {
            // A listing that plans is the replica's whole truth: drop what it lost.
            d.retain(&listing);
        }
        let mut snap = None;
        for (id, h, idx) in self.load_many(&plan)? {
            apply(&mut snap, id, &h, &idx)?;
        }
        snap.ok_or(Error::NoSnapshots)
    }

    /// Reads the headers and page indexes of `files`, a few at once, in order.
    fn load_many(&self, files: &[FileInfo]) -> Result<Vec<(u32, Header, Vec<IndexEntry>)>> {
        let workers = files.len().clamp(1, 8);
        let next = AtomicU64::new(0);
        let results: Mutex<Vec<Option<Result<_>>>> =
            Mutex::new((0..files.len()).map(|_| None).collect());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(f) = files.get(i) else { break };
                    let r = self.load(f);
                    lock(&results)[i] = Some(r);
                });
            }
        });
        let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::State("vfs: a file was not loaded".into()))))
            .collect()
    }

    /// Decodes the frames `frame` yields for `idx` into the cache (best effort).
    fn cache_frames<'a>(
        &self,
        id: u32,
        h: &Header,
        idx: &[IndexEntry],
        frame: impl Fn(&IndexEntry) -> Option<&'a [u8]>,
    ) {
        let cache = self.cache(h.page_size);
        let mut buf = vec![0u8; h.page_size as usize];
        let mut scratch = Vec::new();
        for e in idx {
            let Some(f) = frame(e) else { return };
            if ltx::decode_page_frame(f, &mut buf, &mut scratch).is_ok() {
                cache.put(id, e.pgno, Arc::from(&buf[..]));
            }
        }
    }

    fn file_id(&self, info: &FileInfo, pages_end: u64) -> u32 {
        let mut t = lock(&self.files);
        let key = (info.level, info.min_txid, info.max_txid);
        if let Some(&id) = t.ids.get(&key) {
            return id;
        }
        let id = t.files.len() as u32;
        t.files.push(Arc::new(FileMeta {
            info: info.clone(),
            pages_end,
        }));
        t.ids.insert(key, id);
        id
    }

    /// Reads `[offset, offset + len)` of a file (`None`: to its end).
    fn get(&self, info: &FileInfo, offset: u64, len: Option<u64>) -> Result<Vec<u8>> {
        self.counters.gets.fetch_add(1, Ordering::Relaxed);
        let out = read_range(self.client.as_ref(), info, offset, len)?;
        self.counters
            .bytes
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        Ok(out)
    }

    /// Page `pgno` of `snap`: `None` for a page no file holds (it reads as zeros).
    pub(crate) fn page(&self, snap: &Snapshot, pgno: u32) -> Result<Option<Page>> {
        let Some(slot) = snap.map.get(pgno) else {
            return Ok(None);
        };
        let cache = self.cache(snap.page_size);
        loop {
            if let Some(p) = cache.get(slot.file, pgno) {
                return Ok(Some(p));
            }
            let key = (slot.file, pgno);
            let waiting = {
                let mut f = lock(&self.inflight);
                match f.get(&key) {
                    Some(w) => Some(w.clone()),
                    None => {
                        f.insert(key, Arc::new(Stop::default()));
                        None
                    }
                }
            };
            let Some(w) = waiting else { break };
            // Another connection fetches this page: wait for it, then look again.
            let mut done = lock(&w.stopped);
            while !*done {
                done = w.cv.wait(done).unwrap_or_else(|e| e.into_inner());
            }
        }
        let _done = Fetched(self, (slot.file, pgno));
        self.fetch(slot, pgno, snap.page_size).map(Some)
    }

    /// Whether a miss at `slot` continues a recent read of its file (then it reads ahead
    /// to `ahead`); notes where the read it makes ends.
    fn sequential(&self, slot: Slot, ahead: u64) -> bool {
        // At the frame a read ended inside, or a frame or two further.
        let size = u64::from(slot.size);
        let hit = lock(&self.streams).iter().any(|&(f, e)| {
            f == slot.file && slot.offset + size >= e && slot.offset <= e + 2 * size
        });
        let end = slot.offset + u64::from(slot.size);
        self.note_read(slot.file, if hit { ahead.max(end) } else { end });
        hit
    }

    /// Notes that a read of `file` ended at `end` (the newest of 16 streams kept).
    pub(super) fn note_read(&self, file: u32, end: u64) {
        let mut s = lock(&self.streams);
        let near = |&(f, e): &(u32, u64)| f == file && e.abs_diff(end) <= self.opts.read_ahead;
        if let Some(i) = s.iter().position(near) {
            s.remove(i);
        } else if s.len() >= 16 {
            s.remove(0);
        }
        s.push((file, end));
    }

    /// A cache miss: one ranged read from the page's frame on, every whole frame cached;
    /// `read_ahead` bytes long (the frames after it are the file's next pages) when the
    /// miss continues a sequential read, else the page's frame alone.
    fn fetch(&self, slot: Slot, pgno: u32, page_size: u32) -> Result<Page> {
        let meta = lock(&self.files).files.get(slot.file as usize).cloned();
        let meta = meta.ok_or_else(|| Error::State(format!("vfs: no file {}", slot.file)))?;
        let ahead = slot.offset + (slot.size as u64).max(self.opts.read_ahead);
        let want = if self.sequential(slot, ahead.min(meta.pages_end)) {
            (slot.size as u64).max(self.opts.read_ahead)
        } else {
            slot.size as u64
        };
        let end = meta
            .pages_end
            .min(slot.offset + want)
            .max(slot.offset + slot.size as u64);
        let data = self.read_pages(&meta.info, slot, end - slot.offset)?;
        let name = format!("level {} {}", meta.info.level, meta.info.name());
        let cache = self.cache(page_size);
        let mut cur = std::io::Cursor::new(&data[..]);
        let mut buf = vec![0u8; page_size as usize];
        let mut scratch = Vec::new();
        let mut found = None;
        loop {
            let at = cur.position();
            match ltx::read_page_frame(&mut cur, &mut buf, &mut scratch) {
                Ok((0, _)) => break,
                Ok((p, _)) => {
                    if at == 0 && p != pgno {
                        return Err(Error::corrupt(
                            slot.offset,
                            format!("the index puts page {pgno} here, the frame holds page {p}"),
                        )
                        .in_file(&name));
                    }
                    let page: Page = Arc::from(&buf[..]);
                    if p == pgno {
                        found = Some(page.clone());
                    }
                    cache.put(slot.file, p, page);
                }
                // The read-ahead ends inside a frame: stop there.
                Err(e) if at > 0 => {
                    log::trace!("litestream vfs: read-ahead stops at {at}: {e}");
                    break;
                }
                Err(e) => {
                    return Err(match e {
                        Error::Corrupt { reason, .. } => {
                            Error::corrupt(slot.offset, reason).in_file(&name)
                        }
                        e => e,
                    })
                }
            }
        }
        found.ok_or_else(|| {
            Error::corrupt(slot.offset, format!("page {pgno} not found")).in_file(&name)
        })
    }
}

/// Ends an in-flight fetch (also on a panic): wakes whoever waits for it.
struct Fetched<'a>(&'a ReplicaReader, (u32, u32));

impl Drop for Fetched<'_> {
    fn drop(&mut self) {
        if let Some(w) = lock(&self.0.inflight).remove(&self.1) {
            *lock(&w.stopped) = true;
            w.cv.notify_all();
        }
    }
}

/// Applies one file to the state being built.
fn apply(snap: &mut Option<Snapshot>, id: u32, h: &Header, idx: &[IndexEntry]) -> Result<()> {
    let time = UNIX_EPOCH + Duration::from_millis(h.timestamp.max(0) as u64);
    match snap {
        Some(s) if !h.is_snapshot() => {
            if s.page_size != h.page_size {
                return Err(Error::corrupt(
                    8,
                    format!(
                        "page size {} in a database of page size {}",
                        h.page_size, s.page_size
                    ),
                ));
            }
            s.map.resize(h.commit);
            s.map.apply(id, idx);
            s.txid = h.max_txid;
            s.time = time;
        }
        _ => {
            if !h.is_snapshot() {
                return Err(Error::NoSnapshots);
            }
            let mut map = PageMap::default();
            map.resize(h.commit);
            map.apply(id, idx);
            *snap = Some(Snapshot {
                txid: h.max_txid,
                page_size: h.page_size,
                time,
                map,
            });
        }
    }
    Ok(())
}

/// The poller: polls, sleeps the reader's interval, until the reader is dropped.
fn poller(reader: Weak<ReplicaReader>, stop: Arc<Stop>) {
    let mut failing = false;
    loop {
        let Some(interval) = reader.upgrade().map(|r| r.next_interval()) else {
            return;
        };
        {
            let g = lock(&stop.stopped);
            if *g {
                return;
            }
            let (g, _) = stop
                .cv
                .wait_timeout(g, interval)
                .unwrap_or_else(|e| e.into_inner());
            if *g {
                return;
            }
        }
        let Some(r) = reader.upgrade() else { return };
        match r.poll() {
            Ok(_) => failing = false,
            Err(e) => {
                if !failing {
                    log::warn!("litestream vfs: poll {:?}: {e}", r.client);
                }
                failing = true;
            }
        }
    }
}
