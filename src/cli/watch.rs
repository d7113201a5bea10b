//! `watch: true` on a `dir:` entry: an inotify watch (`sys::Inotify`; no crate) wakes a
//! thread that rescans the directory, so databases created after start are added to the
//! running store and removed ones are stopped and dropped. The rescan, not the event,
//! decides, so a missed or coalesced event costs nothing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::cli::config::databases::{build_db, resolve_entry};
use crate::cli::config::DbConfig;
use crate::error::{Error, Result};
use crate::sys::Inotify;
use crate::StoreHandle;

/// What a watched directory reports: entries coming and going, and writes (a database
/// being created).
const MASK: u32 = Inotify::CREATE
    | Inotify::DELETE
    | Inotify::MOVED_FROM
    | Inotify::MOVED_TO
    | Inotify::MODIFY
    | Inotify::DELETE_SELF;

/// A running directory watcher; dropping it stops the thread.
pub(crate) struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

/// Every directory under `dir` to watch (itself, and its subdirectories if recursive).
fn dirs(dir: &Path, recursive: bool) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while recursive && i < out.len() {
        if let Ok(rd) = std::fs::read_dir(&out[i]) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir())
                    && !e.file_name().to_string_lossy().starts_with('.')
                {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

/// Watches the directory of `entry`, whose databases `initial` the store already has.
pub(crate) fn watch(entry: DbConfig, initial: Vec<PathBuf>, store: StoreHandle) -> Result<Watcher> {
    let dir = entry
        .dir
        .clone()
        .ok_or_else(|| Error::Invalid("watch: true needs a dir: entry".into()))?;
    let ino = Inotify::new()?;
    let mut watched = HashSet::new();
    for d in dirs(&dir, entry.recursive) {
        ino.watch(&d, MASK)?;
        watched.insert(d);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let mut known: HashSet<PathBuf> = initial.into_iter().collect();
    let thread = std::thread::Builder::new()
        .name("litestream-watch".into())
        .spawn(move || {
            log::info!("watching {} for databases", dir.display());
            while !s.load(Ordering::SeqCst) {
                if !ino.wait(Duration::from_millis(500), |_, _, _| {}) {
                    continue;
                }
                for d in dirs(&dir, entry.recursive) {
                    if !watched.contains(&d) && ino.watch(&d, MASK).is_ok() {
                        watched.insert(d);
                    }
                }
                rescan(&entry, &mut known, &store);
            }
        })
        .map_err(|e| Error::io("start directory watcher", e))?;
    Ok(Watcher {
        stop,
        thread: Some(thread),
    })
}

/// Adds the databases that appeared, removes the ones that are gone.
fn rescan(entry: &DbConfig, known: &mut HashSet<PathBuf>, store: &StoreHandle) {
    let found = match resolve_entry(entry) {
        Ok(f) => f
            .into_iter()
            .map(|mut r| {
                r.path = std::path::absolute(&r.path).unwrap_or(r.path);
                r
            })
            .collect::<Vec<_>>(),
        Err(e) => {
            log::warn!("watch: {e}");
            return;
        }
    };
    let now: HashSet<PathBuf> = found.iter().map(|r| r.path.clone()).collect();
    for r in &found {
        if known.contains(&r.path) {
            continue;
        }
        match build_db(r).and_then(|db| store.add(db)) {
            Ok(()) => {
                log::info!(
                    "{}: new database in a watched directory, replicating",
                    r.path.display()
                );
                known.insert(r.path.clone());
            }
            Err(e) => log::warn!("{}: cannot replicate: {e}", r.path.display()),
        }
    }
    let gone: Vec<PathBuf> = known.difference(&now).cloned().collect();
    for p in gone {
        known.remove(&p);
        match store.remove(&p, Duration::from_secs(5)) {
            Ok(_) => log::info!(
                "{}: database removed from a watched directory, stopped",
                p.display()
            ),
            Err(e) => log::warn!("{}: stop: {e}", p.display()),
        }
    }
}
