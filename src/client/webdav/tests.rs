//! Unit tests of the module beside this file, against in-process stand-in servers.

use super::*;

#[test]
fn urls_paths_and_dates() {
    let c = WebDavConfig::from_url("webdavs://u:p@dav.example:8443/backups/db").unwrap();
    assert_eq!(c.base_url, "https://dav.example:8443");
    assert_eq!(c.path, "/backups/db");
    assert_eq!(c.username.as_deref(), Some("u"));
    assert!(!format!("{c:?}").contains("\"p\""));
    let w = WebDavClient::new(c).unwrap();
    assert_eq!(
        w.key(9, Txid(1), Txid(2)),
        "/backups/db/ltx/9/0000000000000001-0000000000000002.ltx"
    );
    assert_eq!(
        strip_prefixes("<D:multistatus xmlns:D=\"DAV:\"><D:href>/a</D:href><x/></D:multistatus>"),
        "<multistatus xmlns:D=\"DAV:\"><href>/a</href><x/></multistatus>"
    );
}

/// A listing answered `207` and cut off mid-body is retried by itself.
#[test]
fn a_listing_cut_off_mid_body_is_retried_per_request() {
    use crate::client::http::stand_in::Server;
    let listing = concat!(
        r#"<?xml version="1.0" encoding="utf-8"?><D:multistatus xmlns:D="DAV:">"#,
        r#"<D:response><D:href>/db/ltx/0/</D:href><D:propstat><D:prop>"#,
        r#"<D:resourcetype><D:collection/></D:resourcetype></D:prop></D:propstat></D:response>"#,
        r#"<D:response><D:href>/db/ltx/0/0000000000000001-0000000000000002.ltx</D:href>"#,
        r#"<D:propstat><D:prop><D:resourcetype/><D:getcontentlength>7</D:getcontentlength>"#,
        r#"</D:prop></D:propstat></D:response></D:multistatus>"#
    );
    let s = Server::cut_once("207 Multi-Status", listing);
    let files = client_at(&s).ltx_files(0, Txid::ZERO, false).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!((files[0].max_txid, files[0].size), (Txid(2), 7));
    assert_eq!(s.requests().len(), 2);
}

/// A small LTX file `1-2` in a new directory named after `tag` (the caller removes it).
fn tiny_ltx(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("lsrs-webdav-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("1-2.ltx");
    let hdr = ltx::Header {
        flags: ltx::HEADER_FLAG_NO_CHECKSUM,
        page_size: 512,
        commit: 1,
        min_txid: Txid(1),
        max_txid: Txid(2),
        timestamp: 1_700_000_000_000,
        ..ltx::Header::default()
    };
    let mut e =
        ltx::Encoder::new(File::create(&path).unwrap(), &hdr, ltx::PageEncoding::Frame).unwrap();
    e.write_page(1, &[7u8; 512]).unwrap();
    e.finish().unwrap();
    (dir, path)
}

/// A client of `/db` on `server`.
fn client_at(server: &crate::client::http::stand_in::Server) -> WebDavClient {
    WebDavClient::from_url(&format!("{}/db", server.url.replace("http", "webdav"))).unwrap()
}

/// The paths of the requests with `method` that `server` saw.
fn paths(server: &crate::client::http::stand_in::Server, method: &str) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter_map(|r| {
            r.line
                .strip_prefix(method)?
                .strip_prefix(' ')
                .map(str::to_string)
        })
        .collect()
}

/// An upload whose first PUT is refused with a 503 is sent again, whole, from the
/// file: a body streamed from a file can be re-sent.
#[test]
fn a_retried_upload_sends_the_whole_file_again() {
    use crate::client::http::stand_in::{Reply, Server};
    let (dir, path) = tiny_ltx("put");
    let size = std::fs::metadata(&path).unwrap().len() as usize;
    let puts = std::sync::atomic::AtomicUsize::new(0);
    let s = Server::start_with(Box::new(move |req| {
        if req.line.starts_with("PUT") {
            match puts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => Reply::new("503 Service Unavailable", "busy"),
                _ => Reply::new("201 Created", ""),
            }
        } else {
            Reply::new("201 Created", "")
        }
    }));
    let info = client_at(&s)
        .write_ltx_file(0, Txid(1), Txid(2), &File::open(&path).unwrap())
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(info.size as usize, size);
    let put_sizes: Vec<usize> = s
        .requests()
        .iter()
        .filter(|r| r.line.starts_with("PUT"))
        .map(|r| r.size)
        .collect();
    assert_eq!(put_sizes, [size, size]);
}

/// An upload that fails for good deletes whatever its PUT left under the temporary
/// name.
#[test]
fn a_refused_upload_removes_its_temporary_file() {
    use crate::client::http::stand_in::Server;
    let (dir, path) = tiny_ltx("refused");
    let s = Server::start(Box::new(|req| {
        if req.line.starts_with("PUT") {
            ("403 Forbidden", "<h1>no</h1>".into())
        } else {
            ("201 Created", String::new())
        }
    }));
    let e = client_at(&s)
        .write_ltx_file(0, Txid(1), Txid(2), &File::open(&path).unwrap())
        .unwrap_err();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        matches!(
            e,
            Error::Backend {
                status: Some(403),
                ..
            }
        ),
        "{e}"
    );
    let puts = paths(&s, "PUT");
    assert_eq!(puts.len(), 1);
    assert!(puts[0].ends_with(".tmp"), "{puts:?}");
    assert_eq!(paths(&s, "DELETE"), puts);
}

/// A MOVE whose answer was cut off is retried; the server then answers 404 (the file
/// was moved by the first one), and a HEAD finding the file in place makes it a
/// success.
#[test]
fn a_move_whose_answer_was_lost_succeeds_when_the_file_is_in_place() {
    use crate::client::http::stand_in::{Reply, Server};
    let (dir, path) = tiny_ltx("move");
    let moves = std::sync::atomic::AtomicUsize::new(0);
    let s = Server::start_with(Box::new(move |req| {
        if req.line.starts_with("MOVE") {
            match moves.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => Reply::new("201 Created", "<p>moved</p>").cut_after(3),
                _ => Reply::new("404 Not Found", "<h1>gone</h1>"),
            }
        } else if req.line.starts_with("HEAD") {
            Reply::new("200 OK", "")
        } else {
            Reply::new("201 Created", "")
        }
    }));
    client_at(&s)
        .write_ltx_file(0, Txid(1), Txid(2), &File::open(&path).unwrap())
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(paths(&s, "MOVE").len(), 2);
    assert_eq!(
        paths(&s, "HEAD"),
        ["/db/ltx/0/0000000000000001-0000000000000002.ltx"]
    );
    assert!(paths(&s, "DELETE").is_empty());
}
