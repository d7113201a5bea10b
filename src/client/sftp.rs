//! The `sftp` backend (cargo feature `sftp`, off by default: it links libssh2 through the
//! `ssh2` crate). Layout as Litestream's: `<path>/ltx/<level>/<min>-<max>.ltx`, written to
//! a temporary name, stamped with the header timestamp as its modification time, then
//! renamed into place, so a listing never shows a partial file.
//!
//! `sftp://USER[:PASSWORD]@HOST[:PORT]/PATH`: authentication by the key file given with
//! [`SftpConfig::key_path`] (YAML `key-path`) or the password; the server's key is checked
//! against [`SftpConfig::host_key`] (YAML `host-key`, `"ssh-ed25519 AAAA…"`) when given,
//! otherwise accepted with a warning, as Litestream does.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ssh2::{ErrorCode, FileStat, RenameFlags, Session, Sftp};

use super::key::{self, Layout};
use super::{check_object_path, read_header, FileInfo, ObjectInfo, ReplicaClient};
use crate::durable::ReadAt;
use crate::error::{Error, Result};
use crate::ltx::{self, Txid};

/// SFTP status "no such file".
const FX_NO_SUCH_FILE: i32 = 2;

/// Where an `sftp://` replica lives and how to log in.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SftpConfig {
    /// Server host name or address.
    pub host: String,
    /// Port (default 22).
    pub port: u16,
    /// Login name.
    pub user: String,
    /// Password, if logging in with one.
    pub password: Option<String>,
    /// Private key file, if logging in with a key.
    pub key_path: Option<PathBuf>,
    /// Expected server key, `"<type> <base64>"` as in `known_hosts` or a `.pub` file.
    pub host_key: Option<String>,
    /// Replica directory on the server.
    pub path: String,
}

impl std::fmt::Debug for SftpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("key_path", &self.key_path)
            .field("host_key", &self.host_key)
            .field("path", &self.path)
            .finish()
    }
}

impl SftpConfig {
    /// Parses `sftp://USER[:PASSWORD]@HOST[:PORT]/PATH`.
    pub fn from_url(url: &str) -> Result<SftpConfig> {
        Self::from_parsed(url, crate::url::ReplicaUrl::parse(url)?)
    }

    /// [`SftpConfig::from_url`] for a URL already parsed (the client factory parses it once).
    pub(crate) fn from_parsed(url: &str, u: crate::url::ReplicaUrl) -> Result<SftpConfig> {
        let bad = |reason: &str| Error::InvalidUrl {
            url: url.into(),
            reason: reason.into(),
        };
        if u.scheme != "sftp" {
            return Err(bad("not an sftp:// url"));
        }
        if u.host.is_empty() {
            return Err(bad("sftp url needs a host: sftp://USER@HOST/PATH"));
        }
        let user = u
            .username
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("sftp url needs a user: sftp://USER@HOST/PATH"))?;
        Ok(SftpConfig {
            host: u.host.clone(),
            port: u.port.unwrap_or(22),
            user,
            password: u.password.clone(),
            key_path: None,
            host_key: None,
            path: u.path.clone(),
        })
    }
}

struct Conn {
    // The session must outlive the SFTP channel; both are dropped together.
    sftp: Arc<Sftp>,
    _session: Session,
}

/// A replica in a directory on an SFTP server.
pub struct SftpClient {
    cfg: SftpConfig,
    conn: Mutex<Option<Arc<Conn>>>,
}

impl std::fmt::Debug for SftpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpClient")
            .field("host", &self.cfg.host)
            .field("user", &self.cfg.user)
            .field("path", &self.cfg.path)
            .finish_non_exhaustive()
    }
}

fn is_missing(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::SFTP(FX_NO_SUCH_FILE)
}

impl SftpClient {
    /// A client for `cfg`. It connects on first use and reconnects after a failure.
    pub fn new(cfg: SftpConfig) -> Result<SftpClient> {
        if cfg.user.is_empty() || cfg.host.is_empty() {
            return Err(Error::Invalid("sftp: host and user required".into()));
        }
        Ok(SftpClient {
            cfg,
            conn: Mutex::new(None),
        })
    }

    /// A client from an `sftp://` URL.
    pub fn from_url(url: &str) -> Result<SftpClient> {
        SftpClient::new(SftpConfig::from_url(url)?)
    }

