//! [`FaultClient`]: a wrapper around any replica client that fails, hangs, loses the
//! answer of, or slows down chosen calls.

use std::fs::File;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::client::{FileInfo, ObjectInfo, ReplicaClient};
use crate::error::{Error, Result};
use crate::ltx::Txid;

/// A kind of call on a [`ReplicaClient`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// `ltx_files`.
    List,
    /// `open_ltx_file`.
    Open,
    /// `write_ltx_file`.
    Write,
    /// `delete_ltx_files`.
    Delete,
    /// `delete_all`.
    DeleteAll,
    /// Any call: rules and counts over every call, whatever its kind.
    Any,
}

impl Call {
    const KINDS: usize = 5;

    fn index(self) -> usize {
        match self {
            Call::List => 0,
            Call::Open => 1,
            Call::Write => 2,
            Call::Delete => 3,
            Call::DeleteAll => 4,
            Call::Any => 5,
        }
    }
}

/// What happens to a call a rule picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The call fails without effect, with a transient error (as a 503 would).
    Fail,
    /// The call fails without effect, with a final error (as a 403 would).
    Refuse,
    /// The call waits this long, then runs normally (a stalled connection that recovers).
    Hang(Duration),
    /// Half done: a write or delete takes effect but its answer is lost (a transient
    /// error); a read delivers the first half of its bytes, then the stream breaks; a
    /// listing runs but its answer is lost.
    Half,
}

/// One fault that fired: which call (its kind and its index among calls of that kind,
/// counting from 0) and what was done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injected {
    /// The kind of call.
    pub call: Call,
    /// Its index among all calls (of every kind), counting from 0.
    pub index: u64,
    /// What was done to it.
    pub fault: Fault,
}

#[derive(Debug, Default)]
struct State {
    /// Calls so far, per kind, then the total.
    counts: [u64; Call::KINDS + 1],
    rules: Vec<(Call, u64, Fault)>,
    latency: [Duration; Call::KINDS + 1],
    down: bool,
    injected: Vec<Injected>,
}

/// A [`ReplicaClient`] that forwards to another and injects faults on chosen calls.
///
/// Rules are `(kind, n, fault)`: the `n`-th call of that kind (counting from 0; with
/// [`Call::Any`], of every kind) suffers `fault`. [`set_down`](Self::set_down) fails every
/// call until lifted; [`latency`](Self::latency) adds a delay to each call of a kind.
#[derive(Debug)]
pub struct FaultClient {
    inner: Arc<dyn ReplicaClient>,
    state: Mutex<State>,
}

