//! Writing pages into a live database the way SQLite's own rollback-journal commit does,
//! so that readers and crashes are safe: the caller holds SQLite's EXCLUSIVE lock (taken
//! with `BEGIN EXCLUSIVE` on a real connection, so readers wait in SQLite's own locking);
//! the original content of every page about to change goes into `<db>-journal` in SQLite's
//! format (a hot journal SQLite itself rolls back if we die); then the new pages, the size
//! and a bumped change counter go into the database, which is fsynced; deleting the journal
//! commits.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::Path;

use super::spool::Spool;
use crate::durable::{sibling, sync_dir};
use crate::error::{Error, Result};
use crate::sqlite::MainFile;

const JOURNAL_MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];
/// The sector size recorded in the journal header (the header is padded to it).
const SECTOR: usize = 512;

/// SQLite's journal record checksum: the nonce plus every 200th byte from the end.
fn cksum(nonce: u32, page: &[u8]) -> u32 {
    let mut sum = nonce;
    let mut i = page.len() as isize - 200;
    while i > 0 {
        sum = sum.wrapping_add(page[i as usize] as u32);
        i -= 200;
    }
    sum
}

/// A nonce that differs between journals (not security: SQLite uses it to tell stale
/// records of an older journal from this one's).
fn nonce() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    ((t ^ (t >> 32)) as u32) ^ std::process::id().rotate_left(16)
}

/// Commits `pages` (every page `page_size` bytes) to `db` (written
/// through its connection's own handle, `file`), leaving it `commit` pages long. Page 1 is always rewritten:
/// rollback-journal mode (bytes 18/19 = 1), the size in pages, and a change counter one
/// above the old one, so readers drop their caches. The caller must hold SQLite's
/// EXCLUSIVE lock on `db`.
pub(crate) fn commit_pages(
    db: &Path,
    file: &MainFile<'_>,
    page_size: u32,
    pages: &Spool,
    commit: u32,
) -> Result<()> {
    commit_or_crash(db, file, page_size, pages, commit, None)
}

/// [`commit_pages`], or with `crash_after: Some(n)`, stops as a killed process would after
/// writing `n` pages (tests).
fn commit_or_crash(
    db: &Path,
    file: &MainFile<'_>,
    page_size: u32,
    pages: &Spool,
    commit: u32,
    crash_after: Option<usize>,
) -> Result<()> {
    let ps = page_size as u64;
    let old_pages = (file.len()? / ps) as u32;
    let read_page = |pgno: u32| -> Result<Vec<u8>> {
        let mut b = vec![0u8; page_size as usize];
        if !file.read_at(&mut b, (pgno as u64 - 1) * ps)? {
            return Err(Error::State(format!(
                "page {pgno} of {} reads short",
                db.display()
            )));
        }
        Ok(b)
    };
    let old_page1 = read_page(1)?;

    let journaled = journaled_pages(pages.pgnos(), old_pages, commit, page_size);

    let jpath = sibling(db, "-journal");
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    write_journal(
        &jpath, dir, &journaled, old_pages, page_size, &old_page1, read_page,
    )?;
    let limit = crash_after.unwrap_or(usize::MAX);
    write_pages(file, page_size, pages, commit, old_page1, limit)?;
    if crash_after.is_some() {
        return Ok(());
    }

    // The commit point.
    fs::remove_file(&jpath).map_err(|e| Error::io(format!("delete {}", jpath.display()), e))?;
    sync_dir(dir)
}

/// The pages whose current content the journal must hold: every existing page that
/// changes or is cut off, and page 1 — never the lock page, which SQLite does not journal
/// and at whose record its rollback stops (every record after it, the pages past 1 GiB of
/// a database that shrank below it, would be left unrestored).
fn journaled_pages(pgnos: &[u32], old_pages: u32, commit: u32, page_size: u32) -> BTreeSet<u32> {
    let mut journaled: BTreeSet<u32> = pgnos.iter().copied().filter(|p| *p <= old_pages).collect();
    journaled.insert(1);
    journaled.extend(commit.saturating_add(1)..=old_pages);
    journaled.remove(&crate::ltx::lock_pgno(page_size));
    journaled
}

