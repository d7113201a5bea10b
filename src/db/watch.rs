//! `monitor-interval: 0`: instead of a timer, an inotify watch on the database's directory
//! wakes the database's thread whenever the WAL is written, created, moved or deleted (or
//! the database file comes or goes), so a commit is synced as it lands and an idle
//! database costs nothing. Linux only; elsewhere the thread polls every 10 ms.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use super::Cmd;
use crate::error::Result;

/// Shared by a watcher and its database's thread.
#[derive(Default)]
pub(super) struct Wakes {
    /// A `Cmd::Wake` is on its way: the watcher sends no other until the thread takes it,
    /// so a writer's thousands of events a second become one tick at a time.
    pending: AtomicBool,
    /// Set when the database's thread ends.
    stop: AtomicBool,
    /// The watch, removed to wake the watcher when it must stop (Linux).
    #[cfg(target_os = "linux")]
    watch: Option<(Arc<crate::sys::Inotify>, i32)>,
}

impl Wakes {
    /// Called by the database's thread as it takes a wake, before it ticks: a write
    /// during that tick wakes it again.
    pub(super) fn taken(&self) {
        self.pending.store(false, Ordering::SeqCst);
    }

    /// Stops the watcher (without waiting for it; it wakes and ends at once).
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        #[cfg(target_os = "linux")]
        if let Some((ino, wd)) = &self.watch {
            ino.unwatch(*wd);
        }
    }
}

/// Starts the watcher of the database at `path`, which sends `Cmd::Wake` on `tx`.
#[cfg(target_os = "linux")]
pub(super) fn spawn(path: &Path, tx: Sender<Cmd>) -> Result<Arc<Wakes>> {
    use crate::error::Error;
    use crate::sys::Inotify;
    use std::os::unix::ffi::OsStrExt;
    use std::time::Duration;

    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => Path::new(".").to_path_buf(),
    };
    let db = path
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default();
    let wal = [db.as_slice(), b"-wal"].concat();
    let ino = Arc::new(Inotify::new()?);
    let wd = ino.watch(
        &dir,
        Inotify::MODIFY
            | Inotify::CREATE
            | Inotify::DELETE
            | Inotify::MOVED_FROM
            | Inotify::MOVED_TO,
    )?;
    let wakes = Arc::new(Wakes {
        watch: Some((ino.clone(), wd)),
        ..Wakes::default()
    });
    let w = wakes.clone();
    let first = tx.clone();
    std::thread::Builder::new()
        .name("litestream-watch-db".into())
        .stack_size(64 << 10)
        .spawn(move || {
            // Idle, it sleeps: nothing wakes it but an event (a minute at most).
            loop {
                let mut hit = false;
                ino.wait(Duration::from_secs(60), |_, mask, name| {
                    // The WAL, whatever happened to it; the database file coming or going
                    // (not our own checkpoints writing into it); a lost queue.
                    hit |= name == wal.as_slice()
                        || (name == db.as_slice() && mask & Inotify::MODIFY == 0)
                        || name.is_empty();
                });
                if w.stop.load(Ordering::SeqCst) {
                    break;
                }
                if hit && !w.pending.swap(true, Ordering::SeqCst) && tx.send(Cmd::Wake).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| Error::io("start WAL watcher", e))?;
    // The first tick, which the timer would have brought.
    wakes.pending.store(true, Ordering::SeqCst);
    let _ = first.send(Cmd::Wake);
    Ok(wakes)
}

/// Elsewhere there is no watcher: the thread polls.
#[cfg(not(target_os = "linux"))]
pub(super) fn spawn(path: &Path, _tx: Sender<Cmd>) -> Result<Arc<Wakes>> {
    Err(crate::error::Error::Invalid(format!(
        "{}: watching a WAL needs Linux's inotify",
        path.display()
    )))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::mpsc::{channel, RecvTimeoutError};
    use std::time::Duration;

    fn woke(rx: &std::sync::mpsc::Receiver<Cmd>, wakes: &Wakes, within: Duration) -> bool {
        match rx.recv_timeout(within) {
            Ok(Cmd::Wake) => {
                wakes.taken();
                true
            }
            Ok(_) => panic!("the watcher sends wakes only"),
            Err(RecvTimeoutError::Timeout) => false,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn wakes_for_the_wal_and_the_database_coming_not_for_neighbours() {
        let dir = std::env::temp_dir().join(format!("lsrs-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("app.db");
        let (tx, rx) = channel();
        let wakes = spawn(&db, tx).unwrap();
        let long = Duration::from_secs(5);
        let short = Duration::from_millis(300);
        assert!(woke(&rx, &wakes, long), "the first tick");
        // A neighbour's WAL and our own writes into the database file: no wake.
        std::fs::write(dir.join("other.db-wal"), b"x").unwrap();
        assert!(!woke(&rx, &wakes, short));
        // The database file appearing, then its WAL written: a wake each.
        std::fs::write(&db, b"").unwrap();
        assert!(woke(&rx, &wakes, long), "database created");
        while woke(&rx, &wakes, short) {}
        std::fs::OpenOptions::new()
            .append(true)
            .open(&db)
            .unwrap()
            .write_all(b"page")
            .unwrap();
        assert!(!woke(&rx, &wakes, short), "a write into the database file");
        let mut wal = std::fs::File::create(dir.join("app.db-wal")).unwrap();
        assert!(woke(&rx, &wakes, long), "WAL created");
        while woke(&rx, &wakes, short) {}
        for _ in 0..100 {
            wal.write_all(b"frame").unwrap();
        }
        // A hundred writes while no wake is taken: one wake on its way (however late the
        // watcher runs), and none after it, not a hundred.
        assert!(
            matches!(rx.recv_timeout(long), Ok(Cmd::Wake)),
            "WAL written"
        );
        std::thread::sleep(short);
        assert_eq!(rx.try_iter().count(), 0, "WAL written: more than one wake");
        // Stopped, the watcher ends at once (it sleeps up to a minute otherwise): its
        // sender goes with it.
        wakes.stop();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).err(),
            Some(RecvTimeoutError::Disconnected)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
