//! How the `s3` backend talks to its server: one request signed with SigV4 (credentials
//! and region looked up once), sent to the right host and path, retried under the `retry`
//! policy and read whole, or streamed for a GET; an error answer turned into an error that
//! says what to do.

use std::fs::File;
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{credentials, sigv4, S3Client};
use crate::client::http::{self, Answer, Body};
use crate::client::retry;
use crate::durable::ReadAt;
use crate::error::{Error, Result};
use crate::wire::{base64, md5, uri, xml};

/// A request about to be signed and sent.
#[derive(Default)]
pub(super) struct Call<'a> {
    pub op: &'static str,
    pub method: &'static str,
    /// Object key, or None for the bucket itself.
    pub key: Option<&'a str>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
    /// A body streamed from a file region instead of `body`: `(file, offset, len)`.
    pub region: Option<(&'a File, u64, u64)>,
}

impl S3Client {
    pub(super) fn credentials(&self) -> Result<credentials::Resolved> {
        let mut g = self
            .creds
            .lock()
            .map_err(|_| Error::State("s3 credentials lock poisoned".into()))?;
        if let Some(r) = g.as_ref() {
            if !r.stale() {
                return Ok(r.clone());
            }
        }
        let r = credentials::resolve(self.cfg.credentials.as_ref())?;
        *g = Some(r.clone());
        Ok(r)
    }

    pub(super) fn region(&self) -> Result<String> {
        if let Some(r) = self.region.lock().ok().and_then(|g| g.clone()) {
            return Ok(r);
        }
        let region = if self.cfg.endpoint.is_some() {
            "us-east-1".to_string()
        } else {
            self.lookup_region()?
        };
        if let Ok(mut g) = self.region.lock() {
            *g = Some(region.clone());
        }
        Ok(region)
    }

