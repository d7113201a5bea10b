//! A `ReplicaClient` wrapper that counts the bytes uploaded and the server-side copies
//! made through it, to prove what a workload ships.

use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use litestream::{FileInfo, ReplicaClient, Result, Txid};

/// Forwards every call to `inner`, counting uploads and copies.
#[derive(Debug)]
pub struct Counting {
    pub inner: Arc<dyn ReplicaClient>,
    pub uploaded: AtomicU64,
    pub uploads: AtomicU64,
    pub copies: AtomicU64,
}

impl Counting {
    pub fn new(inner: Arc<dyn ReplicaClient>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            uploaded: AtomicU64::new(0),
            uploads: AtomicU64::new(0),
            copies: AtomicU64::new(0),
        })
    }

    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::SeqCst)
    }

    pub fn copies(&self) -> u64 {
        self.copies.load(Ordering::SeqCst)
    }
}

impl ReplicaClient for Counting {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn ltx_files(&self, level: u8, seek: Txid, accurate: bool) -> Result<Vec<FileInfo>> {
        self.inner.ltx_files(level, seek, accurate)
    }

    fn open_ltx_file(
        &self,
        level: u8,
        min: Txid,
        max: Txid,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Box<dyn Read + Send>> {
        self.inner.open_ltx_file(level, min, max, offset, len)
    }

    fn write_ltx_file(&self, level: u8, min: Txid, max: Txid, src: &File) -> Result<FileInfo> {
        let info = self.inner.write_ltx_file(level, min, max, src)?;
        self.uploaded.fetch_add(info.size, Ordering::SeqCst);
        self.uploads.fetch_add(1, Ordering::SeqCst);
        Ok(info)
    }

    fn copy_ltx_file(&self, src: &FileInfo, level: u8) -> Result<Option<FileInfo>> {
        let r = self.inner.copy_ltx_file(src, level)?;
        if r.is_some() {
            self.copies.fetch_add(1, Ordering::SeqCst);
        }
        Ok(r)
    }

    fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        self.inner.delete_ltx_files(files)
    }

    fn delete_all(&self) -> Result<()> {
        self.inner.delete_all()
    }
}
