//! A plain-HTTP Prometheus endpoint (`addr:` in the config) on std's `TcpListener`, with
//! Litestream's metric names where they apply.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::StoreMonitor;

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text for the store's current state.
pub(crate) fn render(monitor: &StoreMonitor) -> String {
    let mut out = String::new();
    let status = monitor.status();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    };
    let per_db = |f: &dyn Fn(&crate::DbStatus) -> f64| -> Vec<(String, f64)> {
        status
            .iter()
            .map(|d| {
                (
                    format!("db=\"{}\"", label(&d.path.display().to_string())),
                    f(d),
                )
            })
            .collect()
    };
    family(
        "litestream_db_size",
        "gauge",
        "The current size of the real DB",
        per_db(&|d| d.db_size as f64),
    );
    family(
        "litestream_wal_size",
        "gauge",
        "The current size of the real WAL",
        per_db(&|d| d.wal_size as f64),
    );
    family(
        "litestream_txid",
        "gauge",
        "The current transaction ID",
        per_db(&|d| d.local_txid.0 as f64),
    );
    family(
        "litestream_sync_count",
        "counter",
        "Number of sync operations performed",
        per_db(&|d| d.sync_count as f64),
    );
    family(
        "litestream_sync_error_count",
        "counter",
        "Number of sync errors that have occurred",
        per_db(&|d| d.sync_errors as f64),
    );
    family(
        "litestream_sync_seconds",
        "counter",
        "Time spent syncing shadow WAL, in seconds",
        per_db(&|d| d.sync_seconds),
    );
    family(
        "litestream_total_wal_bytes",
        "counter",
        "Total number of bytes written to shadow WAL",
        per_db(&|d| d.wal_bytes as f64),
    );
    family(
        "litestream_disk_full",
        "gauge",
        "Whether replication is paused because the local disk is full",
        per_db(&|d| if d.disk_full { 1.0 } else { 0.0 }),
    );
    family(
        "litestream_compaction_verify_error_count",
        "counter",
        "Number of post-compaction verification failures",
        per_db(&|_| 0.0),
    );
    let per_mode = |f: &dyn Fn(&crate::CheckpointStats) -> f64| -> Vec<(String, f64)> {
        let mut rows = Vec::new();
        for d in &status {
            for mode in ["PASSIVE", "TRUNCATE"] {
                let c = d
                    .checkpoints
                    .iter()
                    .find(|c| c.mode == mode)
                    .cloned()
                    .unwrap_or_default();
                rows.push((
                    format!(
                        "db=\"{}\",mode=\"{mode}\"",
                        label(&d.path.display().to_string())
                    ),
                    f(&c),
                ));
            }
        }
        rows
    };
    family(
        "litestream_checkpoint_count",
        "counter",
        "Number of checkpoint operations performed",
        per_mode(&|c| c.count as f64),
    );
    family(
        "litestream_checkpoint_error_count",
        "counter",
        "Number of checkpoint errors that have occurred",
        per_mode(&|c| c.errors as f64),
    );
    family(
        "litestream_checkpoint_seconds",
        "counter",
        "Time spent checkpointing WAL, in seconds",
        per_mode(&|c| c.seconds),
    );
    let mut l0 = Vec::new();
    for d in &status {
        for (i, st) in ["eligible", "not_compacted", "too_recent"]
            .iter()
            .enumerate()
        {
            l0.push((
                format!(
                    "db=\"{}\",status=\"{st}\"",
                    label(&d.path.display().to_string())
                ),
                d.l0_retention[i] as f64,
            ));
        }
    }
    family(
        "litestream_l0_retention_files_total",
        "gauge",
        "Number of L0 files by status during retention enforcement",
        l0,
    );
    family(
        "litestream_last_sync_seconds",
        "gauge",
        "Unix time of the last sync that wrote a file",
        per_db(&|d| {
            d.last_sync
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|t| t.as_secs_f64())
                .unwrap_or(0.0)
        }),
    );
    let mut rows_txid = Vec::new();
    let mut rows_err = Vec::new();
    for d in &status {
        for (i, r) in d.replicas.iter().enumerate() {
            let l = format!(
                "db=\"{}\",replica=\"{i}\",replica_type=\"{}\"",
                label(&d.path.display().to_string()),
                r.kind
            );
            rows_txid.push((l.clone(), r.remote_txid.map(|t| t.0 as f64).unwrap_or(0.0)));
            rows_err.push((l, r.errors as f64));
        }
    }
    family(
        "litestream_replica_txid",
        "gauge",
        "The highest transaction ID on the replica",
        rows_txid,
    );
    family(
        "litestream_replica_error_count",
        "counter",
        "Number of failed upload batches",
        rows_err,
    );
    // Replica operations, per backend kind and operation, as Litestream's.
    let ops = crate::client::operation_stats();
    let op_label = |kind: &str, op: &str| format!("replica_type=\"{kind}\",operation=\"{op}\"");
    family(
        "litestream_replica_operation_total",
        "counter",
        "The number of replica operations performed",
        ops.iter()
            .map(|(k, o, s)| (op_label(k, o), s.total as f64))
            .collect(),
    );
    family(
        "litestream_replica_operation_bytes",
        "counter",
        "The number of bytes used by replica operations",
        ops.iter()
            .map(|(k, o, s)| (op_label(k, o), s.bytes as f64))
            .collect(),
    );
    family(
        "litestream_replica_operation_errors_total",
        "counter",
        "Number of replica operation errors by type, operation, and error code",
        ops.iter()
            .flat_map(|(k, o, s)| {
                s.errors
                    .iter()
                    .map(|(code, n)| {
                        (
                            format!("{},code=\"{}\"", op_label(k, o), label(code)),
                            *n as f64,
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect(),
    );
    let _ = writeln!(
        out,
        "# HELP litestream_replica_operation_duration_seconds Duration of replica operations by type and operation"
    );
    let _ = writeln!(
        out,
        "# TYPE litestream_replica_operation_duration_seconds histogram"
    );
    for (k, o, s) in &ops {
        let l = op_label(k, o);
        let mut cum = 0;
        for (b, n) in crate::client::DURATION_BUCKETS.iter().zip(s.buckets) {
            cum += n;
            let _ = writeln!(
                out,
                "litestream_replica_operation_duration_seconds_bucket{{{l},le=\"{b}\"}} {cum}"
            );
        }
        let _ = writeln!(
            out,
            "litestream_replica_operation_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}",
            s.timed
        );
        let _ = writeln!(
            out,
            "litestream_replica_operation_duration_seconds_sum{{{l}}} {}",
            s.seconds
        );
        let _ = writeln!(
            out,
            "litestream_replica_operation_duration_seconds_count{{{l}}} {}",
            s.timed
        );
    }
    // The store's own work: heartbeats and validation.
    let stats = monitor.stats();
    let _ = writeln!(
        out,
        "# HELP litestream_heartbeat_total Heartbeat pings by result"
    );
    let _ = writeln!(out, "# TYPE litestream_heartbeat_total counter");
    for (r, n) in [
        ("ok", stats.heartbeats_sent),
        ("error", stats.heartbeat_errors),
        ("skipped", stats.heartbeats_skipped),
    ] {
        let _ = writeln!(out, "litestream_heartbeat_total{{result=\"{r}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP litestream_validation_runs_total Validation passes run"
    );
    let _ = writeln!(out, "# TYPE litestream_validation_runs_total counter");
    let _ = writeln!(
        out,
        "litestream_validation_runs_total {}",
        stats.validation_runs
    );
    let _ = writeln!(
        out,
        "# HELP litestream_validation_errors Problems found by the last validation pass"
    );
    let _ = writeln!(out, "# TYPE litestream_validation_errors gauge");
    let mut counts: std::collections::BTreeMap<(String, u8, &str), u64> = Default::default();
    for e in &stats.validation_errors {
        *counts
            .entry((e.db.display().to_string(), e.level, e.kind.as_str()))
            .or_default() += 1;
    }
    for ((db, level, kind), n) in counts {
        let _ = writeln!(
            out,
            "litestream_validation_errors{{db=\"{}\",level=\"{level}\",type=\"{kind}\"}} {n}",
            label(&db)
        );
    }
    out
}

/// Serves `/metrics` on `addr` from a background thread.
pub(crate) fn serve(addr: &str, monitor: StoreMonitor) -> Result<std::net::SocketAddr> {
    // Litestream's ":9090" means all interfaces.
    let bind = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    let listener = TcpListener::bind(&bind)
        .map_err(|e| Error::io(format!("listen on {bind} for metrics"), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("metrics listener address", e))?;
    std::thread::Builder::new()
        .name("litestream-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut stream) = conn else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(match stream.try_clone() {
                    Ok(s) => s,
                    Err(_) => continue,
                });
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                // Drain the headers.
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                    line.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let (status, ctype, body) = if path == "/metrics" || path.starts_with("/metrics?") {
                    ("200 OK", "text/plain; version=0.0.4; charset=utf-8", render(&monitor))
                } else {
                    ("404 Not Found", "text/plain", "not found\n".to_string())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        })
        .map_err(|e| Error::io("start metrics thread", e))?;
    Ok(local)
}
