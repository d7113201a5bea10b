//! The pages of one LTX file, decoded before the follower takes SQLite's lock: held in
//! memory up to [`IN_MEMORY`] bytes and in a temp file beside the output beyond, so that a
//! large compacted file bridging a gap (a follower resumed after days) costs disk, not
//! memory.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::durable::TempFile;
use crate::error::{Error, Result};

/// Pages kept in memory before the spool moves them to its file.
const IN_MEMORY: usize = 8 << 20;

/// Decoded pages in the order they were pushed (page-number order for an LTX file).
pub(crate) struct Spool {
    page_size: usize,
    pgnos: Vec<u32>,
    mem: Vec<u8>,
    spill_path: PathBuf,
    file: Option<(TempFile, File)>,
}

impl Spool {
    /// An empty spool of `page_size`-byte pages that spills to `spill_path` if it grows.
    pub(crate) fn new(page_size: u32, spill_path: PathBuf) -> Spool {
        Spool {
            page_size: page_size as usize,
            pgnos: Vec::new(),
            mem: Vec::new(),
            spill_path,
            file: None,
        }
    }

    /// Adds page `pgno` (exactly one page of bytes).
    pub(crate) fn push(&mut self, pgno: u32, data: &[u8]) -> Result<()> {
        debug_assert_eq!(data.len(), self.page_size);
        let at = self.pgnos.len() as u64 * self.page_size as u64;
        if self.file.is_none() && self.mem.len() + data.len() > IN_MEMORY {
            self.spill()?;
        }
        match &self.file {
            Some((tmp, f)) => f
                .write_all_at(data, at)
                .map_err(|e| Error::io(format!("write {}", tmp.path().display()), e))?,
            None => self.mem.extend_from_slice(data),
        }
        self.pgnos.push(pgno);
        Ok(())
    }

    /// Moves the pages held in memory to the spool file.
    fn spill(&mut self) -> Result<()> {
        let path = &self.spill_path;
        let tmp = TempFile::new(path.clone());
        let f = crate::durable::create_file(path, 0o600, false)
            .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        f.write_all_at(&self.mem, 0)
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        self.mem = Vec::new();
        self.file = Some((tmp, f));
        Ok(())
    }

    /// How many pages it holds.
    pub(crate) fn len(&self) -> usize {
        self.pgnos.len()
    }

    /// The page numbers, in the order pushed.
    pub(crate) fn pgnos(&self) -> &[u32] {
        &self.pgnos
    }

    /// Reads the `i`-th page pushed into `buf` (one page long).
    pub(crate) fn read(&self, i: usize, buf: &mut [u8]) -> Result<()> {
        let at = i * self.page_size;
        match &self.file {
            Some((tmp, f)) => f
                .read_exact_at(buf, at as u64)
                .map_err(|e| Error::io(format!("read {}", tmp.path().display()), e)),
            None => {
                buf.copy_from_slice(&self.mem[at..at + self.page_size]);
                Ok(())
            }
        }
    }

    /// Whether its pages went to the spool file (tests).
    #[cfg(test)]
    pub(crate) fn spilled(&self) -> bool {
        self.file.is_some()
    }
}

/// Where the spool of the follower of `output` spills: beside it (on the same disk), under
/// a hidden name (it starts with SQLite's header, and a `dir:` scan must not take it).
pub(crate) fn spill_path(output: &Path) -> PathBuf {
    crate::durable::hidden_sibling(output, ".follow-pages.tmp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_read_back_the_same_in_memory_and_spilled() {
        let dir = std::env::temp_dir().join(format!("lsrs-spool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spill = dir.join(".out.db.follow-pages.tmp");
        let ps = 4096usize;
        let page = |n: u32| vec![(n % 251) as u8; ps];
        let mut s = Spool::new(ps as u32, spill.clone());
        let n = (IN_MEMORY / ps) as u32 + 10;
        for pgno in 1..=n {
            s.push(pgno, &page(pgno)).unwrap();
            if pgno == 2 {
                assert!(!s.spilled() && !spill.exists());
            }
        }
        assert!(s.spilled() && spill.exists());
        assert_eq!(s.len(), n as usize);
        let mut buf = vec![0u8; ps];
        for (i, &pgno) in s.pgnos().iter().enumerate() {
            s.read(i, &mut buf).unwrap();
            assert!(buf == page(pgno), "page {pgno}");
        }
        drop(s);
        assert!(!spill.exists(), "the spool file outlived the spool");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
