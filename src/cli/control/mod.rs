//! The control socket (`socket:` in litestream.yml): HTTP/1.1 over a Unix socket with
//! Litestream's endpoints and JSON shapes, so its `list`, `info`, `register`,
//! `unregister`, `start`, `stop` and `sync` commands (and ours, through [`client`]) drive
//! a running `replicate`. One thread accepts; each request is served on its own thread
//! (a `sync -wait` may take a while) and the connection closed after the answer.

pub(crate) mod client;
mod http;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Request, Response};

use crate::cli::paths;
use crate::error::{Error, Result};
use crate::time::format_rfc3339;
use crate::wire::json::{self, quote, Value};
use crate::{Db, Replica, StoreHandle};

/// Litestream's default socket path.
pub(crate) const DEFAULT_SOCKET: &str = "/var/run/litestream.sock";

/// `socket:` settings.
#[derive(Clone, Debug)]
pub(crate) struct SocketConfig {
    pub enabled: bool,
    pub path: PathBuf,
    pub permissions: u32,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            enabled: false,
            path: PathBuf::from(DEFAULT_SOCKET),
            permissions: 0o600,
        }
    }
}

/// The running server; dropping it stops accepting and removes the socket file.
pub(crate) struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What the handlers need.
struct Ctx {
    store: StoreHandle,
    started: SystemTime,
    pid: u32,
    /// What `~` in a request's path stands for.
    home: Option<PathBuf>,
}

/// Binds the socket (replacing a stale one left by a killed daemon), sets its
/// permissions and serves it from a background thread.
pub(crate) fn serve(cfg: &SocketConfig, store: StoreHandle) -> Result<Server> {
    let path = cfg.path.clone();
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(&path).is_ok() {
                return Err(Error::Invalid(format!(
                    "control socket {}: another process is listening on it (is litestream already running?)",
                    path.display()
                )));
            }
            std::fs::remove_file(&path)
                .map_err(|e| Error::io(format!("remove stale socket {}", path.display()), e))?;
        }
        Ok(_) => {
            return Err(Error::Invalid(format!(
                "control socket path exists but is not a socket: {}",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::io(
                format!("check socket path {}", path.display()),
                e,
            ))
        }
    }
    let listener = bind_with_mode(&path, cfg.permissions)?;
    let stop = Arc::new(AtomicBool::new(false));
    let ctx = Arc::new(Ctx {
        store,
        started: SystemTime::now(),
        pid: std::process::id(),
        home: paths::home().map(PathBuf::from),
    });
    let s = stop.clone();
    std::thread::Builder::new()
        .name("litestream-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = conn else { continue };
                let ctx = ctx.clone();
                let _ = std::thread::Builder::new()
                    .name("litestream-control-conn".into())
                    .spawn(move || serve_conn(stream, &ctx));
            }
        })
        .map_err(|e| Error::io("start control socket thread", e))?;
    log::info!("control socket listening on {}", path.display());
    Ok(Server { path, stop })
}

/// Binds a listening socket at `path` that appears there with `mode` already set: it is
/// bound under a short temporary name in the same directory, given its mode, then linked
/// into place — never over a socket that appeared meanwhile (a second daemon started at
/// the same moment gets "address in use", as a plain bind would give it).
fn bind_with_mode(path: &Path, mode: u32) -> Result<UnixListener> {
    // Short: a socket path has at most 107 bytes, and the real name may be near it.
    let tmp = path.with_file_name(format!(".{}.s", std::process::id()));
    // A temporary name left by a killed daemon of this pid (pids are reused).
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)
        .map_err(|e| Error::io(format!("listen on unix socket {}", path.display()), e))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("chmod socket {}", tmp.display()), e))
        .and_then(|()| {
            std::fs::hard_link(&tmp, path).map_err(|e| {
                let what = if e.kind() == std::io::ErrorKind::AlreadyExists {
                    "address in use (is litestream already running?)"
                } else {
                    "place socket"
                };
                Error::io(format!("{what}: {}", path.display()), e)
            })
        });
    let _ = std::fs::remove_file(&tmp);
    placed?;
    Ok(listener)
}

