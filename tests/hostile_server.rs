//! Hostile servers in front of the S3, Azure, GCS and WebDAV clients: a listing that never
//! ends, an XML or JSON nesting bomb, object names with `..`, absolute paths and odd
//! bytes claiming huge sizes, a listing whose next page is itself. Each is a clear error
//! or is ignored, with bounded memory, and a restore writes nothing outside its output.

mod common;

use common::hostile_server::{start, Body};
use common::*;
use litestream::client::s3::{Credentials, S3Client, S3Config};
use litestream::restore::{restore, RestoreOptions};
use litestream::{ReplicaClient, Txid};

/// The tests here one at a time, so each measures its own peak memory.
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn client(endpoint: &str) -> S3Client {
    let mut c = S3Config::from_url(&format!(
        "s3://bkt/p?endpoint={endpoint}&forcePathStyle=true&region=us-east-1"
    ))
    .unwrap();
    c.credentials = Some(Credentials {
        access_key_id: "AK".into(),
        secret_access_key: "SK".into(),
        session_token: None,
    });
    S3Client::new(c).unwrap()
}

/// Lists level 0 through a server answering `body`; returns the result's text and checks
/// memory stayed under 64 MiB.
fn list_through(what: &str, body: Body) -> String {
    list_with(what, Backend::S3, body)
}

/// The HTTP backends, each with the content type and status of its listings.
#[derive(Clone, Copy, Debug)]
enum Backend {
    S3,
    Azure,
    Gcs,
    WebDav,
}

impl Backend {
    fn start(self, body: Body) -> Box<dyn ReplicaClient> {
        let (status, ctype) = match self {
            Backend::Gcs => (200, "application/json"),
            Backend::WebDav => (207, "application/xml"),
            _ => (200, "application/xml"),
        };
        let endpoint = start(status, ctype, body);
        match self {
            Backend::S3 => Box::new(client(&endpoint)),
            Backend::Azure => Box::new(
                litestream::client::AbsClient::new(litestream::client::AbsConfig {
                    account_name: "acct".into(),
                    account_key: "a2V5".into(),
                    sas_token: None,
                    container: "ctr".into(),
                    path: "p".into(),
                    endpoint: Some(format!("{endpoint}/acct")),
                    block_size: 4 << 20,
                    page_size: 5000,
                })
                .unwrap(),
            ),
            Backend::Gcs => {
                let mut c = litestream::client::GcsConfig::from_url(&format!(
                    "gs://bkt/p?endpoint={endpoint}"
                ))
                .unwrap();
                c.access_token = Some("t".into());
                Box::new(litestream::client::GcsClient::new(c).unwrap())
            }
            Backend::WebDav => Box::new(
                litestream::client::WebDavClient::from_url(&format!(
                    "webdav://u:p@{}/p",
                    endpoint.trim_start_matches("http://")
                ))
                .unwrap(),
            ),
        }
    }

    /// A listing of `names`, each claiming ~1 TB, in this backend's format (paths are
    /// put under the replica's level-0 folder by the caller).
    fn listing(self, names: &[String], next: Option<&str>) -> Vec<u8> {
        let esc = |n: &str| n.replace('&', "&amp;").replace('<', "&lt;");
        let mut doc = String::new();
        match self {
            Backend::S3 => unreachable!("the S3 cases build their own"),
            Backend::Azure => {
                doc.push_str("<?xml version=\"1.0\"?><EnumerationResults><Blobs>");
                for n in names {
                    doc.push_str(&format!("<Blob><Name>{}</Name><Properties><Content-Length>999999999999</Content-Length></Properties></Blob>", esc(n)));
                }
                doc.push_str(&format!(
                    "</Blobs><NextMarker>{}</NextMarker></EnumerationResults>",
                    next.unwrap_or("")
                ));
            }
            Backend::Gcs => {
                let items: Vec<String> = names
                    .iter()
                    .map(|n| format!("{{\"name\":{},\"size\":\"999999999999\"}}", json_quote(n)))
                    .collect();
                doc.push_str(&format!("{{\"items\":[{}]", items.join(",")));
                if let Some(t) = next {
                    doc.push_str(&format!(",\"nextPageToken\":\"{t}\""));
                }
                doc.push('}');
            }
            Backend::WebDav => {
                doc.push_str("<?xml version=\"1.0\"?><d:multistatus xmlns:d=\"DAV:\">");
                for n in names {
                    doc.push_str(&format!("<d:response><d:href>{}</d:href><d:propstat><d:prop><d:getcontentlength>999999999999</d:getcontentlength></d:prop></d:propstat></d:response>", esc(n)));
                }
                doc.push_str("</d:multistatus>");
            }
        }
        doc.into_bytes()
    }
}

