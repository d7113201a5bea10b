//! One module per `litestream` command, each with its flags, usage text and `run`.

pub(super) mod databases;
pub(super) mod ltx;
pub(super) mod replicate;
pub(super) mod reset;
pub(super) mod restore;
pub(super) mod status;
pub(super) mod version;
