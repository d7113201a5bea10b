//! S3 client configuration: from a replica URL (`s3://`, `oss://`, `gs://`) with
//! Litestream's query parameters, host heuristics and provider quirks.

use super::sigv4::Credentials;
use crate::error::{Error, Result};
use crate::url::{clean_path, ReplicaUrl};

/// Which service and key layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Amazon S3 and S3-compatible stores: keys `<path>/<%04x level>/<file>`.
    S3,
    /// Alibaba OSS through its S3-compatible API: same keys as S3.
    Oss,
    /// Google Cloud Storage through its XML API with HMAC keys: keys
    /// `<path>/ltx/<level>/<file>`.
    Gcs,
}

impl Flavor {
    /// Backend name used in messages and `ReplicaClient::kind`.
    pub fn kind(self) -> &'static str {
        match self {
            Flavor::S3 => "s3",
            Flavor::Oss => "oss",
            Flavor::Gcs => "gs",
        }
    }
}

/// Everything the S3 client needs. Built from a URL with [`S3Config::from_url`], or by
/// hand; every field has Litestream's default.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// Service flavor and key layout.
    pub flavor: Flavor,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix, exactly as Litestream derives it (no trailing slash).
    pub path: String,
    /// Region; `None` means us-east-1 with a custom endpoint, else looked up.
    pub region: Option<String>,
    /// Endpoint base URL (`http://127.0.0.1:9000`); `None` means AWS.
    pub endpoint: Option<String>,
    /// Address the bucket in the path instead of the host name.
    pub force_path_style: bool,
    /// Skip TLS certificate verification (for self-signed test servers only).
    pub skip_verify: bool,
    /// Sign the payload's SHA-256 (default) instead of `UNSIGNED-PAYLOAD`.
    pub sign_payload: bool,
    /// Send `Content-MD5` on DeleteObjects (default; Tigris rejects it).
    pub require_content_md5: bool,
    /// Multipart part size; files at least this big use multipart upload (5 MiB).
    pub part_size: u64,
    /// Parts uploaded at once (5).
    pub concurrency: usize,
    /// `x-amz-storage-class` for uploads.
    pub storage_class: Option<String>,
    /// SSE-C: base64 of a 32-byte key.
    pub sse_customer_key: Option<String>,
    /// SSE-KMS key ID.
    pub sse_kms_key_id: Option<String>,
    /// Explicit credentials (else the credential chain).
    pub credentials: Option<Credentials>,
    /// Extra headers sent on every request (e.g. Tigris consistency).
    pub extra_headers: Vec<(String, String)>,
}

impl S3Config {
    /// A configuration for `bucket`/`path` with Litestream's defaults.
    pub fn new(bucket: impl Into<String>, path: impl Into<String>) -> S3Config {
        S3Config {
            flavor: Flavor::S3,
            bucket: bucket.into(),
            path: path.into(),
            region: None,
            endpoint: None,
            force_path_style: false,
            skip_verify: false,
            sign_payload: true,
            require_content_md5: true,
            part_size: 5 << 20,
            concurrency: 5,
            storage_class: None,
            sse_customer_key: None,
            sse_kms_key_id: None,
            credentials: None,
            extra_headers: Vec::new(),
        }
    }

    /// Parses `s3://`, `oss://` or `gs://` URLs with Litestream's query parameters.
    pub fn from_url(url: &str) -> Result<S3Config> {
        Self::from_parsed(url, ReplicaUrl::parse(url)?)
    }

