//! Hostile and broken replicas, through the in-memory replica of the `testing` feature:
//! LTX headers that claim 2^31 pages or a page size that is not a power of two, bodies
//! that never end, listings that lie about sizes. Each restore must fail with a clear
//! error (or succeed, where the lie is harmless), use bounded memory, and write nothing
//! but its output file (and only on success).

mod common;

use std::fs::File;
use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard};

use common::*;
use litestream::ltx::{Encoder, Header, PageEncoding, HEADER_FLAG_NO_CHECKSUM, HEADER_SIZE};
use litestream::restore::{restore, RestoreOptions};
use litestream::testing::MemoryClient;
use litestream::{FileInfo, ReplicaClient, Result, Txid};

/// The tests here one at a time, so that what one measures of the process's memory is
/// its own use: every test holds it from its start, building its inputs included.
static ONE: Mutex<()> = Mutex::new(());

/// Takes [`ONE`] (whichever test panicked holding it before).
fn one() -> MutexGuard<'static, ()> {
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` and returns its result, checking this process's peak resident memory rose by
/// less than 64 MiB while it ran. The caller holds [`ONE`], so no other test of the
/// process allocates meanwhile; the memory earlier tests left does not count.
fn bounded<T>(_one: &MutexGuard<'static, ()>, what: &str, f: impl FnOnce() -> T) -> T {
    reset_peak_rss();
    let base = rss_kib();
    let t = f();
    let peak = peak_rss_growth_kib(base);
    assert!(
        peak < 64 * 1024,
        "{what}: peak memory grew by {peak} KiB, over 64 MiB"
    );
    eprintln!("{what}: peak memory grew by {peak} KiB");
    t
}

/// A valid LTX file's bytes: a snapshot `1-max` of `pages` pages of `page_size`.
fn ltx_bytes(dir: &TempDir, page_size: u32, pages: u32, max: u64) -> Vec<u8> {
    ltx_claiming(dir, page_size, pages, pages, max)
}

/// An LTX file `min-max` that claims `commit` pages and holds the first `pages`,
/// checksums and all: only its claim is hostile.
fn ltx_claiming(dir: &TempDir, page_size: u32, commit: u32, pages: u32, max: u64) -> Vec<u8> {
    ltx_file(dir, page_size, commit, pages, 1, max)
}

fn ltx_file(dir: &TempDir, page_size: u32, commit: u32, pages: u32, min: u64, max: u64) -> Vec<u8> {
    let h = Header {
        flags: HEADER_FLAG_NO_CHECKSUM,
        page_size,
        commit,
        min_txid: Txid(min),
        max_txid: Txid(max),
        timestamp: 1_700_000_000_000,
        ..Header::default()
    };
    let p = dir.join("file.ltx");
    let mut e = Encoder::new(File::create(&p).unwrap(), &h, PageEncoding::Frame).unwrap();
    for pg in 1..=pages {
        let mut page = vec![pg as u8; page_size as usize];
        if pg == 1 {
            // A page 1 SQLite accepts: the header string and the page size.
            page[..16].copy_from_slice(b"SQLite format 3\0");
            page[16..18].copy_from_slice(&((page_size & 0xffff) as u16).to_be_bytes());
        }
        e.write_page(pg, &page).unwrap();
    }
    e.finish().unwrap();
    std::fs::read(&p).unwrap()
}

/// Restores `client` into `dir/out.db` expecting an error; checks nothing was left behind
/// and memory stayed bounded; returns the error text.
fn refused(
    one: &MutexGuard<'static, ()>,
    client: &dyn ReplicaClient,
    dir: &TempDir,
    what: &str,
) -> String {
    let before: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let out = dir.join("out.db");
    let err = bounded(one, what, || {
        restore(client, &RestoreOptions::new(&out)).map(|r| r.txid)
    })
    .expect_err(&format!("{what}: restore succeeded"));
    let after: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "{what}: restore left files behind");
    let msg = err.to_string();
    eprintln!("FIGURE hostile {what}: {msg}");
    msg
}

#[test]
fn a_header_claiming_two_to_the_31_pages_is_refused() {
    let one = one();
    let dir = TempDir::new("hostile-huge");
    // A good snapshot, then a file whose database is 2^31 pages (8 TiB at 4 KiB) and that
    // holds page 1 (checksums and all: only its claim is hostile).
    let m = MemoryClient::new();
    m.put(9, Txid(1), Txid(1), ltx_bytes(&dir, 4096, 2, 1));
    m.put(0, Txid(2), Txid(2), ltx_file(&dir, 4096, 1 << 31, 1, 2, 2));
    let _ = std::fs::remove_file(dir.join("file.ltx"));
    let msg = refused(&one, &m, &dir, "2^31 pages");
    assert!(msg.contains("page") || msg.contains("commit"), "{msg}");
}

#[test]
fn a_page_size_that_is_not_a_power_of_two_is_refused() {
    let one = one();
    let dir = TempDir::new("hostile-pgsz");
    let mut bytes = ltx_bytes(&dir, 4096, 2, 1);
    bytes[8..12].copy_from_slice(&3000u32.to_be_bytes());
    let _ = std::fs::remove_file(dir.join("file.ltx"));
    let m = MemoryClient::new();
    m.put(9, Txid(1), Txid(1), bytes);
    let msg = refused(&one, &m, &dir, "page size 3000");
    assert!(msg.contains("page size 3000"), "{msg}");
}

/// A replica whose files never end (an endless body), or whose listing lies about sizes.
#[derive(Debug)]
struct Liar {
    inner: Arc<MemoryClient>,
    endless: bool,
    size: u64,
}

impl ReplicaClient for Liar {
    fn kind(&self) -> &'static str {
        "liar"
    }
    fn ltx_files(&self, level: u8, seek: Txid, a: bool) -> Result<Vec<FileInfo>> {
        let mut v = self.inner.ltx_files(level, seek, a)?;
        for f in &mut v {
            f.size = self.size;
        }
        Ok(v)
    }
    fn open_ltx_file(
        &self,
        level: u8,
        min: Txid,
        max: Txid,
        off: u64,
        len: Option<u64>,
    ) -> Result<Box<dyn Read + Send>> {
        let r = self.inner.open_ltx_file(level, min, max, off, len)?;
        Ok(if self.endless {
            Box::new(r.chain(std::io::repeat(0x5a)))
        } else {
            r
        })
    }
    fn write_ltx_file(&self, level: u8, min: Txid, max: Txid, src: &File) -> Result<FileInfo> {
        self.inner.write_ltx_file(level, min, max, src)
    }
    fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        self.inner.delete_ltx_files(files)
    }
    fn delete_all(&self) -> Result<()> {
        self.inner.delete_all()
    }
}

#[test]
fn an_endless_body_is_refused_with_bounded_memory() {
    let one = one();
    let dir = TempDir::new("hostile-endless");
    let m = Arc::new(MemoryClient::new());
    let mut bytes = ltx_bytes(&dir, 4096, 3, 1);
    let _ = std::fs::remove_file(dir.join("file.ltx"));
    // Cut the index and trailer: the endless tail is where they should be.
    bytes.truncate(HEADER_SIZE + 3 * 4096 / 2);
    m.put(9, Txid(1), Txid(1), bytes);
    let liar = Liar {
        inner: m,
        endless: true,
        size: 1 << 40,
    };
    refused(&one, &liar, &dir, "endless body");
}

#[test]
fn a_listing_that_lies_about_sizes_restores_right_or_fails_clearly() {
    let one = one();
    let dir = TempDir::new("hostile-sizes");
    let m = Arc::new(MemoryClient::new());
    let bytes = ltx_bytes(&dir, 4096, 3, 1);
    let _ = std::fs::remove_file(dir.join("file.ltx"));
    m.put(9, Txid(1), Txid(1), bytes);
    for size in [0, 1, 1 << 40, u64::MAX] {
        let liar = Liar {
            inner: m.clone(),
            endless: false,
            size,
        };
        let out = dir.join(format!("out-{size}.db"));
        match bounded(&one, "lying sizes", || {
            restore(&liar, &RestoreOptions::new(&out))
        }) {
            Ok(r) => {
                assert_eq!(r.txid, Txid(1));
                assert_eq!(std::fs::metadata(&out).unwrap().len(), 3 * 4096);
                eprintln!(
                    "FIGURE hostile listing size {size}: restored right (sizes are not trusted)"
                );
            }
            Err(e) => {
                assert!(!out.exists());
                eprintln!("FIGURE hostile listing size {size}: {e}");
            }
        }
    }
}

/// A restore whose database fails its integrity check fails with the output's name and
/// leaves nothing behind: no output, no temporary file, no `-wal` or `-shm`. (The check
/// runs on the restore's private file, before the output appears: once it is there an
/// application may open it, and its `-wal` and `-shm` are no longer ours to remove.)
#[test]
fn a_restore_that_fails_its_integrity_check_leaves_the_output_path_alone() {
    use litestream::restore::IntegrityCheck;
    let _one = one();
    let dir = TempDir::new("integrity-fails");
    let src = dir.join("src.db");
    {
        let c = rusqlite::Connection::open(&src).unwrap();
        c.execute_batch("CREATE TABLE t(x TEXT); CREATE INDEX t_x ON t(x);")
            .unwrap();
        for i in 0..200 {
            c.execute("INSERT INTO t VALUES (?1)", [format!("needle-{i:05}")])
                .unwrap();
        }
    }
    // One value changed in the table or the index alone: the file opens, the check fails.
    let mut bytes = std::fs::read(&src).unwrap();
    let at = bytes.windows(6).position(|w| w == b"needle").unwrap();
    bytes[at..at + 6].copy_from_slice(b"noodle");
    let ltx = dir.join("snapshot.ltx");
    let h = Header {
        flags: HEADER_FLAG_NO_CHECKSUM,
        page_size: 4096,
        commit: (bytes.len() / 4096) as u32,
        min_txid: Txid(1),
        max_txid: Txid(1),
        timestamp: 1_700_000_000_000,
        ..Header::default()
    };
    let mut e = Encoder::new(File::create(&ltx).unwrap(), &h, PageEncoding::Frame).unwrap();
    for (i, page) in bytes.chunks(4096).enumerate() {
        e.write_page(i as u32 + 1, page).unwrap();
    }
    e.finish().unwrap();
    let m = MemoryClient::new();
    m.write_ltx_file(0, Txid(1), Txid(1), &File::open(&ltx).unwrap())
        .unwrap();
    let out = dir.join("out.db");
    let err = restore(
        &m,
        &RestoreOptions::new(&out).integrity_check(IntegrityCheck::Full),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("integrity check of") && err.contains("out.db"),
        "{err}"
    );
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["snapshot.ltx", "src.db"],
        "files left by the failed restore"
    );
}

/// A database that shrank and grew again must get every page of its new end from the
/// files after the shrink: a replica missing one is damaged, and the restore says so
/// instead of keeping the bytes the page had before the shrink.
#[test]
fn a_page_lost_after_a_shrink_is_not_filled_from_before_it() {
    let one = one();
    let dir = TempDir::new("hostile-shrink");
    let m = MemoryClient::new();
    m.put(0, Txid(1), Txid(1), ltx_file(&dir, 4096, 4, 4, 1, 1));
    m.put(0, Txid(2), Txid(2), ltx_file(&dir, 4096, 2, 2, 2, 2));
    // Grows back to 4 pages but holds only pages 1..3.
    m.put(0, Txid(3), Txid(3), ltx_file(&dir, 4096, 4, 3, 3, 3));
    let msg = refused(&one, &m, &dir, "page lost after a shrink");
    assert!(
        msg.contains("incomplete") && msg.contains("page 4"),
        "{msg}"
    );
}

/// A restore to a time whose files the chain cannot reach (a level 0 file removed, the
/// level 1 file that replaces it made after that time) is an error, never the older
/// state the chain stops at.
#[test]
fn a_timestamp_restore_never_stops_short_silently() {
    use litestream::restore::plan_files;
    use std::time::{Duration, UNIX_EPOCH};
    let _one = one();
    let t = |s: u64| UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s);
    let files = vec![
        FileInfo::new(9, Txid(1), Txid(10), 100, t(10)),
        FileInfo::new(0, Txid(12), Txid(12), 10, t(12)),
        FileInfo::new(0, Txid(13), Txid(13), 10, t(13)),
        FileInfo::new(1, Txid(11), Txid(20), 10, t(20)),
    ];
    let err = plan_files(&files, None, Some(t(14))).unwrap_err();
    assert!(
        matches!(err, litestream::Error::NonContiguous { .. }),
        "{err}"
    );
    // Times the chain does reach still restore: the snapshot alone, and the latest state.
    assert_eq!(plan_files(&files, None, Some(t(11))).unwrap().len(), 1);
    assert_eq!(plan_files(&files, None, None).unwrap().len(), 2);
}

/// A file claiming 2^31 pages that holds one page near the end (checksums and all) costs
/// the restore one chunk of its page bitmap, not a bitmap of every page before it
/// (256 MiB), and is refused as incomplete.
#[test]
fn one_page_near_two_to_the_31_costs_bounded_memory() {
    let one = one();
    let dir = TempDir::new("hostile-far-page");
    let m = MemoryClient::new();
    m.put(9, Txid(1), Txid(1), ltx_bytes(&dir, 512, 2, 1));
    let far = (1u32 << 31) + 7;
    let h = Header {
        flags: HEADER_FLAG_NO_CHECKSUM,
        page_size: 512,
        commit: far,
        min_txid: Txid(2),
        max_txid: Txid(2),
        timestamp: 1_700_000_000_000,
        ..Header::default()
    };
    let mut e = Encoder::new(Vec::new(), &h, PageEncoding::Frame).unwrap();
    e.write_page(far, &[7u8; 512]).unwrap();
    m.put(0, Txid(2), Txid(2), e.finish().unwrap().0);
    let _ = std::fs::remove_file(dir.join("file.ltx"));
    let msg = refused(&one, &m, &dir, "one page near 2^31");
    assert!(msg.contains("incomplete"), "{msg}");
}