/// Serves one connection: one request, one answer.
fn serve_conn(mut stream: UnixStream, ctx: &Ctx) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let resp = match http::read_request(&mut stream) {
        Ok(req) => route(&req, ctx),
        Err(e) => error(400, "invalid request", Some(&e.to_string())),
    };
    let _ = http::write_response(&mut stream, &resp);
}

fn error(status: u16, message: &str, details: Option<&str>) -> Response {
    let mut body = format!("{{\"error\":{}", quote(message));
    if let Some(d) = details {
        body.push_str(&format!(",\"details\":{}", quote(d)));
    }
    body.push_str("}\n");
    Response { status, body }
}

fn ok(body: String) -> Response {
    Response {
        status: 200,
        body: body + "\n",
    }
}

/// The request's JSON body, with its `path` (required) expanded.
fn body_with_path(req: &Request, ctx: &Ctx) -> std::result::Result<(Value, PathBuf), Response> {
    let v = json::parse(&req.body)
        .map_err(|e| error(400, "invalid request body", Some(&e.to_string())))?;
    let path = match v.get("path").and_then(Value::as_str) {
        Some(p) if !p.is_empty() => expand(p, ctx)?,
        _ => return Err(error(400, "path required", None)),
    };
    Ok((v, path))
}

/// A request's database path as the config's are ([`paths::expand_with`]), so both name a
/// database alike.
fn expand(p: &str, ctx: &Ctx) -> std::result::Result<PathBuf, Response> {
    paths::expand_with(p, ctx.home.as_deref())
        .map_err(|e| error(400, "invalid path", Some(&e.to_string())))
}

/// Longest wait a request may ask for: a day.
const MAX_TIMEOUT: u64 = 24 * 3600;

/// A request's `timeout` in seconds (at most [`MAX_TIMEOUT`]), or `default`.
fn timeout(v: &Value, default: u64) -> Duration {
    Duration::from_secs(
        v.get("timeout")
            .and_then(Value::as_u64)
            .filter(|t| *t > 0)
            .unwrap_or(default)
            .min(MAX_TIMEOUT),
    )
}

fn path_json(p: &Path) -> String {
    quote(&p.display().to_string())
}

