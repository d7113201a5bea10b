//! litestream: continuous replication of SQLite databases, byte-compatible with Litestream v0.5.

mod error;
pub mod ltx;

pub use error::{Error, Result};
pub use ltx::Txid;
