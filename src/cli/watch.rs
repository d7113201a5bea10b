//! `watch: true` on a `dir:` entry: an inotify watch (`sys::Inotify`; no crate) wakes a
//! thread that rescans the directory, so databases created after start are added to the
//! running store and removed ones are stopped and dropped. The rescan, not the event,
//! decides, so a missed or coalesced event costs nothing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::cli::config::databases::{build_db, resolve_entry_known};
use crate::cli::config::DbConfig;
use crate::error::{Error, Result};
use crate::sys::Inotify;
use crate::StoreHandle;

/// What a watched directory reports: entries coming and going, writes (a database being
/// created), and the directory itself going away (deleted, or renamed: a directory made
/// again under its name is then watched anew).
const MASK: u32 = Inotify::CREATE
    | Inotify::DELETE
    | Inotify::MOVED_FROM
    | Inotify::MOVED_TO
    | Inotify::MODIFY
    | Inotify::DELETE_SELF
    | Inotify::MOVE_SELF;

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

/// The inotify watches of one entry's directories, by watch descriptor.
struct Watches {
    ino: Inotify,
    by_wd: HashMap<i32, PathBuf>,
}

impl Watches {
    /// Watches every directory of the entry not watched yet (a directory deleted and made
    /// again, too); true if any watch was added.
    fn add_missing(&mut self, dir: &Path, recursive: bool) -> bool {
        let mut added = false;
        for d in dirs(dir, recursive) {
            if self.by_wd.values().any(|w| *w == d) {
                continue;
            }
            if let Ok(wd) = self.ino.watch(&d, MASK) {
                self.by_wd.insert(wd, d);
                added = true;
            }
        }
        added
    }

    /// Whether the entry's own directory is watched.
    fn has(&self, dir: &Path) -> bool {
        self.by_wd.values().any(|w| w == dir)
    }

    /// Waits for events; forgets the watches the kernel dropped (their directory deleted).
    /// True if there were any events.
    fn wait(&mut self, timeout: Duration) -> bool {
        let mut dropped = Vec::new();
        let any = self.ino.wait(timeout, |wd, mask, _| {
            if mask & (Inotify::IGNORED | Inotify::DELETE_SELF | Inotify::MOVE_SELF) != 0 {
                dropped.push(wd);
            }
        });
        for wd in dropped {
            self.by_wd.remove(&wd);
        }
        any
    }
}

/// Watches the directory of `entry`, whose databases `initial` the store was built with;
/// one rescan at start takes those that came or went since.
pub(crate) fn watch(entry: DbConfig, initial: Vec<PathBuf>, store: StoreHandle) -> Result<Watcher> {
    let dir = entry
        .dir
        .clone()
        .ok_or_else(|| Error::Invalid("watch: true needs a dir: entry".into()))?;
    let mut w = Watches {
        ino: Inotify::new()?,
        by_wd: HashMap::new(),
    };
    for d in dirs(&dir, entry.recursive) {
        let wd = w.ino.watch(&d, MASK)?;
        w.by_wd.insert(wd, d);
    }
    let mut known: HashSet<PathBuf> = initial.into_iter().collect();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = std::thread::Builder::new()
        .name("litestream-watch".into())
        .spawn(move || {
            log::info!("watching {} for databases", dir.display());
            rescan(&entry, &dir, &mut known, &store);
            while !s.load(Ordering::SeqCst) {
                let woke = w.wait(Duration::from_millis(500));
                // Idle with the directory watched: nothing to do. Without it (deleted),
                // look every wait for it to be back.
                if !woke && w.has(&dir) {
                    continue;
                }
                let added = w.add_missing(&dir, entry.recursive);
                if woke || added {
                    rescan(&entry, &dir, &mut known, &store);
                }
            }
        })
        .map_err(|e| Error::io("start directory watcher", e))?;
    Ok(Watcher {
        stop,
        thread: Some(thread),
    })
}

