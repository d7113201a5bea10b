//! One module per `litestream` command, each with its flags, usage text and `run`;
//! `daemon` is what the commands that talk to a running daemon share.

pub(super) mod daemon;
pub(super) mod databases;
pub(super) mod info;
pub(super) mod list;
pub(super) mod ltx;
pub(super) mod register;
pub(super) mod replicate;
pub(super) mod reset;
pub(super) mod restore;
pub(super) mod start;
pub(super) mod status;
pub(super) mod stop;
pub(super) mod sync;
pub(super) mod unregister;
pub(super) mod version;
