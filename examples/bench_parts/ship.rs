//! The `ship` part: bytes a replicator sends to S3 for the first replication of an N-byte
//! database (through its first L1, L2 and L3 compactions and its first L9 snapshot), and
//! for a restart after the application checkpointed while it was down; and what stays on
//! the replica. Bytes are counted by a loopback proxy in front of the S3 server, so both
//! binaries are measured the same way.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use litestream::{ReplicaClient, Txid};

use super::{max_txid, open_db, reap, rng_bytes, term, Bench};

/// A TCP proxy to `upstream` counting the bytes clients send.
struct CountingProxy {
    port: u16,
    sent: Arc<AtomicU64>,
}

impl CountingProxy {
    fn start(upstream: String) -> CountingProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let Ok(up) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (Ok(back_to), Ok(back_from)) = (conn.try_clone(), up.try_clone()) else {
                    continue;
                };
                let counter = counter.clone();
                std::thread::spawn(move || pump(conn, up, Some(counter)));
                std::thread::spawn(move || pump(back_from, back_to, None));
            }
        });
        CountingProxy { port, sent }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` until either closes, counting into `count`.
fn pump(mut from: TcpStream, mut to: TcpStream, count: Option<Arc<AtomicU64>>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(c) = &count {
                    c.fetch_add(n as u64, Ordering::SeqCst);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// Writes `mib` MiB of 1 KiB random rows and checkpoints them into the database file.
fn fill(db: &Path, mib: u64) {
    let mut c = open_db(db);
    let mut rng = 42u64;
    for _ in 0..mib {
        let tx = c.transaction().unwrap();
        for _ in 0..1024 {
            tx.execute("INSERT INTO t(v) VALUES (?1)", [rng_bytes(&mut rng, 1024)])
                .unwrap();
        }
        tx.commit().unwrap();
    }
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
}

impl Bench {
    /// First replication and restart-after-checkpoint bytes, through a counting proxy.
    pub(super) fn ship(&mut self) {
        let Some((endpoint, bucket, _, _)) = self.s3.clone() else {
            eprintln!("  ship needs the S3 server (LITESTREAM_TEST_S3_*)");
            return;
        };
        let mib = if self.quick { 64 } else { 512 };
        let upstream = endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        for bin in self.bins.clone() {
            let d = self.dir(&format!("ship-{}", bin.name));
            let db = d.join("db.sqlite");
            fill(&db, mib);
            let size = std::fs::metadata(&db).unwrap().len() as f64;
            let path = format!("ship-{}-{}", bin.name, std::process::id());
            let Some(client) = self.s3_client(&path) else {
                return;
            };
            let proxy = CountingProxy::start(upstream.clone());
            let cfg = d.join("litestream.yml");
            std::fs::write(
                &cfg,
                format!(
                    "levels:\n  - interval: 10s\n  - interval: 20s\n  - interval: 30s\n\
                     dbs:\n  - path: {}\n    replica:\n      url: s3://{bucket}/{path}?endpoint=http://127.0.0.1:{}&forcePathStyle=true\n",
                    db.display(),
                    proxy.port
                ),
            )
            .unwrap();
            let meta = d.join(".db.sqlite-litestream/ltx/0");
            let run = |bench: &Bench, log: &str| {
                bench.spawn(
                    &bin,
                    &[
                        "replicate".into(),
                        "-config".into(),
                        cfg.display().to_string(),
                    ],
                    &d.join(log),
                )
            };
            // Every level of `levels` holds the local TXID, once it passed `after`.
            let settled = |timeout: Duration, after: u64, levels: &[u8]| {
                let t = Instant::now();
                while t.elapsed() < timeout {
                    let local = max_txid(&meta);
                    if local <= after {
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                    let holds = |level: u8| {
                        client
                            .ltx_files(level, Txid::ZERO, false)
                            .map(|v| v.iter().any(|f| f.max_txid.0 >= local))
                            .unwrap_or(false)
                    };
                    if levels.iter().all(|l| holds(*l)) {
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                false
            };
            let child = run(self, "log1");
            let ok = settled(Duration::from_secs(240), 0, &[1, 2, 3, 9]);
            let first = proxy.sent() as f64;
            let stored = replica_bytes(&client) as f64;
            term(&child);
            reap(child);
            if !ok {
                eprintln!("  {}: levels did not settle within 240 s", bin.name);
            }
            self.set(
                "ship: first replication, bytes sent ÷ database size",
                bin.name,
                first / size,
            );
            self.set(
                "ship: first replication, bytes on the replica ÷ database size",
                bin.name,
                stored / size,
            );
            // The application writes and checkpoints while the replicator is down.
            {
                let c = open_db(&db);
                let mut rng = 7u64;
                for _ in 0..100 {
                    c.execute("INSERT INTO t(v) VALUES (?1)", [rng_bytes(&mut rng, 1024)])
                        .unwrap();
                }
                c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
            }
            let before = max_txid(&meta);
            let child = run(self, "log2");
            // The L9 snapshot of this window exists already: levels 1..3.
            let ok = settled(Duration::from_secs(240), before, &[1, 2, 3]);
            let second = proxy.sent() as f64 - first;
            term(&child);
            reap(child);
            if !ok {
                eprintln!("  {}: levels did not settle after the restart", bin.name);
            }
            self.set(
                "ship: restart after a checkpoint, bytes sent ÷ database size",
                bin.name,
                second / size,
            );
            let _ = client.delete_all();
        }
    }
}

/// Bytes stored on the replica, every level.
fn replica_bytes(c: &dyn ReplicaClient) -> u64 {
    (0..=9u8)
        .flat_map(|l| c.ltx_files(l, Txid::ZERO, false).unwrap_or_default())
        .map(|f| f.size)
        .sum()
}
