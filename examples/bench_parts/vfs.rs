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
        use std::io::{BufRead, Write};
        let Some((ours, theirs, replicator)) = self.vfs_setup() else {
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
            let url = self.s3_url(&path).unwrap_or_default();
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
            let (mut h, mut to, mut from) = self.harness(&so, &path, None);
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

impl Bench {
    /// Our extension, the official one and our replicator; None (said why) when missing.
    fn vfs_setup(&self) -> Option<(PathBuf, PathBuf, Bin)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        if self.s3.is_none() {
            eprintln!("vfs: needs the S3 peer (source .cache/peers/env)");
            return None;
        }
        let ours = std::env::var_os("LSRS_BENCH_VFS_SO")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target/release/liblitestream_vfs.so"));
        let Some(theirs) = official_so(root) else {
            eprintln!("vfs: the official extension is missing: .ci/peers.sh install vfs");
            return None;
        };
        assert!(
            ours.exists(),
            "build it first: cargo build --release -p litestream-vfs"
        );
        let replicator = self.bins.iter().find(|b| b.name == "ours").cloned()?;
        Some((ours, theirs, replicator))
    }

    /// Starts the harness (`vfs_harness.py`) with extension `so` on the replica at `path`
    /// of the S3 peer, its requests through its counting proxy; `id`: the row of its
    /// cold and warm lookups.
    fn harness(
        &self,
        so: &Path,
        path: &str,
        id: Option<u64>,
    ) -> (
        Child,
        std::process::ChildStdin,
        std::io::BufReader<std::process::ChildStdout>,
    ) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let (ep, bucket, ak, sk) = self.s3.clone().expect("the S3 peer");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(root.join("examples/bench_parts/vfs_harness.py"))
            .arg(so)
            .arg(ep.trim_start_matches("http://"))
            .arg(port.to_string());
        if let Some(id) = id {
            cmd.arg(id.to_string());
        }
        let mut h = cmd
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
        let to = h.stdin.take().unwrap();
        let from = std::io::BufReader::new(h.stdout.take().unwrap());
        (h, to, from)
    }

    /// Part `vfs1g`: the 1 GiB side by side (LSRS_BENCH_VFS_MIB sets the size). A
    /// database of 1 KiB rows written directly (no replicator running), then replicated
    /// by our binary to S3 until level 9 holds its snapshot; each extension then opens it,
    /// makes a cold and a warm primary-key lookup, and 10 connections make
    /// `LSRS_BENCH_VFS_LOOKUPS` (300) random primary-key lookups each; RSS after them.
    /// Our reader's page map is measured in this process.
    pub(super) fn vfs1g(&mut self) {
        use std::io::{BufRead, Write};
        let Some((ours, theirs, replicator)) = self.vfs_setup() else {
            return;
        };
        let mib: u64 = std::env::var("LSRS_BENCH_VFS_MIB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if self.quick { 128 } else { 1024 });
        let lookups: u64 = std::env::var("LSRS_BENCH_VFS_LOOKUPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300);
        // Three 1 KiB rows fill a 4 KiB page.
        let rows = mib * 1024 * 1024 / 1366;
        let d = self.dir("vfs1g");
        let db = d.join("db.sqlite");
        let t = Instant::now();
        {
            let mut c = rusqlite::Connection::open(&db).unwrap();
            c.execute_batch(
                "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-65536;
                 CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);",
            )
            .unwrap();
            let mut st = 0x2545_f491_4f6c_dd1du64;
            let mut id = 0u64;
            while id < rows {
                let tx = c.transaction().unwrap();
                {
                    let mut ins = tx.prepare("INSERT INTO t(id, v) VALUES (?1, ?2)").unwrap();
                    for _ in 0..50_000.min(rows - id) {
                        id += 1;
                        ins.execute(rusqlite::params![id as i64, rng_bytes(&mut st, 1024)])
                            .unwrap();
                    }
                }
                tx.commit().unwrap();
            }
            c.execute_batch("PRAGMA journal_mode=WAL;").unwrap();
        }
        let db_bytes = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "  vfs1g: {rows} rows, {:.0} MiB written in {:.1} s",
            db_bytes as f64 / 1048576.0,
            t.elapsed().as_secs_f64()
        );
        let path = format!("bench-vfs1g-{}", std::process::id());
        eprintln!(
            "  vfs1g: replica s3://{}/{path}",
            self.s3.as_ref().map_or("", |s| &s.1)
        );
        let url = self.s3_url(&path).unwrap_or_default();
        let t = Instant::now();
        let child = self.spawn(
            &replicator,
            &["replicate".into(), db.display().to_string(), url],
            &d.join("log"),
        );
        let client = self.s3_client(&path).expect("s3 client");
        let snapshot = || {
            use litestream::ReplicaClient;
            client
                .ltx_files(
                    litestream::client::SNAPSHOT_LEVEL,
                    litestream::Txid::ZERO,
                    false,
                )
                .ok()
                .is_some_and(|f| !f.is_empty())
        };
        while !snapshot() {
            assert!(
                t.elapsed() < Duration::from_secs(300),
                "vfs1g: no level-9 snapshot after 5 minutes"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        eprintln!(
            "  vfs1g: level 9 holds the snapshot after {:.1} s",
            t.elapsed().as_secs_f64()
        );
        term(&child);
        let _ = reap(child);

        // Our page map, in this process: bytes per page.
        {
            use litestream::vfs::{ReaderOptions, ReplicaReader};
            let c: std::sync::Arc<dyn litestream::ReplicaClient> =
                std::sync::Arc::new(self.s3_client(&path).expect("s3 client"));
            let r = ReplicaReader::open(c, ReaderOptions::default()).unwrap();
            let (_, map) = r.memory();
            let pages = db_bytes / 4096;
            eprintln!("  vfs1g: open {:?}", r.stats());
            self.set(
                "vfs S3 1 GiB: page index, bytes per page",
                "ours",
                map as f64 / pages.max(1) as f64,
            );
        }

        let probe = rows / 2 + 7;
        for (who, so) in [("ours", ours), ("official", theirs)] {
            let (mut h, mut to, mut from) = self.harness(&so, &path, Some(probe));
            let mut line = String::new();
            from.read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "ready", "vfs harness ({who})");
            writeln!(to, "lookups {lookups} {rows}").unwrap();
            line.clear();
            from.read_line(&mut line).unwrap();
            drop(to);
            let _ = h.wait();
            let json = line.trim().to_string();
            eprintln!("  {who}: {json}");
            let rows_out = [
                ("open (connect + first query), s", "open_seconds"),
                ("open, LIST requests", "open_lists"),
                ("open, GET requests", "open_gets"),
                (
                    "cold primary-key lookup after open, GETs",
                    "cold_lookup_gets",
                ),
                (
                    "cold primary-key lookup after open, s",
                    "cold_lookup_seconds",
                ),
                (
                    "warm lookup, nothing changed, requests",
                    "warm_lookup_requests",
                ),
                ("10 connections x lookups: s", "lookups_seconds"),
                ("10 connections x lookups: GET requests", "lookups_gets"),
                ("10 connections x lookups: MiB read", "lookups_bytes"),
                (
                    "RSS of the process with 10 connections, MiB",
                    "rss_mib_10_conns",
                ),
            ];
            for (label, key) in rows_out {
                let mut v = field(&json, key);
                if key.ends_with("_bytes") {
                    v /= 1048576.0;
                }
                self.set(&format!("vfs S3 1 GiB: {label}"), who, v);
            }
        }
    }
}
