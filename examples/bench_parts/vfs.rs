//! Part `vfs`: our loadable extension against the official `litestream-vfs` 0.5.17, each
//! loaded into Debian's python3 (`bench_parts/vfs_harness.py`) on an S3 replica that our
//! binary writes, every request counted by a proxy in the harness: open cost, a cold and
//! a warm primary-key lookup, freshness of an open connection, LIST requests of 10 idle
//! connections, RSS with 10 connections.

use super::*;

/// The official extension's `.so` in `.cache/peers/vfs-venv` (`.ci/peers.sh install vfs`).
fn official_so(root: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LSRS_BENCH_OFFICIAL_VFS_SO") {
        return Some(PathBuf::from(p));
    }
    let lib = root.join(".cache/peers/vfs-venv/lib");
    std::fs::read_dir(lib).ok()?.flatten().find_map(|e| {
        let so = e
            .path()
            .join("site-packages/litestream_vfs/litestream-vfs.so");
        so.exists().then_some(so)
    })
}

/// The largest TXID among the L0 file names in `dir`.
fn max_l0(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    litestream::ltx::parse_file_name(&n).map(|(_, max)| max.0)
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// A number from the harness's flat JSON report.
fn field(json: &str, key: &str) -> f64 {
    json.split(&format!("\"{key}\": "))
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

impl Bench {
    pub(super) fn vfs(&mut self) {
        use std::io::{BufRead, BufReader, Write};
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let Some((ep, bucket, ak, sk)) = self.s3.clone() else {
            eprintln!("vfs: needs the S3 peer (source .cache/peers/env)");
            return;
        };
        let ours = std::env::var_os("LSRS_BENCH_VFS_SO")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target/release/liblitestream_vfs.so"));
        let Some(theirs) = official_so(root) else {
            eprintln!("vfs: the official extension is missing: .ci/peers.sh install vfs");
            return;
        };
        assert!(
            ours.exists(),
            "build it first: cargo build --release -p litestream-vfs"
        );
        let Some(replicator) = self.bins.iter().find(|b| b.name == "ours").cloned() else {
            return;
        };
        let rows = if self.quick { 5_000 } else { 50_000 };
        let idle = if self.quick { 10 } else { 60 };
        let rounds = if self.quick { 3 } else { 7 };
        for (who, so) in [("ours", ours.clone()), ("official", theirs.clone())] {
            let d = self.dir(&format!("vfs-{who}"));
            let db = d.join("db.sqlite");
            let mut c = open_db(&db);
            let mut st = 0x2545_f491_4f6c_dd1du64;
            for chunk in 0..rows / 100 {
                let tx = c.transaction().unwrap();
                for i in 0..100 {
                    tx.execute(
                        "INSERT INTO t(id, v) VALUES (?1, ?2)",
                        rusqlite::params![(chunk * 100 + i + 1) as i64, rng_bytes(&mut st, 1024)],
                    )
                    .unwrap();
                }
                tx.commit().unwrap();
            }
            let path = format!("bench-vfs-{}-{who}", std::process::id());
            let url = format!("s3://{bucket}/{path}?endpoint={ep}&forcePathStyle=true");
            let child = self.spawn(
                &replicator,
                &["replicate".into(), db.display().to_string(), url],
                &d.join("log"),
            );
            let client = self.s3_client(&path).expect("s3 client");
            let l0 = d.join(".db.sqlite-litestream/ltx/0");
            let replicated = |client: &litestream::client::s3::S3Client| {
                use litestream::ReplicaClient;
                let local = max_l0(&l0);
                local > 0
                    && client
                        .ltx_files(0, litestream::Txid::ZERO, false)
                        .ok()
                        .and_then(|f| f.last().map(|f| f.max_txid.0))
                        .is_some_and(|m| m >= local)
            };
            let t0 = Instant::now();
            while !replicated(&client) {
                assert!(
                    t0.elapsed() < Duration::from_secs(120),
                    "vfs: replica never caught up"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap();
            let mut h = Command::new("/usr/bin/python3")
                .arg(root.join("examples/bench_parts/vfs_harness.py"))
                .arg(&so)
                .arg(ep.trim_start_matches("http://"))
                .arg(port.to_string())
                .env(
                    "LITESTREAM_REPLICA_URL",
                    format!(
                        "s3://{bucket}/{path}?endpoint=http://127.0.0.1:{port}&forcePathStyle=true&region=us-east-1"
                    ),
                )
                .env("AWS_ACCESS_KEY_ID", &ak)
                .env("AWS_SECRET_ACCESS_KEY", &sk)
                .env("AWS_REGION", "us-east-1")
                .env_remove("AWS_CA_BUNDLE")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut to = h.stdin.take().unwrap();
            let mut from = BufReader::new(h.stdout.take().unwrap());
            let mut line = String::new();
            from.read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "ready", "vfs harness ({who})");
            let mut fresh = Vec::new();
            for r in 0..rounds {
                std::thread::sleep(Duration::from_millis(1500));
                let id = (rows + r + 1) as i64;
                c.execute(
                    "INSERT INTO t(id, v) VALUES (?1, ?2)",
                    rusqlite::params![id, rng_bytes(&mut st, 1024)],
                )
                .unwrap();
                let t = Instant::now();
                writeln!(to, "wait {id}").unwrap();
                line.clear();
                from.read_line(&mut line).unwrap();
                assert_eq!(line.trim(), "seen", "vfs harness ({who})");
                fresh.push(t.elapsed().as_secs_f64());
            }
            writeln!(to, "idle {idle}").unwrap();
            line.clear();
            from.read_line(&mut line).unwrap();
            drop(to);
            let _ = h.wait();
            term(&child);
            let _ = reap(child);
            let json = line.trim().to_string();
            eprintln!("  {who}: {json}");
            self.set(
                "vfs S3: freshness, commit → seen by an open connection, median s",
                who,
                percentile(&mut fresh, 0.5),
            );
            self.set(
                "vfs S3: open (connect + first query), s",
                who,
                field(&json, "open_seconds"),
            );
            self.set(
                "vfs S3: open, LIST requests",
                who,
                field(&json, "open_lists"),
            );
            self.set("vfs S3: open, GET requests", who, field(&json, "open_gets"));
            self.set(
                "vfs S3: cold primary-key lookup after open, GETs",
                who,
                field(&json, "cold_lookup_gets"),
            );
            self.set(
                "vfs S3: warm lookup, nothing changed, requests",
                who,
                field(&json, "warm_lookup_requests"),
            );
            self.set(
                &format!("vfs S3: 10 idle connections for {idle} s, LIST requests"),
                who,
                field(&json, "idle_lists_10_conns"),
            );
            self.set(
                "vfs S3: RSS of the process with 10 connections, MiB",
                who,
                field(&json, "rss_mib_10_conns"),
            );
        }
    }
}
