//! Opening a database for replication: litestream's two connections (`R` reads, `W`
//! takes the write barrier), WAL mode, the local position from the newest L0 file, and
//! the long-lived read transaction `R` (see the module docs of `db`).

use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{local, Position, Shared, Syncer};
use crate::error::{Error, Result};
use crate::ltx::{self, Txid};
use crate::sqlite::Conn;
use crate::wal::WAL_HEADER_SIZE;

/// One small write of our own, which makes a WAL (and its header) when there is none.
pub(super) const BUMP_SEQ: &str = "INSERT INTO _litestream_seq (id, seq) VALUES (1, 1) \
     ON CONFLICT (id) DO UPDATE SET seq = seq + 1";

impl Syncer {
    /// Opens connections, puts the database in WAL mode and loads the local position.
    /// The database file must exist.
    pub(super) fn open(shared: Arc<Shared>) -> Result<Syncer> {
        let path = shared.path.clone();
        if !path.exists() {
            return Err(Error::State(format!(
                "database {} does not exist yet",
                path.display()
            )));
        }
        let busy = shared.opts.busy_timeout.as_millis() as u32;
        let r = Conn::open(&path)?;
        let w = Conn::open(&path)?;
        for c in [&r, &w] {
            c.busy_timeout(busy);
            c.exec("PRAGMA wal_autocheckpoint = 0")?;
            // Our connections read a handful of pages through SQL (the schema, our
            // sequence row): a cache of a few pages keeps a hundred databases small
            // (each page held is ~4.4 KiB, two connections per database).
            c.exec("PRAGMA cache_size = 4")?;
            c.set_persist_wal()?;
        }
        // The barrier must find the gaps between a saturating writer's transactions.
        w.eager_busy_handler(shared.opts.busy_timeout.max(Duration::from_secs(1)) * 5);
        // No journal_size_limit: a restart by our own write does not shrink the WAL file in
        // one go inside its commit (freeing hundreds of megabytes holds writers for
        // 100-250 ms); the checkpoint shrinks it in steps (`Syncer::shrink_wal`).
        let mode = w.query_column("PRAGMA journal_mode = wal")?;
        if mode.first().map(|s| s.as_str()) != Some("wal") {
            return Err(Error::State(format!(
                "{}: could not enable WAL mode (journal_mode is {mode:?})",
                path.display()
            )));
        }
        w.exec(
            "CREATE TABLE IF NOT EXISTS _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER);
             CREATE TABLE IF NOT EXISTS _litestream_lock (id INTEGER);",
        )?;
        let page_size = w.query_i64("PRAGMA page_size")? as u32;
        if !ltx::is_valid_page_size(page_size) {
            return Err(Error::State(format!(
                "{}: invalid page size {page_size}",
                path.display()
            )));
        }
        let l0_dir = shared.l0_dir();
        fs::create_dir_all(&l0_dir)
            .map_err(|e| Error::io(format!("create {}", l0_dir.display()), e))?;
        local::restrict_to_db(&shared.meta_path, &path)?;
        local::remove_temp_files(&l0_dir);
        if !shared.state().initialized {
            // Nothing of this process asks for a snapshot or compacts before the first
            // open publishes `initialized`.
            local::remove_leftover_work_files(&shared.meta_path);
        }
        let wal_path = crate::durable::sibling(&path, "-wal");
        let wal_ok = fs::metadata(&wal_path)
            .map(|m| m.len() >= WAL_HEADER_SIZE)
            .unwrap_or(false);
        if !wal_ok {
            w.exec(BUMP_SEQ)?;
        }
        let mut s = Syncer {
            wal_path,
            l0_dir,
            r,
            w,
            page_size,
            file_mode: crate::durable::mode_like(&path, 0o600),
            pos: None,
            restart_ok: false,
            copy_raced: false,
            reading: false,
            renumber_after: None,
            last_stat: None,
            recheck: true,
            synced_since_checkpoint: false,
            last_checkpoint: Instant::now(),
            futile_passive: false,
            pacer: None,
            pacer_conn: None,
            #[cfg(test)]
            after_page: None,
            buf: vec![0u8; page_size as usize],
            shared,
        };
        s.begin_read()?;
        s.pos = s.load_position()?;
        let txid = s.pos.as_ref().map(|p| p.txid).unwrap_or_default();
        s.shared.publish(|st| {
            st.page_size = page_size;
            st.txid = txid;
            st.initialized = true;
            st.error = None;
        });
        Ok(s)
    }

    pub(super) fn begin_read(&mut self) -> Result<()> {
        if self.reading {
            return Ok(());
        }
        self.r.exec("BEGIN")?;
        if let Err(e) = self.r.query_i64("SELECT COUNT(1) FROM _litestream_seq") {
            let _ = self.r.exec("ROLLBACK");
            return Err(e);
        }
        self.reading = true;
        Ok(())
    }

    pub(super) fn end_read(&mut self) -> Result<()> {
        self.restart_ok = false;
        if self.reading {
            self.reading = false;
            if self.r.in_transaction() {
                self.r.exec("ROLLBACK")?;
            }
        }
        Ok(())
    }

    /// The highest local L0 file, fully verified; a damaged one resets local state (the
    /// next sync is then a snapshot numbered after it).
    fn load_position(&mut self) -> Result<Option<Position>> {
        let max = local::max_local_txid(&self.l0_dir)?;
        if max == Txid::ZERO {
            return Ok(None);
        }
        let path = self.shared.l0_path(max);
        match local::read_verified_header(&path) {
            Ok(h) => {
                if h.page_size != self.page_size {
                    log::warn!(
                        "{}: last local L0 file has page size {}, database has {}; taking a new snapshot",
                        self.shared.path.display(),
                        h.page_size,
                        self.page_size
                    );
                    self.renumber_after = Some(max);
                }
                Ok(Some(Position {
                    txid: max,
                    end: (h.wal_offset + h.wal_size) as u64,
                    salts: (h.wal_salt1, h.wal_salt2),
                    commit: h.commit,
                    checksum: None,
                }))
            }
            Err(e) => {
                log::warn!(
                    "{}: local L0 file {} is unreadable ({e}); taking a new snapshot",
                    self.shared.path.display(),
                    path.display()
                );
                self.renumber_after = Some(max);
                Ok(Some(Position {
                    txid: max,
                    end: 0,
                    salts: (0, 0),
                    commit: 0,
                    checksum: None,
                }))
            }
        }
    }

    /// Closes: final sync, release the read transaction.
    pub(super) fn close(mut self) -> Result<Txid> {
        let r = self.sync(true);
        let _ = self.end_read();
        r?;
        Ok(self.txid())
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        // Release R; the connections close when their fields drop.
        let _ = self.end_read();
    }
}