    fn err(&self, op: &'static str, target: &Path, e: impl std::fmt::Display) -> Error {
        Error::Backend {
            backend: "sftp",
            op,
            target: format!(
                "sftp://{}@{}:{}{}",
                self.cfg.user,
                self.cfg.host,
                self.cfg.port,
                target.display()
            ),
            status: None,
            code: String::new(),
            message: e.to_string(),
        }
    }

    /// A refusal that retrying cannot fix (reported as status 403).
    fn denied(&self, code: &str, message: String) -> Error {
        Error::Backend {
            backend: "sftp",
            op: "login",
            target: format!(
                "sftp://{}@{}:{}",
                self.cfg.user, self.cfg.host, self.cfg.port
            ),
            status: Some(403),
            code: code.to_string(),
            message,
        }
    }

    fn connect(&self) -> Result<Conn> {
        let root = Path::new(&self.cfg.path);
        let addr = (self.cfg.host.as_str(), self.cfg.port)
            .to_socket_addrs()
            .map_err(|e| self.err("connect", root, e))?
            .next()
            .ok_or_else(|| self.err("connect", root, "host has no address"))?;
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(30))
            .map_err(|e| self.err("connect", root, e))?;
        let mut s = Session::new().map_err(|e| self.err("connect", root, e))?;
        s.set_tcp_stream(tcp);
        s.set_timeout(120_000);
        s.handshake()
            .map_err(|e| self.err("ssh handshake", root, e))?;
        let (key, _) = s
            .host_key()
            .ok_or_else(|| self.err("ssh handshake", root, "server sent no host key"))?;
        match &self.cfg.host_key {
            Some(want) => {
                let want_b64 = want.split_whitespace().nth(1).unwrap_or(want.as_str());
                let got = crate::wire::base64::encode(key);
                if got != want_b64 {
                    return Err(self.denied(
                        "HostKeyMismatch",
                        format!(
                            "host key of {}:{} does not match the configured host-key (the server sent {got})",
                            self.cfg.host, self.cfg.port
                        ),
                    ));
                }
            }
            None => log::warn!(
                "sftp: host key of {}:{} not verified (set host-key to check it)",
                self.cfg.host,
                self.cfg.port
            ),
        }
        let auth = match (&self.cfg.key_path, &self.cfg.password) {
            (Some(k), _) => s.userauth_pubkey_file(&self.cfg.user, None, k, None),
            (None, Some(p)) => s.userauth_password(&self.cfg.user, p),
            (None, None) => s.userauth_agent(&self.cfg.user),
        };
        if auth.is_err() || !s.authenticated() {
            let how = match (&self.cfg.key_path, &self.cfg.password) {
                (Some(k), _) => format!("key {}", k.display()),
                (None, Some(_)) => "a password".to_string(),
                (None, None) => "the ssh agent".to_string(),
            };
            return Err(self.denied(
                "AuthFailed",
                format!(
                    "{}:{} refused user {:?} with {how}{}",
                    self.cfg.host,
                    self.cfg.port,
                    self.cfg.user,
                    auth.err().map(|e| format!(": {e}")).unwrap_or_default()
                ),
            ));
        }
        let sftp = s.sftp().map_err(|e| self.err("sftp subsystem", root, e))?;
        Ok(Conn {
            sftp: Arc::new(sftp),
            _session: s,
        })
    }

    fn conn(&self) -> Result<Arc<Conn>> {
        let mut g = self
            .conn
            .lock()
            .map_err(|_| Error::State("sftp connection lock poisoned".into()))?;
        if let Some(c) = g.as_ref() {
            return Ok(c.clone());
        }
        let c = Arc::new(self.connect()?);
        *g = Some(c.clone());
        Ok(c)
    }

    /// Runs `f` on the connection; after a failure that is not about the file itself the
    /// connection is dropped and `f` tried once more on a new one.
    fn with<T>(
        &self,
        f: impl Fn(&Sftp) -> std::result::Result<T, ssh2::Error>,
    ) -> Result<std::result::Result<T, ssh2::Error>> {
        let c = self.conn()?;
        match f(&c.sftp) {
            Err(e) if !matches!(e.code(), ErrorCode::SFTP(_)) => {
                if let Ok(mut g) = self.conn.lock() {
                    *g = None;
                }
                let c = self.conn()?;
                Ok(f(&c.sftp))
            }
            r => Ok(r),
        }
    }

    /// The directory that holds the files of `level`.
    fn level_dir(&self, level: u8) -> PathBuf {
        let dir = key::level_prefix("", level, Layout::Ltx);
        Path::new(&self.cfg.path).join(dir.trim_end_matches('/'))
    }

    /// The key of the LTX file `(level, min, max)`: its path on the server.
    fn key(&self, level: u8, min: Txid, max: Txid) -> PathBuf {
        Path::new(&self.cfg.path).join(key::ltx_key("", level, min, max, Layout::Ltx))
    }

    /// `mkdir -p`.
    fn mkdir_all(&self, sftp: &Sftp, dir: &Path) -> std::result::Result<(), ssh2::Error> {
        if sftp.stat(dir).is_ok() {
            return Ok(());
        }
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.mkdir_all(sftp, parent)?;
        }
        match sftp.mkdir(dir, 0o755) {
            Ok(()) => Ok(()),
            // Made meanwhile by another writer.
            Err(_) if sftp.stat(dir).is_ok() => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn remove_tree(&self, sftp: &Sftp, dir: &Path) -> std::result::Result<(), ssh2::Error> {
        let entries = match sftp.readdir(dir) {
            Ok(e) => e,
            Err(e) if is_missing(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        for (p, st) in entries {
            if st.is_dir() {
                self.remove_tree(sftp, &p)?;
            } else {
                match sftp.unlink(&p) {
                    Err(e) if !is_missing(&e) => return Err(e),
                    _ => {}
                }
            }
        }
        match sftp.rmdir(dir) {
            Err(e) if !is_missing(&e) => Err(e),
            _ => Ok(()),
        }
    }
}

/// A remote file read from an offset, up to an optional length.
struct RemoteReader {
    file: ssh2::File,
    left: Option<u64>,
    _conn: Arc<Conn>,
}

impl Read for RemoteReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = match self.left {
            Some(0) => return Ok(0),
            Some(n) => buf.len().min(n as usize),
            None => buf.len(),
        };
        let n = self.file.read(&mut buf[..want])?;
        if let Some(l) = self.left.as_mut() {
            *l -= n as u64;
        }
        Ok(n)
    }
}