    /// GetBucketLocation against us-east-1 (AWS only).
    pub(super) fn lookup_region(&self) -> Result<String> {
        if let Ok(mut g) = self.region.lock() {
            *g = Some("us-east-1".into());
        }
        let resp = self.send(&Call {
            op: "GetBucketLocation",
            method: "GET",
            query: vec![("location".into(), String::new())],
            ..Call::default()
        });
        if let Ok(mut g) = self.region.lock() {
            *g = None;
        }
        let resp = resp?;
        let body = String::from_utf8_lossy(&resp.body);
        Ok(xml::text(&body, "LocationConstraint")
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "us-east-1".into()))
    }

    /// Scheme, host (authority) and path for a request.
    pub(super) fn target(&self, key: Option<&str>, region: &str) -> (String, String, String) {
        let (scheme, authority, path_style) = match &self.cfg.endpoint {
            Some(e) => {
                let (scheme, rest) = e.split_once("://").unwrap_or(("https", e.as_str()));
                let authority = rest.split('/').next().unwrap_or(rest).to_string();
                (scheme.to_string(), authority, self.cfg.force_path_style)
            }
            None => {
                let host = if region == "us-east-1" {
                    "s3.amazonaws.com".to_string()
                } else {
                    format!("s3.{region}.amazonaws.com")
                };
                // Bucket names with dots break virtual-host TLS; use the path then.
                (
                    "https".to_string(),
                    host,
                    self.cfg.force_path_style || self.cfg.bucket.contains('.'),
                )
            }
        };
        let encoded_key = key.map(|k| uri::encode(k, true)).unwrap_or_default();
        if path_style {
            let path = match key {
                Some(_) => format!("/{}/{encoded_key}", self.cfg.bucket),
                None => format!("/{}", self.cfg.bucket),
            };
            (scheme, authority, path)
        } else {
            (
                scheme,
                format!("{}.{authority}", self.cfg.bucket),
                format!("/{encoded_key}"),
            )
        }
    }

    pub(super) fn target_name(&self, key: Option<&str>) -> String {
        match key {
            Some(k) => format!("{}/{k}", self.cfg.bucket),
            None => self.cfg.bucket.clone(),
        }
    }

    /// Signs and sends a request and reads its whole answer, retrying transient failures
    /// (the `retry` policy).
    pub(super) fn send(&self, call: &Call<'_>) -> Result<Answer> {
        retry::run(self.kind_str(), call.op, |_| self.send_once(call))
    }

    /// [`S3Client::send`] for the calls that S3 can answer with 200 and an error document
    /// (CompleteMultipartUpload, CopyObject): such an answer is a failed attempt too,
    /// retried if its code is transient.
    pub(super) fn send_doc(&self, call: &Call<'_>) -> Result<Answer> {
        retry::run(self.kind_str(), call.op, |_| {
            let r = self.send_once(call)?;
            let text = r.text();
            if xml::elements(&text, "Error").is_empty() {
                drop(text);
                return Ok(r);
            }
            Err(Error::Backend {
                backend: self.kind_str(),
                op: call.op,
                target: self.target_name(call.key),
                status: Some(r.status),
                code: xml::text(&text, "Code").unwrap_or_default(),
                message: xml::text(&text, "Message").unwrap_or_default(),
            })
        })
    }

    /// One attempt of [`S3Client::send`].
    pub(super) fn send_once(&self, call: &Call<'_>) -> Result<Answer> {
        let (resp, resolved) = self.dispatch(call)?;
        let target = self.target_name(call.key);
        let r = Answer::read(resp, self.kind_str(), call.op, &target)?;
        if r.ok() {
            return Ok(r);
        }
        Err(self.error(call.op, &target, &r, &resolved))
    }

    /// One attempt of a GetObject of `key` with `headers`: the body of a 2xx answer as a
    /// stream (not retried here: the caller retries opening, `ResumableReader` reading).
    pub(super) fn open_stream(
        &self,
        key: &str,
        headers: &[(String, String)],
        offset: u64,
    ) -> Result<Box<dyn Read + Send>> {
        let call = Call {
            op: "GetObject",
            method: "GET",
            key: Some(key),
            headers: headers.to_vec(),
            ..Call::default()
        };
        let (resp, resolved) = self.dispatch(&call)?;
        if resp.status().is_success() {
            http::check_ranged(
                resp.status().as_u16(),
                offset,
                self.kind_str(),
                call.op,
                || self.target_name(call.key),
            )?;
            return Ok(Box::new(resp.into_body().into_reader()));
        }
        let target = self.target_name(call.key);
        let answer = Answer::read(resp, self.kind_str(), call.op, &target)?;
        Err(self.error(call.op, &target, &answer, &resolved))
    }

    /// Signs `call` and sends it: the answer once its status line arrived, and the
    /// credentials that signed it (errors name their source).
    fn dispatch(
        &self,
        call: &Call<'_>,
    ) -> Result<(ureq::http::Response<ureq::Body>, credentials::Resolved)> {
        let resolved = self.credentials()?;
        let region = self.region()?;
        let (scheme, host, path) = self.target(call.key, &region);
        let mut headers = call.headers.clone();
        headers.extend(self.cfg.extra_headers.iter().cloned());
        headers.push(("host".into(), host.clone()));
        let sign = self.cfg.sign_payload || call.method == "POST";
        // A body from a file is hashed by a first pass over the same bytes: it is never
        // held in memory.
        let region_hash = match call.region {
            Some((file, offset, len)) if sign => Some(
                sigv4::sha256_hex_of(ReadAt::at(file, offset).take(len))
                    .map_err(|e| Error::io("read upload source", e))?,
            ),
            _ => None,
        };
        let payload = match &region_hash {
            Some(h) => sigv4::Payload::Hashed(h),
            None if sign => sigv4::Payload::Signed(call.body),
            None => sigv4::Payload::Unsigned,
        };
        let signed = sigv4::sign(
            &sigv4::Request {
                method: call.method,
                path: &path,
                query: &call.query,
                headers: &headers,
                payload,
            },
            &resolved.creds,
            &region,
            "s3",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        );
        let query = sigv4::canonical_query(&call.query);
        let url = if query.is_empty() {
            format!("{scheme}://{host}{path}")
        } else {
            format!("{scheme}://{host}{path}?{query}")
        };
        let all = headers
            .iter()
            .chain(signed.headers.iter())
            .filter(|(k, _)| k != "host")
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let body = match (call.method, call.region) {
            ("GET" | "HEAD" | "DELETE", _) => Body::Empty,
            (_, Some((file, offset, len))) => Body::Part { file, offset, len },
            _ => Body::Bytes(call.body),
        };
        let resp = http::exchange(&self.agent, call.method, &url, all, body).map_err(|e| {
            http::failed(
                self.kind_str(),
                call.op,
                self.target_name(call.key),
                format!("request to {scheme}://{host} failed: {e}"),
                &e,
            )
        })?;
        Ok((resp, resolved))
    }

    pub(super) fn error(
        &self,
        op: &'static str,
        target: &str,
        r: &Answer,
        creds: &credentials::Resolved,
    ) -> Error {
        let text = String::from_utf8_lossy(&r.body);
        let code = xml::text(&text, "Code").unwrap_or_default();
        let mut message = xml::text(&text, "Message").unwrap_or_default();
        if r.status == 404 && (code.is_empty() || code == "NoSuchKey") && op != "ListObjectsV2" {
            return Error::NotFound {
                backend: self.kind_str(),
                target: target.to_string(),
            };
        }
        if r.status == 403 || code == "SignatureDoesNotMatch" || code == "InvalidAccessKeyId" {
            message = format!(
                "{message}{}authentication failed with credentials from {} (access key {}); check the key, the secret and the region",
                if message.is_empty() { "" } else { "; " },
                creds.source,
                creds.creds.access_key_id
            );
        }
        if code == "NoSuchBucket" {
            message = format!(
                "{message}; the bucket {} does not exist (litestream never creates buckets)",
                self.cfg.bucket
            );
        }
        Error::Backend {
            backend: self.kind_str(),
            op,
            target: target.to_string(),
            status: Some(r.status),
            code,
            message,
        }
    }

    /// Headers for server-side encryption (`for_write` adds SSE-KMS, which reads omit).
    pub(super) fn sse_headers(&self, for_write: bool) -> Vec<(String, String)> {
        let mut h = Vec::new();
        if let Some(key) = &self.cfg.sse_customer_key {
            let raw = base64::decode(key).unwrap_or_default();
            h.push((
                "x-amz-server-side-encryption-customer-algorithm".into(),
                "AES256".into(),
            ));
            h.push((
                "x-amz-server-side-encryption-customer-key".into(),
                key.clone(),
            ));
            h.push((
                "x-amz-server-side-encryption-customer-key-md5".into(),
                base64::encode(&md5::digest(&raw)),
            ));
        }
        if for_write {
            if let Some(id) = &self.cfg.sse_kms_key_id {
                h.push(("x-amz-server-side-encryption".into(), "aws:kms".into()));
                h.push((
                    "x-amz-server-side-encryption-aws-kms-key-id".into(),
                    id.clone(),
                ));
            }
        }
        h
    }
}
