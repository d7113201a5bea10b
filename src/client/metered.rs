//! Replica operation metrics: every client a store uses is wrapped in [`Metered`], which
//! counts operations, bytes, durations and errors per backend kind and operation (`GET`,
//! `PUT`, `DELETE`, `LIST`), as Litestream's `litestream_replica_operation_*` metrics.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{FileInfo, ObjectInfo, ReplicaClient};
use crate::error::{Error, Result};
use crate::ltx::Txid;

/// Upper bounds (seconds) of the duration histogram's buckets, as Litestream's.
pub const DURATION_BUCKETS: [f64; 9] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0];

/// Counters of one (backend kind, operation).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpStats {
    /// Operations performed (for `DELETE`, files deleted).
    pub total: u64,
    /// Bytes sent or received.
    pub bytes: u64,
    /// Seconds spent, summed.
    pub seconds: f64,
    /// Operations per duration bucket (cumulative counts are derived when rendering).
    pub buckets: [u64; DURATION_BUCKETS.len()],
    /// Operations timed (the histogram's count).
    pub timed: u64,
    /// Errors by code (an HTTP status, a service code, or the error's kind).
    pub errors: BTreeMap<String, u64>,
}

type Key = (&'static str, &'static str);

static OPS: Mutex<BTreeMap<Key, OpStats>> = Mutex::new(BTreeMap::new());

/// A snapshot of every (backend kind, operation)'s counters since the process started.
pub fn operation_stats() -> Vec<(&'static str, &'static str, OpStats)> {
    OPS.lock()
        .map(|m| m.iter().map(|(k, v)| (k.0, k.1, v.clone())).collect())
        .unwrap_or_default()
}

fn record(kind: &'static str, op: &'static str, f: impl FnOnce(&mut OpStats)) {
    if let Ok(mut m) = OPS.lock() {
        f(m.entry((kind, op)).or_default());
    }
}

fn error_code(e: &Error) -> String {
    match e {
        Error::Backend { code, .. } if !code.is_empty() => code.clone(),
        Error::Backend {
            status: Some(s), ..
        } => s.to_string(),
        Error::NotFound { .. } => "NotFound".into(),
        Error::Io { source, .. } => format!("{:?}", source.kind()),
        _ => "error".into(),
    }
}

/// Wraps `client` so its operations are counted.
pub(crate) fn metered(client: Arc<dyn ReplicaClient>) -> Arc<dyn ReplicaClient> {
    Arc::new(Metered { inner: client })
}

/// A client whose operations are counted in the process-wide operation metrics.
#[derive(Debug)]
pub(crate) struct Metered {
    inner: Arc<dyn ReplicaClient>,
}

impl Metered {
    fn timed<T>(
        &self,
        op: &'static str,
        bytes: impl Fn(&T) -> u64,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let started = Instant::now();
        let r = f();
        self.note(op, started, &r, bytes);
        r
    }

    /// Records one call of `op` that began at `started` and gave `r`.
    fn note<T>(
        &self,
        op: &'static str,
        started: Instant,
        r: &Result<T>,
        bytes: impl Fn(&T) -> u64,
    ) {
        let secs = started.elapsed().as_secs_f64();
        record(self.inner.kind(), op, |s| {
            s.seconds += secs;
            s.timed += 1;
            if let Some(i) = DURATION_BUCKETS.iter().position(|b| secs <= *b) {
                s.buckets[i] += 1;
            }
            match r {
                Ok(v) => {
                    s.total += 1;
                    s.bytes += bytes(v);
                }
                Err(e) => *s.errors.entry(error_code(e)).or_default() += 1,
            }
        });
    }
}

/// Counts the bytes read through a GET.
struct Counting {
    inner: Box<dyn Read + Send>,
    kind: &'static str,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            record(self.kind, "GET", |s| s.bytes += n as u64);
        }
        Ok(n)
    }
}

impl ReplicaClient for Metered {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn ltx_files(&self, level: u8, seek: Txid, accurate_timestamps: bool) -> Result<Vec<FileInfo>> {
        self.timed(
            "LIST",
            |_| 0,
            || self.inner.ltx_files(level, seek, accurate_timestamps),
        )
    }

    fn all_ltx_files(&self, accurate_timestamps: bool) -> Result<Option<Vec<FileInfo>>> {
        // A backend without a recursive listing answers `None` at once, sending nothing:
        // not a LIST (the per-level listings that follow are counted one by one).
        let started = Instant::now();
        let r = self.inner.all_ltx_files(accurate_timestamps);
        if !matches!(r, Ok(None)) {
            self.note("LIST", started, &r, |_| 0);
        }
        r
    }

    fn open_ltx_file(
        &self,
        level: u8,
        min: Txid,
        max: Txid,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Box<dyn Read + Send>> {
        let r = self.timed(
            "GET",
            |_| 0,
            || self.inner.open_ltx_file(level, min, max, offset, len),
        )?;
        Ok(Box::new(Counting {
            inner: r,
            kind: self.inner.kind(),
        }))
    }

    fn write_ltx_file(&self, level: u8, min: Txid, max: Txid, src: &File) -> Result<FileInfo> {
        self.timed(
            "PUT",
            |i: &FileInfo| i.size,
            || self.inner.write_ltx_file(level, min, max, src),
        )
    }

    fn copy_ltx_file(&self, src: &FileInfo, level: u8) -> Result<Option<FileInfo>> {
        // A server-side copy moves no bytes through this process.
        self.timed("COPY", |_| 0, || self.inner.copy_ltx_file(src, level))
    }

    fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.timed("LIST", |_| 0, || self.inner.list_objects(prefix))
    }

    fn open_object(&self, path: &str) -> Result<Box<dyn Read + Send>> {
        let r = self.timed("GET", |_| 0, || self.inner.open_object(path))?;
        Ok(Box::new(Counting {
            inner: r,
            kind: self.inner.kind(),
        }))
    }

    fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        if files.is_empty() {
            return self.inner.delete_ltx_files(files);
        }
        let r = self.timed("DELETE", |_| 0, || self.inner.delete_ltx_files(files));
        if r.is_ok() && files.len() > 1 {
            record(self.inner.kind(), "DELETE", |s| {
                s.total += files.len() as u64 - 1
            });
        }
        r
    }

    fn delete_all(&self) -> Result<()> {
        self.timed("DELETE", |_| 0, || self.inner.delete_all())
    }
}
