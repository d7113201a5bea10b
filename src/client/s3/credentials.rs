//! Where S3 credentials come from, in order: explicit (config or URL), `AWS_*` environment
//! variables, `LITESTREAM_*` environment variables, the shared credentials file, ECS
//! container credentials, EC2 instance metadata (IMDSv2, unless
//! `AWS_EC2_METADATA_DISABLED=true`). The source is remembered so an authentication
//! failure can say which one was used (never the secret).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::sigv4::Credentials;
use crate::error::{Error, Result};
use crate::wire::json::{self, Value};

/// Credentials and where they came from.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub creds: Credentials,
    pub source: String,
    /// When temporary credentials expire.
    pub expires: Option<SystemTime>,
}

impl Resolved {
    /// True when the credentials expire within five minutes.
    pub(crate) fn stale(&self) -> bool {
        self.expires
            .is_some_and(|e| e <= SystemTime::now() + Duration::from_secs(300))
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Credentials from one pair of environment variables.
fn from_env(id: &str, secret: &str, token: &str) -> Option<Resolved> {
    Some(Resolved {
        creds: Credentials {
            access_key_id: env(id)?,
            secret_access_key: env(secret)?,
            session_token: env(token),
        },
        source: format!("environment variables {id}/{secret}"),
        expires: None,
    })
}

/// Parses an AWS shared credentials file for `profile`.
pub(crate) fn parse_shared_file(text: &str, profile: &str) -> Option<Credentials> {
    let mut in_profile = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            let name = line[1..line.len() - 1].trim();
            let name = name.strip_prefix("profile ").unwrap_or(name).trim();
            in_profile = name == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(Credentials {
        access_key_id: id?,
        secret_access_key: secret?,
        session_token: token,
    })
}

fn from_shared_file() -> Option<Resolved> {
    let path = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")))?;
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let text = std::fs::read_to_string(&path).ok()?;
    parse_shared_file(&text, &profile).map(|creds| Resolved {
        creds,
        source: format!(
            "shared credentials file {} (profile {profile})",
            path.display()
        ),
        expires: None,
    })
}

fn parse_credential_json(doc: &str, source: String) -> Option<Resolved> {
    let doc = json::parse(doc).ok()?;
    let json_string = |doc: &Value, name: &str| doc.get(name)?.as_str().map(str::to_string);
    Some(Resolved {
        creds: Credentials {
            access_key_id: json_string(&doc, "AccessKeyId")?,
            secret_access_key: json_string(&doc, "SecretAccessKey")?,
            session_token: json_string(&doc, "Token"),
        },
        expires: json_string(&doc, "Expiration").and_then(|e| crate::time::parse_rfc3339(&e).ok()),
        source,
    })
}

fn metadata_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(1)))
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

fn get_text(agent: &ureq::Agent, url: &str, headers: &[(&str, String)]) -> Option<String> {
    let mut req = agent.get(url);
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let mut resp = req.call().ok()?;
    if resp.status().as_u16() != 200 {
        return None;
    }
    resp.body_mut().read_to_string().ok()
}

fn from_ecs() -> Option<Resolved> {
    let url = match (
        env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        env("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
    ) {
        (Some(rel), _) => format!("http://169.254.170.2{rel}"),
        (None, Some(full)) => full,
        _ => return None,
    };
    let token = env("AWS_CONTAINER_AUTHORIZATION_TOKEN").or_else(|| {
        env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_string())
    });
    let headers: Vec<(&str, String)> = token.into_iter().map(|t| ("Authorization", t)).collect();
    let doc = get_text(&metadata_agent(), &url, &headers)?;
    parse_credential_json(&doc, format!("ECS container credentials ({url})"))
}

fn from_imds() -> Option<Resolved> {
    if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    let base =
        env("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| "http://169.254.169.254".into());
    let base = base.trim_end_matches('/');
    let agent = metadata_agent();
    let mut resp = agent
        .put(format!("{base}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "21600")
        .send_empty()
        .ok()?;
    if resp.status().as_u16() != 200 {
        return None;
    }
    let token = resp.body_mut().read_to_string().ok()?;
    let h = [("X-aws-ec2-metadata-token", token)];
    let role = get_text(
        &agent,
        &format!("{base}/latest/meta-data/iam/security-credentials/"),
        &h,
    )?;
    let role = role.lines().next()?.trim().to_string();
    let doc = get_text(
        &agent,
        &format!("{base}/latest/meta-data/iam/security-credentials/{role}"),
        &h,
    )?;
    parse_credential_json(&doc, format!("EC2 instance metadata (role {role})"))
}

/// Resolves credentials: `explicit` first, then the chain.
pub(crate) fn resolve(explicit: Option<&Credentials>) -> Result<Resolved> {
    if let Some(c) = explicit {
        return Ok(Resolved {
            creds: c.clone(),
            source: "configured access key".into(),
            expires: None,
        });
    }
    from_env("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
        .or_else(|| from_env("LITESTREAM_ACCESS_KEY_ID", "LITESTREAM_SECRET_ACCESS_KEY", "LITESTREAM_SESSION_TOKEN"))
        .or_else(from_shared_file)
        .or_else(from_ecs)
        .or_else(from_imds)
        .ok_or_else(|| {
            Error::Invalid(
                "s3: no credentials found: set access-key-id/secret-access-key, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or LITESTREAM_ACCESS_KEY_ID/LITESTREAM_SECRET_ACCESS_KEY, or provide ~/.aws/credentials, ECS or EC2 instance credentials".into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_file_profiles() {
        let text = "# c\n[default]\naws_access_key_id = AK1\naws_secret_access_key=SK1\n\n[profile other]\naws_access_key_id=AK2\naws_secret_access_key=SK2\naws_session_token=T2\n";
        let d = parse_shared_file(text, "default").unwrap();
        assert_eq!(
            (
                d.access_key_id.as_str(),
                d.secret_access_key.as_str(),
                d.session_token
            ),
            ("AK1", "SK1", None)
        );
        let o = parse_shared_file(text, "other").unwrap();
        assert_eq!(o.session_token.as_deref(), Some("T2"));
        assert!(parse_shared_file(text, "missing").is_none());
    }

    #[test]
    fn credential_json() {
        let doc = r#"{"Code":"Success","AccessKeyId" : "ASIA1","SecretAccessKey":"s\/k","Token":"t\u0041","Expiration":"2026-11-24T12:00:00Z"}"#;
        let r = parse_credential_json(doc, "x".into()).unwrap();
        assert_eq!(r.creds.access_key_id, "ASIA1");
        assert_eq!(r.creds.secret_access_key, "s/k");
        assert_eq!(r.creds.session_token.as_deref(), Some("tA"));
        assert!(r.expires.is_some());
        assert!(parse_credential_json("{\"AccessKeyId\": 1}", "x".into()).is_none());
    }
}