impl ReplicaClient for SftpClient {
    fn kind(&self) -> &'static str {
        "sftp"
    }

    fn ltx_files(&self, level: u8, seek: Txid, _accurate: bool) -> Result<Vec<FileInfo>> {
        let dir = self.level_dir(level);
        let entries = match self.with(|s| s.readdir(&dir))? {
            Ok(e) => e,
            Err(e) if is_missing(&e) => return Ok(Vec::new()),
            Err(e) => return Err(self.err("list", &dir, e)),
        };
        let mut out = Vec::new();
        for (p, st) in entries {
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some((min, max)) = ltx::parse_file_name(name) else {
                continue;
            };
            if min < seek || st.is_dir() {
                continue;
            }
            out.push(FileInfo {
                level,
                min_txid: min,
                max_txid: max,
                size: st.size.unwrap_or(0),
                // The mtime is the header timestamp (set before the rename), to the second.
                created_at: UNIX_EPOCH + Duration::from_secs(st.mtime.unwrap_or(0)),
            });
        }
        out.sort_by_key(|f| (f.min_txid, f.max_txid));
        Ok(out)
    }

    fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        check_object_path(prefix.trim_end_matches('/'))?;
        let mut out = Vec::new();
        let mut dirs = vec![prefix.trim_end_matches('/').to_string()];
        while let Some(rel) = dirs.pop() {
            let dir = Path::new(&self.cfg.path).join(&rel);
            let entries = match self.with(|s| s.readdir(&dir))? {
                Ok(e) => e,
                Err(e) if is_missing(&e) => continue,
                Err(e) => return Err(self.err("list", &dir, e)),
            };
            for (p, st) in entries {
                let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let path = format!("{rel}/{name}");
                if st.is_dir() {
                    dirs.push(path);
                } else {
                    out.push(ObjectInfo {
                        path,
                        size: st.size.unwrap_or(0),
                        modified: UNIX_EPOCH + Duration::from_secs(st.mtime.unwrap_or(0)),
                    });
                }
            }
        }
        Ok(out)
    }

    fn open_object(&self, path: &str) -> Result<Box<dyn Read + Send>> {
        check_object_path(path)?;
        let key = Path::new(&self.cfg.path).join(path);
        let conn = self.conn()?;
        match self.with(|s| s.open(&key))? {
            Ok(file) => Ok(Box::new(RemoteReader {
                file,
                left: None,
                _conn: conn,
            })),
            Err(e) if is_missing(&e) => Err(Error::NotFound {
                backend: "sftp",
                target: key.display().to_string(),
            }),
            Err(e) => Err(self.err("open", &key, e)),
        }
    }

    fn open_ltx_file(
        &self,
        level: u8,
        min: Txid,
        max: Txid,
        offset: u64,
        len: Option<u64>,
    ) -> Result<Box<dyn Read + Send>> {
        let key = self.key(level, min, max);
        let conn = self.conn()?;
        let mut file = match self.with(|s| s.open(&key))? {
            Ok(f) => f,
            Err(e) if is_missing(&e) => {
                return Err(Error::NotFound {
                    backend: "sftp",
                    target: key.display().to_string(),
                })
            }
            Err(e) => return Err(self.err("open", &key, e)),
        };
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| self.err("seek", &key, e))?;
        }
        Ok(Box::new(RemoteReader {
            file,
            left: len,
            _conn: conn,
        }))
    }

    fn write_ltx_file(&self, level: u8, min: Txid, max: Txid, src: &File) -> Result<FileInfo> {
        let hdr = read_header(src)?;
        let dir = self.level_dir(level);
        let key = self.key(level, min, max);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let tmp = dir.join(format!(
            "{}.{}.{nanos}.tmp",
            ltx::file_name(min, max),
            std::process::id()
        ));
        let secs = (hdr.timestamp.max(0) / 1000) as u64;
        let size = src
            .metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io("stat the file to upload", e))?;
        let conn = self.conn()?;
        let mut f = match self.with(|s| {
            self.mkdir_all(s, &dir)?;
            s.create(&tmp)
        })? {
            Ok(f) => f,
            Err(e) => return Err(self.err("create", &tmp, e)),
        };
        let copied = (|| -> io::Result<()> {
            let mut reader = ReadAt::new(src);
            let mut buf = vec![0u8; 256 << 10];
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                f.write_all(&buf[..n])?;
            }
        })();
        let finished = copied
            .map_err(|e| self.err("write", &tmp, e))
            .and_then(|()| {
                // Servers without the fsync extension answer "unsupported": fine.
                match f.fsync() {
                    Err(e) if !matches!(e.code(), ErrorCode::SFTP(8)) => {
                        Err(self.err("fsync", &tmp, e))
                    }
                    _ => Ok(()),
                }
            });
        drop(f);
        let finished = finished.and_then(|()| {
            let s = &conn.sftp;
            let stamp = FileStat {
                size: None,
                uid: None,
                gid: None,
                perm: None,
                atime: Some(secs),
                mtime: Some(secs),
            };
            s.setstat(&tmp, stamp)
                .map_err(|e| self.err("set mtime", &tmp, e))?;
            let flags = RenameFlags::OVERWRITE | RenameFlags::ATOMIC | RenameFlags::NATIVE;
            if s.rename(&tmp, &key, Some(flags)).is_err() {
                // SFTP v3 servers refuse to rename over an existing file.
                let _ = s.unlink(&key);
                s.rename(&tmp, &key, Some(flags))
                    .map_err(|e| self.err("rename", &key, e))?;
            }
            Ok(())
        });
        if let Err(e) = finished {
            let _ = conn.sftp.unlink(&tmp);
            return Err(e);
        }
        Ok(FileInfo::new(
            level,
            min,
            max,
            size,
            UNIX_EPOCH + Duration::from_secs(secs),
        ))
    }

    fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        for f in files {
            let key = self.key(f.level, f.min_txid, f.max_txid);
            match self.with(|s| s.unlink(&key))? {
                Err(e) if !is_missing(&e) => return Err(self.err("delete", &key, e)),
                _ => {}
            }
        }
        Ok(())
    }

    fn delete_all(&self) -> Result<()> {
        let root = Path::new(&self.cfg.path).join("ltx");
        self.with(|s| self.remove_tree(s, &root))?
            .map_err(|e| self.err("delete all", &root, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = SftpConfig::from_url("sftp://me:pw@127.0.0.1:2222/home/me/rep").unwrap();
        assert_eq!(
            (
                c.host.as_str(),
                c.port,
                c.user.as_str(),
                c.password.as_deref()
            ),
            ("127.0.0.1", 2222, "me", Some("pw"))
        );
        assert_eq!(c.path, "/home/me/rep");
        assert!(!format!("{c:?}").contains("pw\""));
        assert!(SftpConfig::from_url("sftp://127.0.0.1/x").is_err());
        assert_eq!(SftpConfig::from_url("sftp://u@h/x").unwrap().port, 22);
    }
}
