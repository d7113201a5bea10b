//! Unit tests of the module beside this file, against in-process stand-in servers.

use super::*;

#[test]
fn urls() {
    let c = AbsConfig::from_url(
        "abs://acct@ctr/some/db/?endpoint=http%3A%2F%2F127.0.0.1%3A20000%2Facct%2F",
    )
    .unwrap();
    assert_eq!(c.account_name, "acct");
    assert_eq!(c.container, "ctr");
    assert_eq!(c.path, "some/db");
    assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:20000/acct"));
    assert_eq!((c.block_size, c.page_size), (4 << 20, 5000));
    let c = AbsConfig::from_url("abs://acct@ctr").unwrap();
    assert_eq!((c.path.as_str(), c.endpoint.as_deref()), ("", None));
    for bad in ["abs:///path", "s3://bkt/path"] {
        assert!(AbsConfig::from_url(bad).is_err(), "{bad}");
    }
    // A client needs a key or a SAS; the default endpoint is the account's.
    let mut c = AbsConfig::from_url("abs://acct@ctr/db").unwrap();
    c.account_key = "not base64!".into();
    assert!(AbsClient::new(c.clone()).is_err());
    // Neither key nor SAS: Entra ID tokens (chosen now, fetched at the first request).
    c.account_key = String::new();
    c.sas_token = None;
    assert!(matches!(
        AbsClient::new(c.clone()).unwrap().cred,
        Cred::Entra(_)
    ));
    c.sas_token = Some("?sv=2021-08-06&sig=x".into());
    let client = AbsClient::new(c).unwrap();
    assert_eq!(client.base, "https://acct.blob.core.windows.net");
    assert!(matches!(&client.cred, Cred::Sas(s) if s == "sv=2021-08-06&sig=x"));
    assert_eq!(
        client.key(3, Txid(1), Txid(2)),
        "db/ltx/3/0000000000000001-0000000000000002.ltx"
    );
}

/// Without key or SAS, requests carry the Entra ID token as a bearer; a refusal
/// names the identity and the role it needs.
#[test]
fn entra_id_bearer_on_blob_requests() {
    use crate::client::http::stand_in::Server;
    let s = Server::start(Box::new(|req| {
        if req.line.starts_with("GET /imds") {
            (
                "200 OK",
                r#"{"access_token":"tok-1","expires_in":"3600"}"#.into(),
            )
        } else if req.line.contains("prefix=denied") {
            (
                "403 Forbidden",
                "<?xml version=\"1.0\"?><Error><Code>AuthorizationPermissionMismatch</Code><Message>This request is not authorized.</Message></Error>".into(),
            )
        } else {
            (
                "200 OK",
                "<?xml version=\"1.0\"?><EnumerationResults><Blobs></Blobs><NextMarker/></EnumerationResults>".into(),
            )
        }
    }));
    let cfg = |path: &str| AbsConfig {
        account_name: "acct".into(),
        container: "ctr".into(),
        path: path.into(),
        endpoint: Some(format!("{}/acct", s.url)),
        ..AbsConfig::default()
    };
    let with_tokens = |c: AbsConfig| {
        let mut client = AbsClient::new(AbsConfig {
            sas_token: Some("sv=x".into()),
            ..c
        })
        .unwrap();
        client.cred = Cred::Entra(
            super::entra::Tokens::new(super::entra::Source::Imds {
                url: format!("{}/imds", s.url),
                client_id: None,
            })
            .unwrap(),
        );
        client
    };
    let client = with_tokens(cfg("db"));
    assert!(client.ltx_files(0, Txid::ZERO, false).unwrap().is_empty());
    assert!(client.ltx_files(1, Txid::ZERO, false).unwrap().is_empty());
    let blob_auth: Vec<String> = s
        .requests()
        .iter()
        .filter(|r| r.line.contains("/acct/ctr"))
        .map(|r| r.headers.get("authorization").cloned().unwrap_or_default())
        .collect();
    assert_eq!(blob_auth, ["Bearer tok-1", "Bearer tok-1"]);
    let e = with_tokens(cfg("denied"))
        .ltx_files(0, Txid::ZERO, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("managed identity") && e.contains("Storage Blob Data Contributor"),
        "{e}"
    );
}

/// A listing answered `200 OK` and cut off mid-body is retried by itself.
#[test]
fn a_listing_cut_off_mid_body_is_retried_per_request() {
    use crate::client::http::stand_in::Server;
    let listing = concat!(
        r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults><Blobs>"#,
        r#"<Blob><Name>db/ltx/0/0000000000000001-0000000000000002.ltx</Name><Properties>"#,
        r#"<Content-Length>7</Content-Length></Properties></Blob>"#,
        r#"</Blobs><NextMarker/></EnumerationResults>"#
    );
    let s = Server::cut_once("200 OK", listing);
    let client = AbsClient::new(AbsConfig {
        account_name: "acct".into(),
        sas_token: Some("sv=x".into()),
        container: "ctr".into(),
        path: "db".into(),
        endpoint: Some(format!("{}/acct", s.url)),
        ..AbsConfig::default()
    })
    .unwrap();
    let files = client.ltx_files(0, Txid::ZERO, false).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!((files[0].max_txid, files[0].size), (Txid(2), 7));
    assert_eq!(s.requests().len(), 2);
}

/// A page as Azure (and Azurite) sends it: the metadata timestamp when there is one,
/// else the creation time; names unescaped; the next marker.
#[test]
fn list_page_parses() {
    let doc = concat!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#,
        r#"<EnumerationResults ServiceEndpoint="http://127.0.0.1:20000/devstoreaccount1" ContainerName="c">"#,
        r#"<Prefix>db/ltx/0/</Prefix><MaxResults>2</MaxResults><Blobs>"#,
        r#"<Blob><Name>db/ltx/0/0000000000000001-0000000000000002.ltx</Name><Properties>"#,
        r#"<Creation-Time>Tue, 24 Nov 2026 21:43:33 GMT</Creation-Time><Content-Length>3476</Content-Length>"#,
        r#"<BlobType>BlockBlob</BlobType></Properties>"#,
        r#"<Metadata><litestreamtimestamp>2026-11-24T21:43:35.05Z</litestreamtimestamp></Metadata></Blob>"#,
        r#"<Blob><Name>a&amp;b/ltx/0/x.ltx</Name><Properties>"#,
        r#"<Creation-Time>Tue, 24 Nov 2026 21:43:33 GMT</Creation-Time><Content-Length>7</Content-Length>"#,
        r#"</Properties><Metadata/></Blob>"#,
        r#"</Blobs><NextMarker>2!88!MDAw</NextMarker></EnumerationResults>"#
    );
    let (blobs, next) = parse_list(doc);
    assert_eq!(next.as_deref(), Some("2!88!MDAw"));
    assert_eq!(blobs.len(), 2);
    assert_eq!(blobs[0].0, "db/ltx/0/0000000000000001-0000000000000002.ltx");
    assert_eq!(blobs[0].1, 3476);
    assert_eq!(
        blobs[0].2,
        crate::time::parse_rfc3339("2026-11-24T21:43:35.05Z").unwrap()
    );
    assert_eq!(blobs[1].0, "a&b/ltx/0/x.ltx");
    assert_eq!(
        blobs[1].2,
        crate::time::parse_rfc3339("2026-11-24T21:43:33Z").unwrap()
    );
    let (none, next) = parse_list("<EnumerationResults><Blobs/><NextMarker/></EnumerationResults>");
    assert!(none.is_empty() && next.is_none());
}
