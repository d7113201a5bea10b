//! The S3 test server (SeaweedFS on 127.0.0.1) as the tests reach it: its URL, a client
//! config with the test credentials, a client, and the official binary with those
//! credentials.

use std::path::Path;
use std::process::Command;

use litestream::client::s3::{Credentials, S3Client, S3Config};

use super::{official_cmd, peer_env};

/// The S3 server from the peers' environment.
pub struct S3Env {
    pub endpoint: String,
    pub bucket: String,
    pub ak: String,
    pub sk: String,
}

/// The S3 server, or None outside CI when it is not configured (in CI a missing server
/// fails in `peer_env`).
pub fn s3_env() -> Option<S3Env> {
    Some(S3Env {
        endpoint: peer_env("LITESTREAM_TEST_S3_ENDPOINT")?,
        bucket: peer_env("LITESTREAM_TEST_S3_BUCKET")?,
        ak: peer_env("LITESTREAM_TEST_S3_ACCESS_KEY")?,
        sk: peer_env("LITESTREAM_TEST_S3_SECRET_KEY")?,
    })
}

impl S3Env {
    /// The replica URL of `path` in the test bucket.
    pub fn url(&self, path: &str) -> String {
        self.url_at(path, &self.endpoint)
    }

    /// The replica URL of `path`, reaching the server at `endpoint` (e.g. a proxy).
    pub fn url_at(&self, path: &str, endpoint: &str) -> String {
        format!(
            "s3://{}/{path}?endpoint={endpoint}&forcePathStyle=true&region=us-east-1",
            self.bucket
        )
    }

    /// A client config of `path` with the test credentials.
    pub fn config(&self, path: &str) -> S3Config {
        self.config_at(path, &self.endpoint)
    }

    /// [`S3Env::config`] reaching the server at `endpoint`.
    pub fn config_at(&self, path: &str, endpoint: &str) -> S3Config {
        let mut c = S3Config::from_url(&self.url_at(path, endpoint)).unwrap();
        c.credentials = Some(Credentials {
            access_key_id: self.ak.clone(),
            secret_access_key: self.sk.clone(),
            session_token: None,
        });
        c
    }

    /// A client of `path`, with the bucket created.
    pub fn client(&self, path: &str) -> S3Client {
        let c = S3Client::new(self.config(path)).unwrap();
        c.create_bucket().unwrap();
        c
    }

    /// The official binary with the test credentials (and no AWS ones from the
    /// environment).
    pub fn official(&self, bin: &Path) -> Command {
        let mut c = official_cmd(bin);
        c.env("LITESTREAM_ACCESS_KEY_ID", &self.ak)
            .env("LITESTREAM_SECRET_ACCESS_KEY", &self.sk)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
        c
    }
}
