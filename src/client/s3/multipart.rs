//! The `s3` backend's multipart uploads (files of at least `part_size`), leaving no upload
//! behind: parts sent by several threads, then one CompleteMultipartUpload, so the object
//! appears whole or not at all; an upload that fails for good is aborted, and so are
//! uploads whose CreateMultipartUpload answer was lost.

use std::fs::File;

use super::request::Call;
use super::{parallel, S3Client};
use crate::client::retry;
use crate::error::{Error, Result};
use crate::wire::xml;

/// A multipart upload in progress: started, neither completed nor aborted. S3 keeps its
/// parts (and bills them) until one or the other happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultipartUpload {
    /// The object key it will create.
    pub key: String,
    /// The id S3 gave it.
    pub upload_id: String,
}

impl S3Client {
    /// Uploads `src` as `key` in parts. An upload that fails for good is aborted; so is
    /// any upload of `key` that an attempt of CreateMultipartUpload started but whose
    /// answer (and so its UploadId) was lost, found with ListMultipartUploads (only this
    /// client writes its keys). No part is left behind either way, as far as the server
    /// answers.
    pub(super) fn multipart(
        &self,
        key: &str,
        src: &File,
        size: u64,
        timestamp_ms: i64,
    ) -> Result<()> {
        let create = Call {
            op: "CreateMultipartUpload",
            method: "POST",
            key: Some(key),
            query: vec![("uploads".into(), String::new())],
            headers: self.put_headers(timestamp_ms),
            ..Call::default()
        };
        let mut create_attempts = 0;
        // Set when an upload of ours may exist that this call will not have aborted.
        let mut leftover = false;
        let created = retry::run(self.kind_str(), create.op, |n| {
            create_attempts = n;
            self.send_once(&create)
        });
        let result = created.and_then(|created| {
            let text = created.text();
            let Some(upload_id) = xml::text(&text, "UploadId") else {
                leftover = true;
                return Err(Error::Backend {
                    backend: self.kind_str(),
                    op: "CreateMultipartUpload",
                    target: self.target_name(Some(key)),
                    status: Some(created.status),
                    code: String::new(),
                    message: "no UploadId in the response".into(),
                });
            };
            let result = self
                .upload_parts(key, &upload_id, src, size)
                .and_then(|etags| self.complete(key, &upload_id, &etags));
            if result.is_err() {
                if let Err(e) = self.abort_multipart_upload(key, &upload_id) {
                    log::warn!(
                        "{}: could not abort the failed upload {upload_id} of {key}: {e}",
                        self.kind_str()
                    );
                    leftover = true;
                }
            }
            result
        });
        // A retried CreateMultipartUpload may have started uploads whose ids were lost
        // with their answers (a first attempt refused outright started none); ours is
        // still there if its id could not be read or its abort failed.
        if create_attempts > 1 || leftover {
            self.abort_leftovers(key);
        }
        result
    }

    /// CompleteMultipartUpload with the parts' ETags in order. S3 can answer 200 with an
    /// error document: that is a failed attempt too (retried if its code is transient).
    fn complete(&self, key: &str, upload_id: &str, etags: &[String]) -> Result<()> {
        let mut doc = String::from("<CompleteMultipartUpload>");
        for (i, etag) in etags.iter().enumerate() {
            doc.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                i + 1,
                xml::escape(etag)
            ));
        }
        doc.push_str("</CompleteMultipartUpload>");
        let call = Call {
            op: "CompleteMultipartUpload",
            method: "POST",
            key: Some(key),
            query: vec![("uploadId".into(), upload_id.to_string())],
            body: doc.as_bytes(),
            ..Call::default()
        };
        self.send_doc(&call).map(|_| ())
    }

    /// Aborts every upload in progress for exactly `key` (best effort: failures are
    /// logged; a server without ListMultipartUploads leaves them to its lifecycle rules).
    fn abort_leftovers(&self, key: &str) {
        let uploads = match self.multipart_uploads(key) {
            Ok(u) => u,
            Err(e) => {
                log::warn!(
                    "{}: could not list the multipart uploads of {key} to abort leftovers: {e}",
                    self.kind_str()
                );
                return;
            }
        };
        for u in uploads.iter().filter(|u| u.key == key) {
            log::debug!(
                "{}: aborting leftover upload {} of {key}",
                self.kind_str(),
                u.upload_id
            );
            if let Err(e) = self.abort_multipart_upload(&u.key, &u.upload_id) {
                log::warn!(
                    "{}: could not abort the leftover upload {} of {key}: {e}",
                    self.kind_str(),
                    u.upload_id
                );
            }
        }
    }

    /// The multipart uploads in progress whose keys start with `prefix`
    /// (ListMultipartUploads, page after page). For tooling and tests: this client aborts
    /// its own failed uploads.
    pub fn multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUpload>> {
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = vec![
                ("prefix".to_string(), prefix.to_string()),
                ("uploads".to_string(), String::new()),
            ];
            if let Some((k, u)) = &markers {
                query.push(("key-marker".into(), k.clone()));
                query.push(("upload-id-marker".into(), u.clone()));
            }
            let r = self.send(&Call {
                op: "ListMultipartUploads",
                method: "GET",
                query,
                ..Call::default()
            })?;
            let (page, next) = parse_uploads(&r.text());
            out.extend(page);
            match next {
                Some(m) if markers.as_ref() != Some(&m) => markers = Some(m),
                _ => return Ok(out),
            }
        }
    }

    /// Aborts one multipart upload (AbortMultipartUpload); one already gone is not an
    /// error.
    pub fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        match self.send(&Call {
            op: "AbortMultipartUpload",
            method: "DELETE",
            key: Some(key),
            query: vec![("uploadId".into(), upload_id.to_string())],
            ..Call::default()
        }) {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
            Err(Error::Backend { code, .. }) if code == "NoSuchUpload" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Uploads the parts with up to `concurrency` threads; returns the ETags in order.
    pub(super) fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        src: &File,
        size: u64,
    ) -> Result<Vec<String>> {
        let part = part_size_for(self.cfg.part_size, size);
        let n = size.div_ceil(part) as usize;
        parallel(n, self.cfg.concurrency, |i| {
            let off = i as u64 * part;
            let len = part.min(size - off);
            let mut headers = Vec::new();
            if self.cfg.sse_customer_key.is_some() {
                headers = self.sse_headers(false);
            }
            let r = self.send(&Call {
                op: "UploadPart",
                method: "PUT",
                key: Some(key),
                query: vec![
                    ("partNumber".into(), (i + 1).to_string()),
                    ("uploadId".into(), upload_id.to_string()),
                ],
                headers,
                region: Some((src, off, len)),
                ..Call::default()
            })?;
            match r.header("etag") {
                Some(etag) => Ok(etag.to_string()),
                None => Err(Error::Backend {
                    backend: self.kind_str(),
                    op: "UploadPart",
                    target: self.target_name(Some(key)),
                    status: Some(r.status),
                    code: String::new(),
                    message: format!("part {} came back with no ETag", i + 1),
                }),
            }
        })
    }
}