    /// [`S3Config::from_url`] for a URL already parsed (the client factory parses it once).
    pub(crate) fn from_parsed(url: &str, u: ReplicaUrl) -> Result<S3Config> {
        let bad = |reason: String| Error::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        let flavor = match u.scheme.as_str() {
            "s3" => Flavor::S3,
            "oss" => Flavor::Oss,
            "gs" => Flavor::Gcs,
            s => return Err(bad(format!("not an S3 URL scheme: {s}"))),
        };
        if u.host.is_empty() {
            return Err(bad("bucket required".into()));
        }
        // Go: strings.TrimPrefix(path.Clean(u.Path), "/"), so "" becomes ".".
        let path = clean_path(&u.path);
        let path = path.strip_prefix('/').unwrap_or(&path).to_string();
        let host = match u.port {
            Some(p) => format!("{}:{p}", u.host),
            None => u.host.clone(),
        };
        let mut c = S3Config::new(host.clone(), path);
        c.flavor = flavor;
        match flavor {
            Flavor::S3 => {
                let (bucket, region, endpoint, path_style) = parse_host(&host);
                if let Some(b) = bucket {
                    c.bucket = b;
                }
                c.region = region;
                c.endpoint = endpoint;
                c.force_path_style = path_style;
            }
            Flavor::Oss => {
                // bucket.oss-<region>[-internal].aliyuncs.com
                if let Some((bucket, rest)) = host.split_once('.') {
                    if let Some(r) = rest
                        .strip_suffix(".aliyuncs.com")
                        .and_then(|r| r.strip_prefix("oss-"))
                    {
                        c.bucket = bucket.to_string();
                        c.region = Some(r.trim_end_matches("-internal").to_string());
                        c.endpoint = Some(format!("https://{rest}"));
                    }
                }
                let region = c.region.clone().unwrap_or_else(|| "cn-hangzhou".into());
                if c.endpoint.is_none() {
                    c.endpoint = Some(format!("https://oss-{region}.aliyuncs.com"));
                }
                c.region = Some(region);
            }
            Flavor::Gcs => {
                c.endpoint = Some("https://storage.googleapis.com".into());
                c.region = Some("auto".into());
            }
        }
        let get = |names: &[&str]| -> Option<String> {
            names
                .iter()
                .find_map(|n| u.query.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
        };
        let boolean =
            |v: &str| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "t" | "yes");
        if let Some(e) = get(&["endpoint"]) {
            c.endpoint = Some(crate::url::normalize_endpoint(&e));
            c.force_path_style = true;
        } else if c.endpoint.is_none() {
            if let Ok(e) = std::env::var("LITESTREAM_S3_ENDPOINT") {
                if !e.is_empty() {
                    c.endpoint = Some(crate::url::normalize_endpoint(&e));
                    c.force_path_style = true;
                }
            }
        }
        if let Some(r) = get(&["region"]) {
            c.region = Some(r);
        }
        if let Some(v) = get(&["forcePathStyle", "force-path-style"]) {
            c.force_path_style = boolean(&v);
        }
        if let Some(v) = get(&["skipVerify", "skip-verify"]) {
            c.skip_verify = boolean(&v);
        }
        if let Some(v) = get(&["signPayload", "sign-payload"]) {
            c.sign_payload = boolean(&v);
        }
        if let Some(v) = get(&["requireContentMD5", "require-content-md5"]) {
            c.require_content_md5 = boolean(&v);
        }
        if let Some(v) = get(&["concurrency"]) {
            c.concurrency = v
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(format!("invalid concurrency {v:?}")))?;
        }
        if let Some(v) = get(&["partSize", "part-size"]) {
            c.part_size = crate::wire::parse_size(&v)
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(format!("invalid part size {v:?}")))?;
        }
        c.storage_class = get(&["storageClass", "storage-class"]);
        c.sse_customer_key = get(&["sseCustomerKey", "sse-customer-key"]);
        c.sse_kms_key_id = get(&["sseKmsKeyId", "sse-kms-key-id"]);
        if c.sse_customer_key.is_some() && c.sse_kms_key_id.is_some() {
            return Err(bad("SSE-C and SSE-KMS cannot be used together".into()));
        }
        if let (Some(id), Some(secret)) = (&u.username, &u.password) {
            c.credentials = Some(Credentials {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                session_token: None,
            });
        }
        c.apply_provider_defaults();
        Ok(c)
    }

    /// Applies Litestream's provider table from the endpoint host.
    pub fn apply_provider_defaults(&mut self) {
        let Some(e) = &self.endpoint else { return };
        let host = e
            .split("://")
            .nth(1)
            .unwrap_or(e)
            .split('/')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let name = host.split(':').next().unwrap_or("").to_string();
        if name.ends_with(".r2.cloudflarestorage.com") {
            self.concurrency = self.concurrency.min(2);
        } else if name.ends_with(".backblazeb2.com")
            || name == "s3.filebase.com"
            || name.ends_with(".supabase.co")
        {
            self.force_path_style = true;
        } else if name == "fly.storage.tigris.dev" || name == "t3.storage.dev" {
            self.require_content_md5 = false;
            self.extra_headers
                .push(("x-tigris-consistent".into(), "true".into()));
        }
    }
}

