//! The crate's single error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::ltx::Txid;

/// A specialised `Result` for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in litestream.
///
/// Each variant says what failed and where; the `Display` text is meant to be shown to a
/// person as is ("what failed, where, and what to do").
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error, with what was being done (`"read /data/db.sqlite-wal"`).
    Io {
        /// What was being done, including the path or object involved.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// An LTX file is malformed: bad header, bad page, bad index, or truncated.
    Corrupt {
        /// The file or object (empty when not known to the decoder).
        file: String,
        /// Byte offset in the file where the problem was found.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An LTX file's trailer checksum does not match its contents.
    ChecksumMismatch {
        /// The file or object (empty when not known to the decoder).
        file: String,
        /// The checksum stored in the trailer.
        stored: u64,
        /// The checksum computed from the contents.
        computed: u64,
    },
    /// A replica holds no snapshot to restore from (it is empty, or holds no file
    /// starting at TXID 1).
    NoSnapshots,
    /// The requested transaction (or point in time) cannot be restored from this replica.
    TxNotAvailable {
        /// The target TXID, if one was requested.
        txid: Option<Txid>,
        /// Why it is not available.
        detail: String,
    },
    /// The files of a replica do not form a contiguous chain of transactions.
    NonContiguous {
        /// The last TXID reachable.
        have: Txid,
        /// The first TXID of the next file.
        next: Txid,
        /// The file that starts after the gap.
        file: String,
    },
    /// A restore's output path already exists; restore never overwrites a database.
    OutputExists(PathBuf),
    /// SQLite returned an error.
    Sqlite {
        /// What was being done.
        context: String,
        /// SQLite's extended result code.
        code: i32,
        /// SQLite's message.
        message: String,
    },
    /// A replica backend (object store, server) answered with an error.
    Backend {
        /// Backend kind (`"s3"`, `"file"`, ...).
        backend: &'static str,
        /// The operation (`"PutObject"`, `"list"`, ...).
        op: &'static str,
        /// The bucket/key/path involved.
        target: String,
        /// HTTP status, when there is one.
        status: Option<u16>,
        /// The service's error code (`"SignatureDoesNotMatch"`), or empty.
        code: String,
        /// The service's message and any hint.
        message: String,
    },
    /// An object or file that should exist on the replica does not.
    NotFound {
        /// Backend kind.
        backend: &'static str,
        /// The missing key or path.
        target: String,
    },
    /// A replica URL could not be understood.
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An argument, option or configuration value is invalid.
    Invalid(String),
    /// The database's replica is not in a state that lets this operation proceed.
    State(String),
    /// The operation was abandoned because the component was closed or the deadline passed.
    Shutdown(String),
    /// This backend cannot do what was asked (the message names the backend and says
    /// what to use instead).
    Unsupported(String),
    /// The store has no database at this path (register it first).
    UnknownDatabase(PathBuf),
    /// The database is registered but stopped (start it first).
    DatabaseStopped(PathBuf),
}

impl Error {
    /// True if a file system was full (`ENOSPC`).
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => source.kind() == io::ErrorKind::StorageFull,
            Error::Sqlite { code, .. } => code & 0xff == 13, // SQLITE_FULL
            _ => false,
        }
    }

    /// Wraps an `io::Error` with a description of what was being done.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Builds a corruption error at an offset (file filled in later by [`Error::in_file`]).
    pub(crate) fn corrupt(offset: u64, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            file: String::new(),
            offset,
            reason: reason.into(),
        }
    }

    /// Names the file in a decoding error that does not name one yet.
    pub(crate) fn in_file(mut self, name: &str) -> Error {
        match &mut self {
            Error::Corrupt { file, .. } | Error::ChecksumMismatch { file, .. }
                if file.is_empty() =>
            {
                *file = name.to_string();
            }
            Error::Io { context, .. } if !context.contains(name) => {
                *context = format!("{context} ({name})");
            }
            _ => {}
        }
        self
    }

    /// True for errors that say the replica holds nothing restorable (no backup yet).
    pub fn is_no_backup(&self) -> bool {
        matches!(self, Error::NoSnapshots | Error::TxNotAvailable { .. })
    }

    /// True for errors a retry may fix: network trouble (no answer, or one cut off while
    /// its body was read, whatever its status line said), throttling (408, 429, S3's
    /// `SlowDown`...) and server errors (5xx). The replica clients retry exactly these
    /// (their retry policy lives in `client::retry`).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Io { source, .. } => !matches!(
                source.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::PermissionDenied
                    | io::ErrorKind::InvalidInput
                    | io::ErrorKind::InvalidData
                    | io::ErrorKind::Unsupported
            ),
            Error::Backend { status, code, .. } => match status {
                // No complete answer: the connection failed, or broke off mid-answer. A
                // refusal without a status names its code (a NATS `-ERR` at connect): final.
                None => code.is_empty(),
                // S3 can also answer 200 with an error document naming these codes.
                Some(s) => {
                    *s == 408
                        || *s == 429
                        || *s >= 500
                        || matches!(
                            code.as_str(),
                            "RequestCanceled" | "SlowDown" | "RequestTimeout" | "InternalError"
                        )
                }
            },
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { context, source } if source.kind() == io::ErrorKind::StorageFull => write!(
                f,
                "{context}: {source} (that file system is full: free space there; running replication retries by itself and loses nothing)"
            ),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Corrupt {
                file,
                offset,
                reason,
            } => {
                if file.is_empty() {
                    write!(f, "corrupt ltx file at offset {offset}: {reason}")
                } else {
                    write!(f, "corrupt ltx file {file} at offset {offset}: {reason}")
                }
            }
            Error::ChecksumMismatch {
                file,
                stored,
                computed,
            } => write!(
                f,
                "ltx file checksum mismatch{}{}: trailer says {stored:016x}, contents give {computed:016x}; the file is damaged",
                if file.is_empty() { "" } else { " in " },
                file
            ),
            Error::NoSnapshots => write!(
                f,
                "no snapshots available: the replica holds no file starting at transaction 1"
            ),
            Error::TxNotAvailable { txid, detail } => match txid {
                Some(t) => write!(f, "transaction not available: {t}: {detail}"),
                None => write!(f, "transaction not available: {detail}"),
            },
            Error::NonContiguous { have, next, file } => write!(
                f,
                "non-contiguous ltx files: have up to {have} but next file {file} starts at {next}; a file is missing from the replica"
            ),
            Error::OutputExists(p) => write!(
                f,
                "cannot restore, output path already exists: {}; remove it or choose another -o path",
                p.display()
            ),
            Error::Sqlite {
                context,
                code,
                message,
            } => write!(f, "sqlite: {context}: {message} (code {code})"),
            Error::Backend {
                backend,
                op,
                target,
                status,
                code,
                message,
            } => {
                write!(f, "{backend}: {op} {target}")?;
                if let Some(s) = status {
                    write!(f, ": HTTP {s}")?;
                }
                if !code.is_empty() {
                    write!(f, " {code}")?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            Error::NotFound { backend, target } => write!(f, "{backend}: not found: {target}"),
            Error::InvalidUrl { url, reason } => write!(
                f,
                "invalid replica url {:?}: {reason}",
                crate::url::redact_credentials(url)
            ),
            Error::Invalid(m) => write!(f, "{m}"),
            Error::State(m) => write!(f, "{m}"),
            Error::Shutdown(m) => write!(f, "{m}"),
            Error::Unsupported(m) => write!(f, "{m}"),
            Error::UnknownDatabase(p) => write!(f, "database not found: {}", p.display()),
            Error::DatabaseStopped(p) => write!(
                f,
                "database not open: {} (replication is stopped; start it first)",
                p.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
