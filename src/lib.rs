//! # litestream
//!
//! Continuous replication of SQLite databases to files and object stores, in your Rust
//! program, byte-compatible with [Litestream](https://litestream.io) v0.5: a replica written
//! here restores with the official `litestream restore`, and the other way round.
//!
//! The pieces, each in its own module:
//!
//! * [`Store`] — the engine: databases ([`Db`]), their replicas ([`Replica`]) and the
//!   compaction levels ([`CompactionLevels`]), replicating until closed;
//! * [`ltx`] — the LTX file format (encoder, decoder, compactor);
//! * [`client`] — where LTX files are stored ([`ReplicaClient`], [`FileClient`], ...);
//! * [`restore`] — turning a replica back into a database;
//! * `vfs` (feature `vfs`) — reading a replica live through SQLite;
//! * `testing` (feature `testing`) — an in-memory client and a fault-injecting wrapper;
//! * `cli` (feature `cli`) — the `litestream` command.
//!
//! Restoring the latest state of a file replica:
//!
//! ```no_run
//! use litestream::restore::{restore, RestoreOptions};
//!
//! let client = litestream::client::from_url("file:///var/backups/app.db")?;
//! let report = restore(client.as_ref(), &RestoreOptions::new("/tmp/app.db"))?;
//! println!("restored to transaction {}", report.txid);
//! # Ok::<(), litestream::Error>(())
//! ```
//!
//! ## Logging and secrets
//!
//! This crate logs through [`log`] and never writes a credential, a SAS token or a URL's
//! query into a line or an error, at any level. The HTTP library underneath (`ureq`,
//! targets `ureq` and `ureq_proto`) hides request paths and headers at debug level, but
//! at **trace** level logs whole request URIs (an Azure SAS token is part of one) and
//! raw request headers (an S3 session token, a bearer token): keep those targets at
//! debug or above in production, as the `litestream` command does (it passes other
//! crates' lines at warn and above only).
#![warn(missing_docs)]
#![deny(unsafe_code)]
// A build that leaves backends out leaves some shared helpers (wire encodings, HTTP
// plumbing) without a caller; the full build (CI's clippy) still flags real dead code.
#![cfg_attr(
    not(all(
        feature = "cli",
        feature = "s3",
        feature = "gcs",
        feature = "azure",
        feature = "webdav",
        feature = "nats"
    )),
    allow(dead_code, unused_imports)
)]

pub mod client;
mod compaction;
mod db;
mod durable;
mod error;
mod logging;
pub mod ltx;
mod pool;
mod replica;
pub mod restore;
#[allow(unsafe_code)] // the SQLite C API
mod sqlite;
mod store;
#[allow(unsafe_code)] // sync_file_range(2), copy_file_range(2), inotify(7), poll(2)
mod sys;
#[cfg(feature = "testing")]
pub mod testing;
mod time;
mod timer;
mod url;
#[cfg(feature = "vfs")]
pub mod vfs;
mod wal;
mod wire;

#[cfg(feature = "cli")]
pub mod cli;

/// Entry points for the fuzz targets in `fuzz/` (compiled only with `--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz_api {
    /// Parses `data` as a WAL file and scans it from the start and from every frame
    /// boundary; must never panic.
    pub fn wal_scan(data: &[u8]) {
        use std::io::Write;
        let path = std::env::temp_dir().join(format!("litestream-fuzz-wal-{}", std::process::id()));
        let Ok(mut f) = std::fs::File::create(&path) else {
            return;
        };
        if f.write_all(data).is_err() {
            return;
        }
        let Ok(f) = std::fs::File::open(&path) else {
            return;
        };
        if let Ok(Some(h)) = crate::wal::read_header(&f) {
            let _ = crate::wal::scan(&f, &h, crate::wal::Start::beginning(&h), 0);
            let mut off = crate::wal::WAL_HEADER_SIZE + h.frame_size();
            while off <= data.len() as u64 {
                if let Ok(Some(start)) = crate::wal::seed_at(&f, &h, off) {
                    let _ = crate::wal::scan(&f, &h, start, 4096);
                }
                off += h.frame_size();
            }
        }
        let _ = std::fs::remove_file(&path);
    }

    /// Parses `data` as JSON (GCS listings, OAuth answers) and reads the fields the
    /// clients read; must never panic.
    pub fn json_parse(data: &[u8]) {
        if let Ok(s) = std::str::from_utf8(data) {
            if let Ok(v) = crate::wire::json::parse(s) {
                let items = v.get("items").and_then(crate::wire::json::Value::as_array);
                for it in items.unwrap_or_default() {
                    let _ = it.get("size").and_then(crate::wire::json::Value::as_u64);
                    let _ = it.get("name").and_then(crate::wire::json::Value::as_str);
                }
            }
        }
    }

    /// Parses `data` as NATS protocol lines, header blocks, JetStream API answers and
    /// object metadata; must never panic.
    #[cfg(feature = "nats")]
    pub fn nats_parse(data: &[u8]) {
        crate::client::nats_fuzz(data);
    }

    /// Decodes `data` as a Litestream v0.3 LZ4 object and, read as lines of object paths,
    /// lists and plans a v0.3 restore from it; must never panic.
    pub fn v3_decode(data: &[u8]) {
        crate::restore::v3::fuzz(data);
    }

    /// Reads `data` as an XML answer (S3, Azure and WebDAV listings, error documents) the
    /// way the clients do; must never panic.
    pub fn xml_parse(data: &[u8]) {
        use crate::wire::xml;
        let doc = String::from_utf8_lossy(data);
        for c in xml::elements(&doc, "Contents")
            .into_iter()
            .chain(xml::elements(&doc, "Blob"))
            .chain(xml::elements(&doc, "response"))
        {
            for name in [
                "Key",
                "Size",
                "Name",
                "Content-Length",
                "href",
                "LastModified",
            ] {
                if let Some(t) = xml::text(c, name) {
                    let _ = crate::wire::uri::decode(&t);
                }
            }
        }
        let _ = xml::escape(&xml::unescape(&doc));
    }

    /// Parses `data` as a replica URL and the paths and endpoints inside it; must never
    /// panic.
    pub fn url_parse(data: &[u8]) {
        if let Ok(s) = std::str::from_utf8(data) {
            let _ = crate::url::is_url(s);
            let _ = crate::url::clean_path(s);
            let _ = crate::url::object_prefix(s);
            let _ = crate::url::normalize_endpoint(s);
            if let Ok(u) = crate::url::ReplicaUrl::parse(s) {
                let _ = u.query("endpoint");
            }
        }
    }

    /// Parses `data` as a `litestream.yml`; must never panic.
    #[cfg(feature = "cli")]
    pub fn config_parse(data: &[u8]) {
        if let Ok(s) = std::str::from_utf8(data) {
            crate::cli::fuzz_config(s);
        }
    }
}

pub use client::{FileClient, FileInfo, ReplicaClient};
pub use compaction::{CompactionLevel, CompactionLevels};
pub use error::{Error, Result};
pub use ltx::Txid;
pub use replica::Replica;
pub use sqlite::sqlite_version;
pub use store::{
    CheckpointStats, CloseReport, Db, DbStatus, Heartbeat, ReplicaStatus, Store, StoreHandle,
    StoreMonitor, StoreStats, SyncResult, ValidationError, ValidationKind,
};
pub use store::{DEFAULT_HEARTBEAT_INTERVAL, HEARTBEAT_CHECK_INTERVAL, MIN_HEARTBEAT_INTERVAL};
pub use time::{format_rfc3339, parse_rfc3339};
pub use url::is_url;