/// Litestream's `s3.ParseHost`: (bucket, region, endpoint, force path style).
fn parse_host(host: &str) -> (Option<String>, Option<String>, Option<String>, bool) {
    let lower = host.to_ascii_lowercase();
    if host.contains(':') && !lower.contains(".com") {
        return match host.split_once('.') {
            Some((bucket, rest)) => (
                Some(bucket.into()),
                Some("us-east-1".into()),
                Some(format!("http://{rest}")),
                true,
            ),
            None => (None, None, Some(format!("http://{host}")), true),
        };
    }
    let labels: Vec<&str> = lower.split('.').collect();
    let n = labels.len();
    if n >= 3 && lower.ends_with(".digitaloceanspaces.com") {
        let region = labels[n - 3].to_string();
        let bucket = (n >= 4).then(|| host.split('.').take(n - 3).collect::<Vec<_>>().join("."));
        return (
            bucket,
            Some(region.clone()),
            Some(format!("https://{region}.digitaloceanspaces.com")),
            false,
        );
    }
    if n >= 4 && lower.ends_with(".backblazeb2.com") && labels[n - 4] == "s3" {
        let region = labels[n - 3].to_string();
        let bucket = (n >= 5).then(|| host.split('.').take(n - 4).collect::<Vec<_>>().join("."));
        return (
            bucket,
            Some(region.clone()),
            Some(format!("https://s3.{region}.backblazeb2.com")),
            true,
        );
    }
    if lower.ends_with(".s3.filebase.com") {
        let bucket = host[..host.len() - ".s3.filebase.com".len()].to_string();
        return (
            Some(bucket),
            None,
            Some("https://s3.filebase.com".into()),
            true,
        );
    }
    if n >= 4 && lower.ends_with(".scw.cloud") && labels[n - 4] == "s3" {
        let region = labels[n - 3].to_string();
        let bucket = (n >= 5).then(|| host.split('.').take(n - 4).collect::<Vec<_>>().join("."));
        return (
            bucket,
            Some(region.clone()),
            Some(format!("https://s3.{region}.scw.cloud")),
            false,
        );
    }
    if lower.ends_with(".amazonaws.com") {
        // bucket.s3.amazonaws.com, bucket.s3.<region>.amazonaws.com, bucket.s3-<region>.amazonaws.com
        if let Some(i) = lower.find(".s3.").or_else(|| lower.find(".s3-")) {
            let bucket = host[..i].to_string();
            let rest = &lower[i + 4..lower.len() - ".amazonaws.com".len()];
            let region = rest.trim_start_matches('.').to_string();
            let region = (!region.is_empty() && region != "amazonaws").then_some(region);
            return (Some(bucket), region, None, false);
        }
    }
    (None, None, None, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = S3Config::from_url("s3://lsbkt/app/db?endpoint=http://127.0.0.1:28333&forcePathStyle=true&region=us-west-2").unwrap();
        assert_eq!((c.bucket.as_str(), c.path.as_str()), ("lsbkt", "app/db"));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:28333"));
        assert_eq!(c.region.as_deref(), Some("us-west-2"));
        assert!(c.force_path_style && c.sign_payload && c.require_content_md5);
        let c = S3Config::from_url("s3://bkt").unwrap();
        assert_eq!(c.path, ".");
        let c = S3Config::from_url("s3://bkt/").unwrap();
        assert_eq!(c.path, "");
        let c = S3Config::from_url("s3://mybkt.localhost:9000/x").unwrap();
        assert_eq!(
            (c.bucket.as_str(), c.endpoint.as_deref(), c.force_path_style),
            ("mybkt", Some("http://localhost:9000"), true)
        );
        let c = S3Config::from_url("s3://mybkt.s3.eu-west-1.amazonaws.com/x").unwrap();
        assert_eq!(
            (
                c.bucket.as_str(),
                c.region.as_deref(),
                c.endpoint.as_deref()
            ),
            ("mybkt", Some("eu-west-1"), None)
        );
        let c = S3Config::from_url("s3://mybkt.nyc3.digitaloceanspaces.com/x").unwrap();
        assert_eq!(
            (c.bucket.as_str(), c.endpoint.as_deref()),
            ("mybkt", Some("https://nyc3.digitaloceanspaces.com"))
        );
        let c = S3Config::from_url("s3://mybkt.s3.us-west-004.backblazeb2.com/x").unwrap();
        assert_eq!((c.bucket.as_str(), c.force_path_style), ("mybkt", true));
        let c = S3Config::from_url("s3://b/p?endpoint=fly.storage.tigris.dev").unwrap();
        assert_eq!(
            c.endpoint.as_deref(),
            Some("https://fly.storage.tigris.dev")
        );
        assert!(!c.require_content_md5);
        let c = S3Config::from_url(
            "s3://b/p?endpoint=abc.r2.cloudflarestorage.com&partSize=10MiB&concurrency=4",
        )
        .unwrap();
        assert_eq!((c.concurrency, c.part_size), (2, 10 << 20));
        assert!(S3Config::from_url("s3://b/p?concurrency=0").is_err());
        let o = S3Config::from_url("oss://bkt.oss-cn-beijing.aliyuncs.com/db").unwrap();
        assert_eq!(
            (
                o.bucket.as_str(),
                o.region.as_deref(),
                o.endpoint.as_deref()
            ),
            (
                "bkt",
                Some("cn-beijing"),
                Some("https://oss-cn-beijing.aliyuncs.com")
            )
        );
        let g = S3Config::from_url("gs://bkt/db").unwrap();
        assert_eq!(
            (g.flavor, g.endpoint.as_deref()),
            (Flavor::Gcs, Some("https://storage.googleapis.com"))
        );
        assert_eq!(
            crate::url::normalize_endpoint("10.0.0.5:9000"),
            "http://10.0.0.5:9000"
        );
        assert_eq!(
            crate::url::normalize_endpoint("minio:9000"),
            "http://minio:9000"
        );
        assert_eq!(crate::wire::parse_size("64KB"), Some(64_000));
        assert_eq!(crate::wire::parse_size("x"), None);
    }
}
