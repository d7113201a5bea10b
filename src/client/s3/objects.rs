//! The `s3` backend's single objects: PutObject with Litestream's metadata, listing by
//! prefix (ListObjectsV2, page after page), HeadObject for the header timestamp, and
//! DeleteObjects in batches.

use std::fs::File;
use std::time::{SystemTime, UNIX_EPOCH};

use super::request::Call;
use super::S3Client;
use crate::error::{Error, Result};
use crate::wire::{base64, md5, uri, xml};

const DELETE_BATCH: usize = 1000;

/// Formats like Go's RFC3339Nano for the timestamp metadata.
fn timestamp_meta(ms: i64) -> String {
    crate::time::format_rfc3339(crate::time::from_millis(ms))
}

impl S3Client {
    pub(super) fn put_headers(&self, timestamp_ms: i64) -> Vec<(String, String)> {
        let mut h = vec![(
            "x-amz-meta-litestream-timestamp".to_string(),
            timestamp_meta(timestamp_ms),
        )];
        h.extend(self.stored_headers());
        h
    }

    /// How a new object is stored: its storage class and server-side encryption.
    fn stored_headers(&self) -> Vec<(String, String)> {
        let mut h = Vec::new();
        if let Some(sc) = &self.cfg.storage_class {
            h.push(("x-amz-storage-class".into(), sc.clone()));
        }
        h.extend(self.sse_headers(true));
        h
    }

    /// PutObject of the whole of `src` (`size` bytes), streamed from the file.
    pub(super) fn put_object(
        &self,
        key: &str,
        src: &File,
        size: u64,
        timestamp_ms: i64,
    ) -> Result<()> {
        let r = self.send(&Call {
            op: "PutObject",
            method: "PUT",
            key: Some(key),
            headers: self.put_headers(timestamp_ms),
            region: Some((src, 0, size)),
            ..Call::default()
        })?;
        if r.header("etag").is_none() {
            return Err(Error::Backend {
                backend: self.kind_str(),
                op: "PutObject",
                target: self.target_name(Some(key)),
                status: Some(r.status),
                code: String::new(),
                message: "the response carried no ETag".into(),
            });
        }
        Ok(())
    }

    /// CopyObject of `from` to `to` in the bucket, on the server (its metadata, so the
    /// header timestamp, goes with it). Objects over 5 GiB cannot be copied in one call:
    /// false, and the caller uploads the bytes.
    pub(super) fn copy_object(&self, from: &str, to: &str, size: u64) -> Result<bool> {
        if size > 5 << 30 || self.cfg.sse_customer_key.is_some() {
            return Ok(false);
        }
        let mut headers = vec![(
            "x-amz-copy-source".to_string(),
            format!("/{}/{}", self.cfg.bucket, uri::encode(from, true)),
        )];
        headers.extend(self.stored_headers());
        self.send_doc(&Call {
            op: "CopyObject",
            method: "PUT",
            key: Some(to),
            headers,
            ..Call::default()
        })?;
        Ok(true)
    }

    /// Every key under `prefix`, with size and last-modified time.
    pub(super) fn list(
        &self,
        prefix: &str,
        mut start_after: Option<String>,
    ) -> Result<Vec<(String, u64, SystemTime)>> {
        let mut out: Vec<(String, u64, SystemTime)> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("list-type".to_string(), "2".to_string()),
                ("prefix".to_string(), prefix.to_string()),
            ];
            match &token {
                Some(t) => query.push(("continuation-token".into(), t.clone())),
                None => {
                    if let Some(s) = &start_after {
                        query.push(("start-after".into(), s.clone()));
                    }
                }
            }
            let r = self.send(&Call {
                op: "ListObjectsV2",
                method: "GET",
                query,
                ..Call::default()
            })?;
            let text = String::from_utf8_lossy(&r.body).into_owned();
            for c in xml::elements(&text, "Contents") {
                let Some(key) = xml::text(c, "Key") else {
                    continue;
                };
                let size = xml::text(c, "Size")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let modified = xml::text(c, "LastModified")
                    .and_then(|t| crate::time::parse_rfc3339(&t).ok())
                    .unwrap_or(UNIX_EPOCH);
                out.push((key, size, modified));
            }
            let truncated = xml::text(&text, "IsTruncated").is_some_and(|t| t == "true");
            token = xml::text(&text, "NextContinuationToken");
            if !truncated {
                break;
            }
            if token.is_none() {
                // A truncated page with no token (a server with ListObjects v1 paging):
                // go on after the last key, never stop at a partial listing.
                match out.last() {
                    Some((k, _, _)) if start_after.as_ref() != Some(k) => {
                        start_after = Some(k.clone())
                    }
                    _ => {
                        return Err(Error::Backend {
                            backend: self.kind_str(),
                            op: "ListObjectsV2",
                            target: self.target_name(None),
                            status: Some(r.status),
                            code: String::new(),
                            message: "the listing is truncated but gives no way to continue \
                                      (no NextContinuationToken, no new key)"
                                .into(),
                        })
                    }
                }
            }
        }
        Ok(out)
    }

    /// Reads the `litestream-timestamp` metadata of an object.
    pub(super) fn head_timestamp(&self, key: &str) -> Result<Option<SystemTime>> {
        let r = self.send(&Call {
            op: "HeadObject",
            method: "HEAD",
            key: Some(key),
            headers: self.sse_headers(false),
            ..Call::default()
        })?;
        Ok(r.header("x-amz-meta-litestream-timestamp")
            .and_then(|t| crate::time::parse_rfc3339(t).ok()))
    }

    pub(super) fn delete_keys(&self, keys: &[String]) -> Result<()> {
        for batch in keys.chunks(DELETE_BATCH) {
            let mut doc = String::from("<Delete><Quiet>true</Quiet>");
            for k in batch {
                doc.push_str(&format!("<Object><Key>{}</Key></Object>", xml::escape(k)));
            }
            doc.push_str("</Delete>");
            let mut headers = Vec::new();
            if self.cfg.require_content_md5 {
                headers.push((
                    "content-md5".to_string(),
                    base64::encode(&md5::digest(doc.as_bytes())),
                ));
            }
            let r = self.send(&Call {
                op: "DeleteObjects",
                method: "POST",
                query: vec![("delete".into(), String::new())],
                headers,
                body: doc.as_bytes(),
                ..Call::default()
            })?;
            let text = String::from_utf8_lossy(&r.body);
            let errors: Vec<String> = xml::elements(&text, "Error")
                .iter()
                .filter(|e| xml::text(e, "Code").as_deref() != Some("NoSuchKey"))
                .map(|e| {
                    format!(
                        "{}: {}",
                        xml::text(e, "Key").unwrap_or_default(),
                        xml::text(e, "Message").unwrap_or_default()
                    )
                })
                .collect();
            if !errors.is_empty() {
                return Err(Error::Backend {
                    backend: self.kind_str(),
                    op: "DeleteObjects",
                    target: self.cfg.bucket.clone(),
                    status: Some(r.status),
                    code: "DeleteFailed".into(),
                    message: errors.join("; "),
                });
            }
        }
        Ok(())
    }
}