/// Adds the databases that appeared, removes the ones that are gone (all of them when the
/// directory itself is).
fn rescan(entry: &DbConfig, dir: &Path, known: &mut HashSet<PathBuf>, store: &StoreHandle) {
    // Only a directory that is not there is gone: a stat that fails otherwise (EACCES,
    // EIO, a stale NFS handle) keeps its databases.
    let gone = matches!(std::fs::metadata(dir), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    let found = if gone {
        Vec::new()
    } else {
        // The databases replicated already are never opened to check their header: closing
        // a descriptor of ours on a live database drops every POSIX lock this process holds
        // on it, our SQLite connections' included.
        let replicated = |p: &Path| known.contains(p) || store.contains(p);
        match resolve_entry_known(entry, &replicated) {
            Ok(f) => f,
            Err(e) => {
                log::warn!("watch: {e}");
                return;
            }
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::{CompactionLevels, Store};

    use crate::durable::Scratch;

    /// A scratch directory holding `data/`, the watched directory.
    fn scratch(name: &str) -> Scratch {
        let s = Scratch::new(name);
        std::fs::create_dir_all(s.0.join("data")).unwrap();
        s
    }

    /// The watched directory of `s`.
    fn data(s: &Scratch) -> PathBuf {
        s.0.join("data")
    }

    /// A running, empty store and the watched entry of `s`'s `data/`.
    fn setup(s: &Scratch) -> (Store, DbConfig) {
        let cfg = crate::cli::config::parse(&format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    watch: true\n    replica:\n      path: {}\n",
            data(s).display(),
            s.0.join("rep").display()
        ))
        .unwrap();
        let mut store = Store::new(Vec::new(), CompactionLevels::default()).unwrap();
        store.open().unwrap();
        (store, cfg.dbs[0].clone())
    }

    fn make_db(path: &Path) {
        let c = rusqlite::Connection::open(path).unwrap();
        c.execute_batch("CREATE TABLE t (v); INSERT INTO t VALUES (1);")
            .unwrap();
    }

    /// Whether `path` is in the store within ten seconds.
    fn appears(store: &StoreHandle, path: &Path) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if store.contains(path) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Fails without the fix: the watcher took what it found at its own start as already
    /// replicated, so a database made after the store was built (here: before the watcher
    /// started, with no event after) was never added.
    #[test]
    fn a_database_made_before_the_watcher_started_is_taken() {
        let s = scratch("start");
        let (mut store, entry) = setup(&s);
        let db = data(&s).join("a.db");
        make_db(&db);
        let w = watch(entry, Vec::new(), store.handle()).unwrap();
        assert!(appears(&store.handle(), &db));
        drop(w);
        store.close().unwrap();
    }

    /// Fails without the fix: the deleted directory stayed in the watched set, so once made
    /// again it was never watched and its new database never taken.
    #[test]
    fn a_directory_deleted_and_made_again_is_watched_again() {
        let s = scratch("recreate");
        let (mut store, entry) = setup(&s);
        let w = watch(entry, Vec::new(), store.handle()).unwrap();
        std::fs::remove_dir(data(&s)).unwrap();
        // Long enough for the watcher to see the deletion.
        std::thread::sleep(Duration::from_millis(1200));
        std::fs::create_dir(data(&s)).unwrap();
        std::thread::sleep(Duration::from_millis(1200));
        let db = data(&s).join("b.db");
        make_db(&db);
        assert!(appears(&store.handle(), &db));
        drop(w);
        store.close().unwrap();
    }

    /// Fails without the fix: an empty file was taken (and set up) as a database at once.
    /// Now it is taken when its first write makes it one.
    #[test]
    fn an_empty_file_is_taken_once_it_is_a_database() {
        let s = scratch("empty");
        let (mut store, entry) = setup(&s);
        let w = watch(entry, Vec::new(), store.handle()).unwrap();
        let (empty, real) = (data(&s).join("e.db"), data(&s).join("r.db"));
        std::fs::write(&empty, b"").unwrap();
        std::fs::write(data(&s).join("r.db-journal"), b"SQLite format 3\0").unwrap();
        make_db(&real);
        assert!(appears(&store.handle(), &real));
        std::thread::sleep(Duration::from_millis(700));
        let h = store.handle();
        assert!(!h.contains(&empty), "{:?}", h.paths());
        assert!(!h.contains(&data(&s).join("r.db-journal")));
        make_db(&empty);
        assert!(appears(&h, &empty));
        drop(w);
        store.close().unwrap();
    }
}
