//! The `abs` backend's server-side copies (Copy Blob), waited for until they finish, and
//! undone when they do not: a pending or failed copy must never stay visible under an LTX
//! name with part of its bytes.

use std::time::{Duration, Instant};

use super::http::{Answer, Body};
use super::{retry, AbsClient, Cred};
use crate::client::FileInfo;
use crate::error::Result;

/// How long a pending copy is waited for before it is aborted and the bytes uploaded.
const COPY_WAIT: Duration = Duration::from_secs(60);

/// Copies `src` to `level` on the server; `None` when the caller must upload instead.
pub(super) fn copy_blob(c: &AbsClient, src: &FileInfo, level: u8) -> Result<Option<FileInfo>> {
    let from = c.key(src.level, src.min_txid, src.max_txid);
    let to = c.key(level, src.min_txid, src.max_txid);
    let (scheme, authority, path) = c.place(Some(&from));
    let mut source = format!("{scheme}://{authority}{path}");
    if let Cred::Sas(sas) = &c.cred {
        source = format!("{source}?{sas}");
    }
    // Copy Blob within the account (metadata, so the timestamp, goes along).
    let (mut status, id) = retry::run("abs", "CopyBlob", |_| {
        let a = answer_of(
            c,
            "CopyBlob",
            "PUT",
            &to,
            &[("x-ms-copy-source", source.clone())],
        )?;
        Ok((
            copy_status(&a),
            a.header("x-ms-copy-id").unwrap_or("").to_string(),
        ))
    })?;
    // A copy the service finishes later (large blobs, other accounts): wait for it.
    let deadline = Instant::now() + COPY_WAIT;
    let mut pause = Duration::from_millis(100);
    while status == "pending" && Instant::now() < deadline {
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(2));
        status = retry::run("abs", "GetBlobProperties", |_| {
            answer_of(c, "GetBlobProperties", "HEAD", &to, &[]).map(|a| copy_status(&a))
        })?;
    }
    if status == "success" {
        return Ok(Some(FileInfo {
            level,
            ..src.clone()
        }));
    }
    // Still pending, failed or aborted: stop it and remove what it left, then upload.
    if status == "pending" && !id.is_empty() {
        let q = [
            ("comp".to_string(), "copy".to_string()),
            ("copyid".to_string(), id),
        ];
        let _ = c.send(
            "AbortCopyBlob",
            "PUT",
            Some(&to),
            &q,
            &[("x-ms-copy-action", "abort".into())],
            Body::Bytes(&[]),
        );
    }
    c.delete_blob(&to)?;
    log::debug!("abs: copy of {from} to {to} ended {status:?}; uploading instead");
    Ok(None)
}

/// One request on blob `to` whose answer's headers matter.
fn answer_of(
    c: &AbsClient,
    op: &'static str,
    method: &'static str,
    to: &str,
    extra: &[(&str, String)],
) -> Result<Answer> {
    let resp = c.send(op, method, Some(to), &[], extra, Body::Bytes(&[]))?;
    Answer::read(resp, "abs", op, &c.target(Some(to)))
}

fn copy_status(a: &Answer) -> String {
    a.header("x-ms-copy-status").unwrap_or("").to_string()
}