fn route(req: &Request, ctx: &Ctx) -> Response {
    let store = &ctx.store;
    let txid_of = |p: &Path| {
        store
            .status()
            .into_iter()
            .find(|d| d.path == p)
            .map(|d| d.local_txid.0)
            .unwrap_or(0)
    };
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/info") => ok(format!(
            "{{\"version\":{},\"pid\":{},\"uptime_seconds\":{},\"started_at\":{},\"database_count\":{}}}",
            quote(&crate::cli::cmd::version::version()),
            ctx.pid,
            ctx.started.elapsed().map(|d| d.as_secs()).unwrap_or(0),
            quote(&format_rfc3339(ctx.started)),
            store.paths().len()
        )),
        ("GET", "/list") => {
            let items: Vec<String> = store
                .status()
                .iter()
                .map(|d| {
                    let mut s = format!(
                        "{{\"path\":{},\"status\":{}",
                        path_json(&d.path),
                        quote(if d.running { "replicating" } else { "stopped" })
                    );
                    if let Some(t) = d.last_replicated() {
                        s.push_str(&format!(",\"last_sync_at\":{}", quote(&format_rfc3339(t))));
                    }
                    s + "}"
                })
                .collect();
            ok(format!("{{\"databases\":[{}]}}", items.join(",")))
        }
        ("GET", "/txid") => {
            let Some(p) = req.query("path") else {
                return error(400, "path required", None);
            };
            let p = match expand(&p, ctx) {
                Ok(p) => p,
                Err(r) => return r,
            };
            if !store.contains(&p) {
                return error(404, "database not found", None);
            }
            ok(format!("{{\"txid\":{}}}", txid_of(&p)))
        }
        ("POST", "/register") => {
            let (v, path) = match body_with_path(req, ctx) {
                Ok(x) => x,
                Err(r) => return r,
            };
            let Some(url) = v.get("replica_url").and_then(Value::as_str).filter(|u| !u.is_empty())
            else {
                return error(400, "replica_url required", None);
            };
            let status = if store.contains(&path) {
                "already_registered"
            } else {
                let replica = match Replica::from_url(url) {
                    Ok(r) => r,
                    Err(e) => return error(400, &format!("invalid replica url: {e}"), None),
                };
                if let Err(e) = store.add(Db::new(&path).replica(replica)) {
                    return error(500, &format!("failed to register database: {e}"), None);
                }
                "registered"
            };
            ok(format!("{{\"status\":{},\"path\":{}}}", quote(status), path_json(&path)))
        }
        ("POST", "/unregister") => {
            let (v, path) = match body_with_path(req, ctx) {
                Ok(x) => x,
                Err(r) => return r,
            };
            match store.remove(&path, timeout(&v, 30)) {
                Ok(Some(report)) => ok(format!(
                    "{{\"status\":\"unregistered\",\"path\":{},\"txid\":{}}}",
                    path_json(&path),
                    report.dbs.first().map(|d| d.local_txid.0).unwrap_or(0)
                )),
                Ok(None) => ok(format!(
                    "{{\"status\":\"already_unregistered\",\"path\":{},\"txid\":0}}",
                    path_json(&path)
                )),
                Err(e) => error(500, &format!("failed to unregister database: {e}"), None),
            }
        }
        ("POST", "/start") | ("POST", "/stop") => {
            let (v, path) = match body_with_path(req, ctx) {
                Ok(x) => x,
                Err(r) => return r,
            };
            if !store.contains(&path) {
                return error(500, &format!("database not found: {}", path.display()), None);
            }
            let status = if req.path == "/start" {
                match store.start(&path) {
                    Ok(true) => "started",
                    Ok(false) => "already_running",
                    Err(e) => return error(500, &e.to_string(), None),
                }
            } else {
                match store.stop(&path, timeout(&v, 30)) {
                    Ok(Some(_)) => "stopped",
                    Ok(None) => "already_stopped",
                    Err(e) => return error(500, &e.to_string(), None),
                }
            };
            ok(format!(
                "{{\"status\":{},\"path\":{},\"txid\":{}}}",
                quote(status),
                path_json(&path),
                txid_of(&path)
            ))
        }
        ("POST", "/sync") => {
            let (v, path) = match body_with_path(req, ctx) {
                Ok(x) => x,
                Err(r) => return r,
            };
            let wait = matches!(v.get("wait"), Some(Value::Bool(true)));
            match store.sync_db(&path, wait, timeout(&v, 30)) {
                Ok(r) => ok(format!(
                    "{{\"status\":{},\"path\":{},\"txid\":{},\"replicated_txid\":{}}}",
                    quote(match (r.changed, wait) {
                        (false, _) => "no_change",
                        (true, true) => "synced",
                        (true, false) => "synced_local",
                    }),
                    path_json(&path),
                    r.txid.0,
                    r.replicated_txid.0
                )),
                Err(e @ Error::UnknownDatabase(_)) => error(404, &e.to_string(), None),
                Err(e @ Error::DatabaseStopped(_)) => error(409, &e.to_string(), None),
                Err(e) => error(500, &format!("sync database: {e}"), None),
            }
        }
        (_, "/info" | "/list" | "/txid" | "/register" | "/unregister" | "/start" | "/stop" | "/sync") => {
            error(405, "method not allowed", None)
        }
        _ => error(404, "not found", None),
    }
}

#[cfg(test)]
mod tests;
