//! Keys: where a replica stores the LTX file `(level, min, max)`, built by one helper
//! ([`ltx_key`]) and read back by one parser ([`parse_ltx_key`]), in the two layouts
//! Litestream v0.5 writes (byte for byte).
//!
//! Every client calls this place "the key": an object key for S3, GCS, Azure and NATS; for
//! WebDAV, SFTP and local files the key relative to the replica's directory (built with an
//! empty `path`), joined to that directory.

use std::time::SystemTime;

use super::{FileInfo, SNAPSHOT_LEVEL};
use crate::ltx::{self, Txid};
use crate::url::object_prefix;

/// How a replica lays its files out under its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `<path>/<%04x level>/<min>-<max>.ltx`: Litestream's S3 and OSS clients (the path
    /// as given).
    Hex,
    /// `<path>/ltx/<level>/<min>-<max>.ltx`, the path cleaned as Go's `path.Join` and
    /// without a leading slash: every other client (GCS through either API, Azure, NATS,
    /// WebDAV, SFTP, files).
    Ltx,
}

/// The prefix of everything a replica at `path` stores: empty, or ending in a slash.
pub(crate) fn root(path: &str, layout: Layout) -> String {
    match layout {
        Layout::Hex => format!("{path}/"),
        Layout::Ltx => object_prefix(path),
    }
}

/// The prefix of the files of `level`, ending in a slash.
pub(crate) fn level_prefix(path: &str, level: u8, layout: Layout) -> String {
    match layout {
        Layout::Hex => format!("{path}/{level:04x}/"),
        Layout::Ltx => object_prefix(&format!("{path}/ltx/{level}")),
    }
}

/// The prefix under which every level of the replica at `path` lies (`<path>/000` in the
/// hex layout: levels 0..=9 are `0000`..`0009`; `<path>/ltx/` otherwise), for one
/// listing of them all; keys under it still go through [`parse_ltx_key`].
pub(crate) fn levels_prefix(path: &str, layout: Layout) -> String {
    match layout {
        Layout::Hex => format!("{path}/000"),
        Layout::Ltx => object_prefix(&format!("{path}/ltx")),
    }
}

/// The LTX files among listed objects `(key, size, time)` of the replica at `path` whose
/// `(level, min)` `keep` accepts (levels past 9 never), sorted by (level, min, max); keys
/// that are not LTX files are skipped. Every listing client reads its answers through it.
pub(crate) fn ltx_files_among(
    path: &str,
    layout: Layout,
    objects: impl IntoIterator<Item = (String, u64, SystemTime)>,
    keep: impl Fn(u8, Txid) -> bool,
) -> Vec<FileInfo> {
    let mut out: Vec<FileInfo> = objects
        .into_iter()
        .filter_map(|(key, size, time)| {
            let (level, min, max) = parse_ltx_key(path, &key, layout)?;
            (level <= SNAPSHOT_LEVEL && keep(level, min))
                .then(|| FileInfo::new(level, min, max, size, time))
        })
        .collect();
    out.sort_by_key(|f| (f.level, f.min_txid, f.max_txid));
    out
}

/// The key of the LTX file `(level, min, max)` of the replica at `path`.
pub(crate) fn ltx_key(path: &str, level: u8, min: Txid, max: Txid, layout: Layout) -> String {
    format!(
        "{}{}",
        level_prefix(path, level, layout),
        ltx::file_name(min, max)
    )
}

/// `(level, min, max)` of `key`, if it is exactly the key [`ltx_key`] gives for them; None
/// for anything else (temporary names, other files, other replicas' keys).
pub(crate) fn parse_ltx_key(path: &str, key: &str, layout: Layout) -> Option<(u8, Txid, Txid)> {
    let mut rest = key.strip_prefix(&root(path, layout))?;
    if layout == Layout::Ltx {
        rest = rest.strip_prefix("ltx/")?;
    }
    let (level, file) = rest.split_once('/')?;
    let level = match layout {
        Layout::Hex => u8::from_str_radix(level, 16).ok()?,
        Layout::Ltx => level.parse().ok()?,
    };
    let (min, max) = ltx::parse_file_name(file)?;
    (ltx_key(path, level, min, max, layout) == key).then_some((level, min, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_byte_for_byte() {
        let (min, max) = (Txid(1), Txid(0x2a));
        assert_eq!(
            ltx_key("db", 9, min, max, Layout::Hex),
            "db/0009/0000000000000001-000000000000002a.ltx"
        );
        assert_eq!(
            ltx_key("a/db", 10, min, max, Layout::Hex),
            "a/db/000a/0000000000000001-000000000000002a.ltx"
        );
        assert_eq!(
            ltx_key("db", 9, min, max, Layout::Ltx),
            "db/ltx/9/0000000000000001-000000000000002a.ltx"
        );
        // Cleaned as Go's path.Join, no leading slash; an empty path is the root.
        assert_eq!(
            ltx_key("/a//b/", 0, min, max, Layout::Ltx),
            "a/b/ltx/0/0000000000000001-000000000000002a.ltx"
        );
        assert_eq!(
            ltx_key("", 1, min, max, Layout::Ltx),
            "ltx/1/0000000000000001-000000000000002a.ltx"
        );
        assert_eq!(root("db", Layout::Hex), "db/");
        assert_eq!(root("/db/", Layout::Ltx), "db/");
        assert_eq!(root("", Layout::Ltx), "");
        assert_eq!(level_prefix("db", 3, Layout::Ltx), "db/ltx/3/");
        assert_eq!(levels_prefix("db", Layout::Hex), "db/000");
        assert_eq!(levels_prefix("/a//b/", Layout::Ltx), "a/b/ltx/");
        assert_eq!(levels_prefix("", Layout::Ltx), "ltx/");
        for layout in [Layout::Hex, Layout::Ltx] {
            for level in 0..=9 {
                let k = ltx_key("db", level, Txid(1), Txid(2), layout);
                assert!(k.starts_with(&levels_prefix("db", layout)), "{k}");
            }
        }
    }

    #[test]
    fn keys_parse_back_and_nothing_else_does() {
        for layout in [Layout::Hex, Layout::Ltx] {
            for path in ["db", "a/b"] {
                for level in [0, 1, 9, 10] {
                    let key = ltx_key(path, level, Txid(5), Txid(7), layout);
                    assert_eq!(
                        parse_ltx_key(path, &key, layout),
                        Some((level, Txid(5), Txid(7))),
                        "{key}"
                    );
                    assert_eq!(parse_ltx_key("other", &key, layout), None, "{key}");
                }
            }
        }
        let ok = "db/ltx/0/0000000000000001-0000000000000002.ltx";
        assert!(parse_ltx_key("db", ok, Layout::Ltx).is_some());
        for bad in [
            "db/ltx/0/0000000000000001-0000000000000002.ltx.123.tmp",
            "db/ltx/00/0000000000000001-0000000000000002.ltx",
            "db/ltx/+0/0000000000000001-0000000000000002.ltx",
            "db/ltx/0/x/0000000000000001-0000000000000002.ltx",
            "db/0000/0000000000000001-0000000000000002.ltx",
            "db/ltx/256/0000000000000001-0000000000000002.ltx",
        ] {
            assert_eq!(parse_ltx_key("db", bad, Layout::Ltx), None, "{bad}");
        }
        assert_eq!(
            parse_ltx_key(
                "db",
                "db/000A/0000000000000001-0000000000000002.ltx",
                Layout::Hex
            ),
            None,
            "Litestream writes lowercase hex"
        );
    }
}