fn json_quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if (c as u32) < 0x20 => q.push_str(&format!("\\u{:04x}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// Lists level 0 of `backend` through a server answering `body` to every request;
/// returns the result's text and checks memory stayed under 64 MiB.
fn list_with(what: &str, backend: Backend, body: Body) -> String {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    reset_peak_rss();
    let base = rss_kib();
    let c = backend.start(body);
    let r = c.ltx_files(0, Txid::ZERO, false);
    // Other tests of this process (and their servers) share the memory: what counts is
    // how far this listing raised the peak.
    let peak = peak_rss_growth_kib(base);
    assert!(peak < 64 * 1024, "{what}: peak memory grew by {peak} KiB");
    let text = match &r {
        Ok(files) => format!("ok: {files:?}"),
        Err(e) => e.to_string(),
    };
    eprintln!("FIGURE hostile server {backend:?} {what}: {text} (peak {peak} KiB)");
    text
}

#[test]
fn an_endless_listing_is_a_clear_error_in_bounded_memory() {
    let text = list_through(
        "endless listing",
        Body::Endless(b"<Contents><Key>x</Key></Contents>".repeat(100)),
    );
    assert!(text.contains("MiB"), "{text}");
}

#[test]
fn an_xml_nesting_bomb_is_harmless() {
    let mut doc = b"<?xml version=\"1.0\"?><ListBucketResult>".to_vec();
    doc.extend(b"<Contents>".repeat(200_000));
    doc.extend(b"</Contents>".repeat(200_000));
    doc.extend(b"</ListBucketResult>");
    list_through("nesting bomb", Body::Fixed(doc));
}

#[test]
fn hostile_object_names_are_ignored_and_nothing_is_written_outside() {
    let dir = TempDir::new("hostile-names");
    let names = [
        "p/0000/../../../../tmp/0000000000000001-0000000000000001.ltx",
        "/etc/0000000000000001-0000000000000001.ltx",
        "p/0000/0000000000000001-0000000000000001.ltx/../../x.ltx",
        "p/0000/\u{1}\u{7f}%00.ltx",
        "p/0000/0000000000000001-0000000000000001.ltx\u{0}",
        "../0000/0000000000000002-0000000000000002.ltx",
    ];
    let mut doc =
        String::from("<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>false</IsTruncated>");
    for n in names {
        doc.push_str(&format!(
            "<Contents><Key>{}</Key><Size>999999999999</Size><LastModified>2024-01-01T00:00:00Z</LastModified></Contents>",
            n.replace('&', "&amp;").replace('<', "&lt;")
        ));
    }
    doc.push_str("</ListBucketResult>");
    let text = list_through("hostile names", Body::Fixed(doc.clone().into_bytes()));
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let c = client(&start(
        200,
        "application/xml",
        Body::Fixed(doc.into_bytes()),
    ));
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    let r = restore(&c, &RestoreOptions::new(dir.join("out.db")));
    let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(r.is_err(), "restore of a hostile listing succeeded");
    assert_eq!(before.len(), after.len(), "restore left files behind");
    eprintln!(
        "FIGURE hostile server names: listing {text}; restore: {}",
        r.unwrap_err()
    );
}

const OTHERS: [Backend; 3] = [Backend::Azure, Backend::Gcs, Backend::WebDav];

#[test]
fn other_backends_endless_listings_are_clear_errors_in_bounded_memory() {
    for b in OTHERS {
        let chunk = match b {
            Backend::Gcs => b"{\"name\":\"p/ltx/0/x\",\"size\":\"1\"},".repeat(100),
            _ => b"<Blob><Name>x</Name></Blob><d:response></d:response>".repeat(100),
        };
        let start = match b {
            Backend::Gcs => b"{\"items\":[".to_vec(),
            _ => b"<?xml version=\"1.0\"?><EnumerationResults><Blobs>".to_vec(),
        };
        let mut body = start;
        body.extend(chunk);
        let text = list_with("endless listing", b, Body::Endless(body));
        assert!(text.contains("MiB"), "{b:?}: {text}");
    }
}

#[test]
fn other_backends_nesting_bombs_are_harmless() {
    for b in OTHERS {
        let doc = match b {
            Backend::Gcs => {
                let mut d = b"{\"items\":".to_vec();
                d.extend(b"[".repeat(200_000));
                d.extend(b"]".repeat(200_000));
                d.push(b'}');
                d
            }
            Backend::Azure => {
                let mut d = b"<?xml version=\"1.0\"?><EnumerationResults><Blobs>".to_vec();
                d.extend(b"<Blob>".repeat(200_000));
                d.extend(b"</Blob>".repeat(200_000));
                d.extend(b"</Blobs></EnumerationResults>");
                d
            }
            _ => {
                let mut d = b"<?xml version=\"1.0\"?><d:multistatus xmlns:d=\"DAV:\">".to_vec();
                d.extend(b"<d:response>".repeat(200_000));
                d.extend(b"</d:response>".repeat(200_000));
                d.extend(b"</d:multistatus>");
                d
            }
        };
        list_with("nesting bomb", b, Body::Fixed(doc));
    }
}

/// Hostile names: ignored by the listing (WebDAV: only files directly in the listed
/// folder count), or, when the name itself is a valid file name, the file read back is
/// not an LTX file: a clear error; nothing is written outside the output either way.
#[test]
fn other_backends_hostile_names_are_ignored_and_nothing_is_written_outside() {
    let file = "0000000000000001-0000000000000001.ltx";
    for b in OTHERS {
        let dir = TempDir::new("hostile-names-other");
        let level = match b {
            Backend::WebDav => "/p/ltx/0",
            _ => "p/ltx/0",
        };
        let names: Vec<String> = [
            format!("{level}/../../../../tmp/{file}"),
            format!("/etc/{file}"),
            format!("{level}/{file}/../../x.ltx"),
            format!("{level}/\u{1}\u{7f}%00.ltx"),
            format!("{level}/{file}\u{0}"),
            "../ltx/0/0000000000000002-0000000000000002.ltx".to_string(),
            format!("{level}/sub/{file}"),
        ]
        .into();
        let doc = b.listing(&names, None);
        let text = list_with("hostile names", b, Body::Fixed(doc.clone()));
        assert_eq!(text, "ok: []", "{b:?}: hostile names were listed");
        let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
        let c = b.start(Body::Fixed(doc));
        let before = std::fs::read_dir(dir.path()).unwrap().count();
        let r = restore(c.as_ref(), &RestoreOptions::new(dir.join("out.db")));
        let after = std::fs::read_dir(dir.path()).unwrap().count();
        let e = r.expect_err("restore of a hostile listing succeeded");
        assert_eq!(before, after, "{b:?}: restore left files behind");
        eprintln!("FIGURE hostile server {b:?} names: restore: {e}");
    }
}

/// A valid name claiming ~1 TB whose body is the listing itself (the server ignores
/// ranges): a clear error, soon (it once re-read the same short body forever).
#[test]
fn other_backends_a_listing_that_lies_about_sizes_is_a_clear_error() {
    for b in OTHERS {
        let dir = TempDir::new("hostile-sizes");
        let level = match b {
            Backend::WebDav => "/p/ltx/0",
            _ => "p/ltx/0",
        };
        let doc = b.listing(
            &[format!("{level}/0000000000000001-0000000000000001.ltx")],
            None,
        );
        let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
        reset_peak_rss();
        let base = rss_kib();
        let c = b.start(Body::Fixed(doc));
        let files = c.ltx_files(0, Txid::ZERO, false).unwrap();
        assert_eq!(files.len(), 1, "{b:?}: {files:?}");
        let e = restore(c.as_ref(), &RestoreOptions::new(dir.join("out.db")))
            .expect_err("restore of a lying listing succeeded");
        let peak = peak_rss_growth_kib(base);
        assert!(peak < 64 * 1024, "{b:?}: peak memory grew by {peak} KiB");
        // The server answers every range with the listing itself: either the bytes are
        // not an LTX file, or the next range finds the server ignoring ranges.
        let text = e.to_string();
        assert!(
            text.contains("corrupt") || text.contains("ignored the Range header"),
            "{b:?}: {e}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{b:?}");
        eprintln!("FIGURE hostile server {b:?} lying size: {e} (peak {peak} KiB)");
    }
}

/// Azure and GCS: a listing whose next page is the same page (the same marker or token
/// every time) ends instead of looping forever.
#[test]
fn a_listing_whose_next_page_is_itself_ends() {
    for b in [Backend::Azure, Backend::Gcs] {
        let names = vec!["p/ltx/0/0000000000000001-0000000000000001.ltx".to_string()];
        let text = list_with(
            "self-referencing pages",
            b,
            Body::Fixed(b.listing(&names, Some("again"))),
        );
        assert!(
            !text.starts_with("ok") || text.matches("FileInfo").count() <= 2,
            "{b:?}: {text}"
        );
    }
}

/// S3: a truncated page with no continuation token goes on after its last key (servers
/// with ListObjects v1 paging) and never stops at a partial listing; a server that keeps
/// answering the same page is a clear error, not a short listing taken as whole.
#[test]
fn an_s3_listing_truncated_without_a_token_is_never_taken_as_whole() {
    let page = concat!(
        r#"<?xml version="1.0"?><ListBucketResult><IsTruncated>true</IsTruncated>"#,
        r#"<Contents><Key>p/ltx/0/0000000000000001-0000000000000001.ltx</Key>"#,
        r#"<Size>100</Size><LastModified>2026-12-01T00:00:00Z</LastModified></Contents>"#,
        r#"</ListBucketResult>"#
    );
    let text = list_through("truncated, no token", Body::Fixed(page.as_bytes().to_vec()));
    assert!(
        text.contains("truncated") && !text.starts_with("ok"),
        "{text}"
    );
}
