//! Hostile servers in front of the S3 client: a listing that never ends, an XML nesting
//! bomb, object names with `..`, absolute paths and odd bytes. Each is a clear error or
//! is ignored, with bounded memory, and a restore writes nothing outside its output.

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
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    reset_peak_rss();
    let c = client(&start(200, "application/xml", body));
    let r = c.ltx_files(0, Txid::ZERO, false);
    let peak = peak_rss_kib();
    assert!(peak < 64 * 1024, "{what}: peak memory {peak} KiB");
    let text = match &r {
        Ok(files) => format!("ok: {files:?}"),
        Err(e) => e.to_string(),
    };
    eprintln!("FIGURE hostile server {what}: {text} (peak {peak} KiB)");
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
