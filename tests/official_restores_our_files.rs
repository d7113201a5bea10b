//! LTX files written by our encoder, laid out by our file client, restore with the
//! official Litestream 0.5.17: snapshots, incrementals (growth and shrink), compactions and
//! both page encodings.

mod common;

use std::fs::File;
use std::path::Path;

use common::*;
use litestream::client::FileClient;
use litestream::ltx::{self, Encoder, Header, PageEncoding, Txid};
use litestream::ReplicaClient;

fn pages_of(db: &Path) -> (u32, Vec<Vec<u8>>) {
    let data = std::fs::read(db).unwrap();
    let ps = u16::from_be_bytes([data[16], data[17]]) as u32;
    let ps = if ps == 1 { 65536 } else { ps };
    (ps, data.chunks(ps as usize).map(|c| c.to_vec()).collect())
}

fn write_ltx(
    client: &FileClient,
    dir: &TempDir,
    level: u8,
    h: Header,
    pages: &[(u32, Vec<u8>)],
    enc: PageEncoding,
) {
    let tmp = dir.join(format!("tmp-{}-{}.ltx", level, h.max_txid));
    let mut e = Encoder::new(File::create(&tmp).unwrap(), &h, enc).unwrap();
    for (p, d) in pages {
        e.write_page(*p, d).unwrap();
    }
    e.finish().unwrap();
    client
        .write_ltx_file(level, h.min_txid, h.max_txid, &File::open(&tmp).unwrap())
        .unwrap();
}

fn header(min: u64, max: u64, page_size: u32, commit: u32) -> Header {
    Header {
        flags: ltx::HEADER_FLAG_NO_CHECKSUM,
        page_size,
        commit,
        min_txid: Txid(min),
        max_txid: Txid(max),
        timestamp: 1_700_000_000_000 + max as i64 * 1000,
        wal_offset: 32,
        ..Header::default()
    }
}

#[test]
fn official_binary_restores_files_we_encode() {
    let Some(bin) = official_bin() else { return };
    for enc in [PageEncoding::Frame, PageEncoding::Block] {
        let dir = TempDir::new("ours-to-official");
        let db = dir.join("src.db");
        let replica = dir.join("replica");
        let client = FileClient::new(&replica);
        let mut conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA journal_mode=DELETE;").unwrap();
        create_schema(&conn);
        conn.execute_batch("PRAGMA journal_mode=DELETE;").unwrap();
        let mut rng = Rng::new(11);
        let mut states = Vec::new();
        let mut prev: Vec<Vec<u8>> = Vec::new();
        for txid in 1..=6u64 {
            match txid {
                1 => workload_step(&mut conn, &mut rng, 0),
                3 => big_transaction(&mut conn, &mut rng),
                5 => conn
                    .execute_batch("DELETE FROM events WHERE kind = 'bulk'; VACUUM;")
                    .unwrap(),
                _ => workload_step(&mut conn, &mut rng, txid),
            }
            let (ps, pages) = pages_of(&db);
            let commit = pages.len() as u32;
            let changed: Vec<(u32, Vec<u8>)> = pages
                .iter()
                .enumerate()
                .filter(|(i, p)| txid == 1 || prev.get(*i) != Some(*p))
                .map(|(i, p)| (i as u32 + 1, p.clone()))
                .collect();
            write_ltx(
                &client,
                &dir,
                0,
                header(txid, txid, ps, commit),
                &changed,
                enc,
            );
            states.push(dump_conn(&conn));
            prev = pages;
        }
        drop(conn);

        let url = format!("file://{}", replica.display());
        // Latest, and every intermediate TXID, through the official binary.
        for txid in 1..=6u64 {
            let out = dir.join(format!("official-{txid}.db"));
            let (ok, _, err) = run(official_cmd(&bin)
                .args([
                    "restore",
                    "-integrity-check",
                    "full",
                    "-txid",
                    &format!("{txid:016x}"),
                    "-o",
                ])
                .arg(&out)
                .arg(&url));
            assert!(
                ok,
                "official restore of our txid {txid} ({enc:?}) failed: {err}"
            );
            assert_eq!(
                dump(&out),
                states[txid as usize - 1],
                "txid {txid} ({enc:?})"
            );
        }

        // Compact L0 1..=4 into L1 and 1..=6 into an L9 snapshot with our compactor; the
        // official restore plan then uses them.
        let open = |level: u8, min: u64, max: u64| {
            let r = client
                .open_ltx_file(level, Txid(min), Txid(max), 0, None)
                .unwrap();
            (format!("{min}"), ltx::Decoder::new(r).unwrap())
        };
        for (level, lo, hi) in [(1u8, 1u64, 4u64), (9, 1, 6)] {
            let inputs = (lo..=hi).map(|t| open(0, t, t)).collect();
            let tmp = dir.join(format!("compact-{level}.ltx"));
            let (_, h) = ltx::compact(inputs, File::create(&tmp).unwrap(), enc).unwrap();
            assert_eq!((h.min_txid, h.max_txid), (Txid(lo), Txid(hi)));
            client
                .write_ltx_file(level, h.min_txid, h.max_txid, &File::open(&tmp).unwrap())
                .unwrap();
        }
        // With the snapshot present, drop L0 1..=5: the latest restore must come from L9.
        let l0 = client.ltx_files(0, Txid::ZERO, false).unwrap();
        client.delete_ltx_files(&l0[..5]).unwrap();
        let out = dir.join("official-latest.db");
        let (ok, stdout, err) = run(official_cmd(&bin)
            .args(["restore", "-dry-run", "-o"])
            .arg(&out)
            .arg(&url));
        assert!(ok, "{err}");
        assert!(
            stdout.contains("0000000000000001-0000000000000006.ltx"),
            "plan should use our L9 snapshot:\n{stdout}"
        );
        let (ok, _, err) = run(official_cmd(&bin)
            .args(["restore", "-integrity-check", "full", "-o"])
            .arg(&out)
            .arg(&url));
        assert!(ok, "official restore ({enc:?}): {err}");
        assert_eq!(dump(&out), states[5], "{enc:?}");
        // The listing the official binary prints agrees with ours (names, sizes, times).
        let (ok, stdout, err) = run(official_cmd(&bin).args(["ltx", "-level", "all"]).arg(&url));
        assert!(ok, "{err}");
        let (ok2, ours, err2) = run(std::process::Command::new(our_bin())
            .args(["ltx", "-level", "all"])
            .arg(&url));
        assert!(ok2, "{err2}");
        assert_eq!(ours, stdout, "ltx listings differ");
    }
}