/// S3 allows at most this many parts in one upload.
const MAX_PARTS: u64 = 10_000;

/// The configured part size, or larger when a file of `size` bytes would otherwise need
/// more than [`MAX_PARTS`] parts (over 48.8 GiB at the default 5 MiB).
fn part_size_for(configured: u64, size: u64) -> u64 {
    configured.max(1).max(size.div_ceil(MAX_PARTS))
}

/// A ListMultipartUploads page: its uploads and, when truncated, the next key and upload
/// id markers.
fn parse_uploads(text: &str) -> (Vec<MultipartUpload>, Option<(String, String)>) {
    let uploads = xml::elements(text, "Upload")
        .iter()
        .filter_map(|u| {
            Some(MultipartUpload {
                key: xml::text(u, "Key")?,
                upload_id: xml::text(u, "UploadId")?,
            })
        })
        .collect();
    let truncated = xml::text(text, "IsTruncated").is_some_and(|t| t == "true");
    let next = match (
        xml::text(text, "NextKeyMarker"),
        xml::text(text, "NextUploadIdMarker"),
    ) {
        (Some(k), Some(u)) if truncated && !k.is_empty() => Some((k, u)),
        _ => None,
    };
    (uploads, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_never_exceed_ten_thousand() {
        let mib = 1u64 << 20;
        assert_eq!(part_size_for(5 * mib, 4 * mib), 5 * mib);
        assert_eq!(part_size_for(5 * mib, 10_000 * 5 * mib), 5 * mib);
        for size in [10_000 * 5 * mib + 1, 100 << 30, 5u64 << 40] {
            let part = part_size_for(5 * mib, size);
            assert!(size.div_ceil(part) <= MAX_PARTS, "{size}: {part}");
        }
        assert_eq!(part_size_for(0, 10), 1);
    }

    /// A page as SeaweedFS answers it (captured from the test server), and AWS's
    /// documented truncated page.
    #[test]
    fn upload_listings_parse() {
        let seaweed = concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#,
            r#"<Bucket>lsbkt</Bucket><Delimiter></Delimiter><EncodingType></EncodingType>"#,
            r#"<IsTruncated>false</IsTruncated><KeyMarker></KeyMarker><MaxUploads>10000</MaxUploads>"#,
            r#"<Prefix>probe-mpu/k1.ltx</Prefix><Upload><Initiated>2026-12-02T17:38:54Z</Initiated>"#,
            r#"<Key>probe-mpu/k1.ltx</Key><UploadId>bcf9af6d_da1940b2</UploadId></Upload>"#,
            r#"</ListMultipartUploadsResult>"#
        );
        let (uploads, next) = parse_uploads(seaweed);
        assert_eq!(
            uploads,
            [MultipartUpload {
                key: "probe-mpu/k1.ltx".into(),
                upload_id: "bcf9af6d_da1940b2".into()
            }]
        );
        assert_eq!(next, None);
        let aws = concat!(
            "<ListMultipartUploadsResult><Bucket>b</Bucket><KeyMarker></KeyMarker>",
            "<NextKeyMarker>my-movie.m2ts</NextKeyMarker>",
            "<NextUploadIdMarker>YW55IGlkZWEgd2h5</NextUploadIdMarker>",
            "<MaxUploads>3</MaxUploads><IsTruncated>true</IsTruncated>",
            "<Upload><Key>my-divisor</Key><UploadId>XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw</UploadId></Upload>",
            "<Upload><Key>my-movie.m2ts</Key><UploadId>VXBsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId></Upload>",
            "</ListMultipartUploadsResult>"
        );
        let (uploads, next) = parse_uploads(aws);
        assert_eq!(uploads.len(), 2);
        assert_eq!(uploads[1].key, "my-movie.m2ts");
        assert_eq!(
            next,
            Some(("my-movie.m2ts".into(), "YW55IGlkZWEgd2h5".into()))
        );
    }
}