/// Writes and fsyncs the journal of the `journaled` pages' current content.
fn write_journal(
    jpath: &Path,
    dir: &Path,
    journaled: &BTreeSet<u32>,
    old_pages: u32,
    page_size: u32,
    old_page1: &[u8],
    read_page: impl Fn(u32) -> Result<Vec<u8>>,
) -> Result<()> {
    {
        // The database's own bits, as SQLite gives its journals.
        let db = jpath.with_file_name(
            jpath
                .file_name()
                .map(|n| n.to_string_lossy().trim_end_matches("-journal").to_string())
                .unwrap_or_default(),
        );
        let mut j =
            crate::durable::create_file(jpath, crate::durable::mode_like(&db, 0o600), false)
                .map_err(|e| Error::io(format!("create {}", jpath.display()), e))?;
        let n = nonce();
        let mut h = vec![0u8; SECTOR];
        h[..8].copy_from_slice(&JOURNAL_MAGIC);
        h[8..12].copy_from_slice(&(journaled.len() as u32).to_be_bytes());
        h[12..16].copy_from_slice(&n.to_be_bytes());
        h[16..20].copy_from_slice(&old_pages.to_be_bytes());
        h[20..24].copy_from_slice(&(SECTOR as u32).to_be_bytes());
        h[24..28].copy_from_slice(&page_size.to_be_bytes());
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut j);
        let werr = |e| Error::io(format!("write {}", jpath.display()), e);
        w.write_all(&h).map_err(werr)?;
        for &pgno in journaled {
            let data = if pgno == 1 {
                old_page1.to_vec()
            } else {
                read_page(pgno)?
            };
            w.write_all(&pgno.to_be_bytes()).map_err(werr)?;
            w.write_all(&data).map_err(werr)?;
            w.write_all(&cksum(n, &data).to_be_bytes()).map_err(werr)?;
        }
        w.flush().map_err(werr)?;
        drop(w);
        j.sync_all()
            .map_err(|e| Error::io(format!("fsync {}", jpath.display()), e))?;
    }
    sync_dir(dir)
}

/// Writes the new pages (at most `limit` of them: tests stop half-way to play a crash),
/// page 1, the size, and fsyncs.
fn write_pages(
    file: &MainFile<'_>,
    page_size: u32,
    pages: &Spool,
    commit: u32,
    old_page1: Vec<u8>,
    limit: usize,
) -> Result<()> {
    let ps = page_size as u64;
    let counter = u32::from_be_bytes([old_page1[24], old_page1[25], old_page1[26], old_page1[27]])
        .wrapping_add(1);
    let mut wrote_page1 = false;
    let mut data = vec![0u8; page_size as usize];
    for (i, &pgno) in pages.pgnos().iter().enumerate().take(limit) {
        pages.read(i, &mut data)?;
        if pgno == 1 {
            patch_page1(&mut data, counter, commit);
            file.write_at(&data, 0)?;
            wrote_page1 = true;
        } else {
            file.write_at(&data, (pgno as u64 - 1) * ps)?;
        }
    }
    if limit < pages.len() {
        return Ok(());
    }
    if !wrote_page1 {
        let mut p1 = old_page1;
        patch_page1(&mut p1, counter, commit);
        file.write_at(&p1, 0)?;
    }
    file.truncate(commit as u64 * ps)?;
    file.sync(false)
}