impl FaultClient {
    /// A wrapper around `inner` that injects nothing until told to.
    pub fn new(inner: Arc<dyn ReplicaClient>) -> FaultClient {
        FaultClient {
            inner,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `n`-th call of kind `call` (from 0) suffers `fault`.
    pub fn inject(&self, call: Call, n: u64, fault: Fault) {
        self.lock().rules.push((call, n, fault));
    }

    /// Adds `d` to every call of kind `call` ([`Call::Any`]: every call).
    pub fn latency(&self, call: Call, d: Duration) {
        self.lock().latency[call.index()] = d;
    }

    /// While down, every call fails with a transient error and no effect.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Calls of kind `call` so far ([`Call::Any`]: all calls).
    pub fn calls(&self, call: Call) -> u64 {
        self.lock().counts[call.index()]
    }

    /// The faults that fired so far, in order.
    pub fn injected(&self) -> Vec<Injected> {
        self.lock().injected.clone()
    }

    /// Counts a call and decides its fate; sleeps its latency (outside the lock).
    fn enter(&self, call: Call) -> Option<Fault> {
        let (fault, delay) = {
            let mut s = self.lock();
            let nth = s.counts[call.index()];
            let index = s.counts[Call::Any.index()];
            s.counts[call.index()] += 1;
            s.counts[Call::Any.index()] += 1;
            let fault = if s.down {
                Some(Fault::Fail)
            } else {
                s.rules
                    .iter()
                    .find(|(c, n, _)| (*c == call && *n == nth) || (*c == Call::Any && *n == index))
                    .map(|r| r.2)
            };
            if let Some(fault) = fault {
                s.injected.push(Injected { call, index, fault });
            }
            (
                fault,
                s.latency[call.index()] + s.latency[Call::Any.index()],
            )
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if let Some(Fault::Hang(d)) = fault {
            std::thread::sleep(d);
            return None;
        }
        fault
    }
}

/// The error an injected fault gives: transient (503) or final (403).
fn injected(op: &'static str, fault: Fault) -> Error {
    let (status, message) = match fault {
        Fault::Refuse => (403, "injected refusal"),
        Fault::Half => (
            503,
            "injected fault: the answer was lost after the call took effect",
        ),
        _ => (503, "injected fault"),
    };
    Error::Backend {
        backend: "fault",
        op,
        target: String::new(),
        status: Some(status),
        code: "InjectedFault".into(),
        message: message.into(),
    }
}

impl ReplicaClient for FaultClient {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn ltx_files(&self, level: u8, seek: Txid, accurate: bool) -> Result<Vec<FileInfo>> {
        match self.enter(Call::List) {
            None => self.inner.ltx_files(level, seek, accurate),
            Some(Fault::Half) => {
                self.inner.ltx_files(level, seek, accurate)?;
                Err(injected("list", Fault::Half))
            }
            Some(f) => Err(injected("list", f)),
        }
    }

    fn all_ltx_files(&self, accurate: bool) -> Result<Option<Vec<FileInfo>>> {
        match self.enter(Call::List) {
            None => self.inner.all_ltx_files(accurate),
            Some(Fault::Half) => {
                self.inner.all_ltx_files(accurate)?;
                Err(injected("list", Fault::Half))
            }
            Some(f) => Err(injected("list", f)),
        }
    }

    fn open_ltx_file(
        &self,
        level: u8,
        min: Txid,
        max: Txid,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Box<dyn Read + Send>> {
        match self.enter(Call::Open) {
            None => self.inner.open_ltx_file(level, min, max, offset, len),
            Some(Fault::Half) => {
                let mut bytes = Vec::new();
                self.inner
                    .open_ltx_file(level, min, max, offset, len)?
                    .read_to_end(&mut bytes)
                    .map_err(|e| Error::io("read through the fault client", e))?;
                bytes.truncate(bytes.len() / 2);
                Ok(Box::new(io::Cursor::new(bytes).chain(Broken)))
            }
            Some(f) => Err(injected("open", f)),
        }
    }

    fn write_ltx_file(&self, level: u8, min: Txid, max: Txid, src: &File) -> Result<FileInfo> {
        match self.enter(Call::Write) {
            None => self.inner.write_ltx_file(level, min, max, src),
            Some(Fault::Half) => {
                self.inner.write_ltx_file(level, min, max, src)?;
                Err(injected("write", Fault::Half))
            }
            Some(f) => Err(injected("write", f)),
        }
    }

    fn copy_ltx_file(&self, src: &FileInfo, level: u8) -> Result<Option<FileInfo>> {
        // Forwarded without faults: a backend that cannot copy answers None and the
        // caller uploads, which `Write` faults cover.
        self.inner.copy_ltx_file(src, level)
    }

    fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.inner.list_objects(prefix)
    }

    fn open_object(&self, path: &str) -> Result<Box<dyn Read + Send>> {
        self.inner.open_object(path)
    }

    fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        match self.enter(Call::Delete) {
            None => self.inner.delete_ltx_files(files),
            Some(Fault::Half) => {
                // Half the batch is deleted, then the answer is lost.
                self.inner
                    .delete_ltx_files(&files[..files.len().div_ceil(2)])?;
                Err(injected("delete", Fault::Half))
            }
            Some(f) => Err(injected("delete", f)),
        }
    }

    fn delete_all(&self) -> Result<()> {
        match self.enter(Call::DeleteAll) {
            None => self.inner.delete_all(),
            Some(Fault::Half) => {
                self.inner.delete_all()?;
                Err(injected("delete all", Fault::Half))
            }
            Some(f) => Err(injected("delete all", f)),
        }
    }
}

/// A stream that breaks: the rest of a read cut off half-way.
struct Broken;

impl Read for Broken {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "injected fault: the stream broke half-way",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryClient;

    #[test]
    fn rules_pick_the_nth_call_of_a_kind_or_of_all() {
        let m = Arc::new(MemoryClient::new());
        m.put(0, Txid(1), Txid(1), vec![7u8; 100]);
        let f = FaultClient::new(m.clone());
        f.inject(Call::List, 1, Fault::Fail);
        f.inject(Call::Any, 3, Fault::Half);
        assert!(f.ltx_files(0, Txid::ZERO, false).is_ok());
        assert!(f
            .ltx_files(0, Txid::ZERO, false)
            .unwrap_err()
            .is_transient());
        assert!(f.ltx_files(0, Txid::ZERO, false).is_ok());
        let mut r = f.open_ltx_file(0, Txid(1), Txid(1), 0, None).unwrap();
        let mut got = Vec::new();
        let e = r.read_to_end(&mut got).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(got.len(), 50);
        assert_eq!(f.calls(Call::Any), 4);
        assert_eq!(f.calls(Call::List), 3);
        assert_eq!(f.injected().len(), 2);
        f.set_down(true);
        assert!(f.delete_all().is_err());
        assert_eq!(m.files().len(), 1);
        f.set_down(false);
        f.inject(Call::Delete, 0, Fault::Half);
        assert!(f.delete_ltx_files(&m.files()).is_err());
        assert!(m.files().is_empty(), "a lost answer still took effect");
    }
}