/// Rollback-journal mode, the size in pages, and the change counter (and the
/// version-valid-for number that makes the size trusted).
fn patch_page1(p1: &mut [u8], counter: u32, commit: u32) {
    p1[18] = 1;
    p1[19] = 1;
    p1[24..28].copy_from_slice(&counter.to_be_bytes());
    p1[28..32].copy_from_slice(&commit.to_be_bytes());
    p1[92..96].copy_from_slice(&counter.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    use rusqlite::{Connection, OpenFlags};

    fn dump(c: &Connection) -> Vec<(i64, String)> {
        let mut s = c.prepare("SELECT id, v FROM t ORDER BY id").unwrap();
        let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.map(|r| r.unwrap()).collect()
    }

    /// Pages of the database file at `path`.
    fn pages_of(path: &Path, ps: usize) -> Spool {
        let b = std::fs::read(path).unwrap();
        let mut s = Spool::new(ps as u32, path.with_extension("spool"));
        for (i, c) in b.chunks(ps).enumerate() {
            s.push(i as u32 + 1, c).unwrap();
        }
        s
    }

    /// A database in two states: `old` (rollback mode) and the pages of `new`, which is
    /// bigger or smaller.
    fn two_states(dir: &Path, grow: bool) -> (std::path::PathBuf, Spool, u32) {
        let old = dir.join("old.db");
        let new = dir.join("new.db");
        let c = Connection::open(&old).unwrap();
        c.execute_batch(
            "PRAGMA page_size=1024; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<300)
             INSERT INTO t SELECT i, printf('%0200d', i) FROM n;",
        )
        .unwrap();
        drop(c);
        std::fs::copy(&old, &new).unwrap();
        let c = Connection::open(&new).unwrap();
        if grow {
            c.execute_batch(
                "WITH RECURSIVE n(i) AS (SELECT 301 UNION ALL SELECT i+1 FROM n WHERE i<900)
                 INSERT INTO t SELECT i, printf('%0300d', i) FROM n; UPDATE t SET v = 'x' WHERE id < 50;",
            )
            .unwrap();
        } else {
            c.execute_batch("DELETE FROM t WHERE id > 20; VACUUM;")
                .unwrap();
        }
        drop(c);
        let pages = pages_of(&new, 1024);
        let n = pages.len() as u32;
        (old, pages, n)
    }

    #[test]
    fn a_crash_mid_write_is_rolled_back_by_sqlite_and_a_commit_is_seen() {
        for grow in [true, false] {
            let dir =
                std::env::temp_dir().join(format!("lsrs-journal-{}-{grow}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let (db, pages, commit) = two_states(&dir, grow);
            let want_old = dump(&Connection::open(&db).unwrap());
            let want_new = dump(&Connection::open(dir.join("new.db")).unwrap());
            assert_ne!(want_old, want_new);

            // Killed half-way: the journal is hot; a read-only reader cannot use the file,
            // the next read-write connection rolls it back to the old state.
            let c = crate::sqlite::Conn::open(&db).unwrap();
            let f = c.main_file().unwrap();
            commit_or_crash(&db, &f, 1024, &pages, commit, Some(pages.len() / 2)).unwrap();
            drop(c);
            assert!(sibling(&db, "-journal").exists());
            let ro = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
            assert!(ro
                .prepare("SELECT * FROM t")
                .and_then(|mut s| s.query([])?.next().map(|_| ()))
                .is_err());
            drop(ro);
            let rw = Connection::open(&db).unwrap();
            assert_eq!(dump(&rw), want_old, "grow={grow}: not rolled back");
            let ok: String = rw
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(ok, "ok");
            drop(rw);
            assert!(!sibling(&db, "-journal").exists());

            // Committed: a reader sees the new state.
            let c = crate::sqlite::Conn::open(&db).unwrap();
            commit_pages(&db, &c.main_file().unwrap(), 1024, &pages, commit).unwrap();
            drop(c);
            let ro = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
            assert_eq!(dump(&ro), want_new, "grow={grow}");
            let ok: String = ro
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(ok, "ok");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// A database past 1 GiB that shrinks below it: the pages cut off are journaled, the
    /// lock page among them never.
    #[test]
    fn the_lock_page_is_never_journaled() {
        let lock = crate::ltx::lock_pgno(65536);
        let j = journaled_pages(&[2], lock + 5, 3, 65536);
        assert!(!j.contains(&lock));
        assert!(j.contains(&1) && j.contains(&2) && !j.contains(&3));
        assert!((4..lock).chain(lock + 1..=lock + 5).all(|p| j.contains(&p)));
    }

    #[test]
    fn checksum_samples_every_200th_byte_from_the_end() {
        let mut page = vec![0u8; 1024];
        page[824] = 3;
        page[624] = 4;
        page[24] = 5;
        page[1000] = 100; // not sampled
        assert_eq!(cksum(10, &page), 10 + 3 + 4 + 5);
    }
}
