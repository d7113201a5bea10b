//! Paths the user gives (config keys, `-config`, `$LITESTREAM_CONFIG`, control-socket
//! requests) made into the absolute, clean paths the engine compares, as Litestream's
//! `expand()`: a `sqlite://` or `sqlite3://` prefix stripped, `~` and `~/...` taken from the
//! home directory, relative paths joined to the working directory, and `.` and `..`
//! resolved lexically (symlinks are left alone, as Go's `filepath.Abs`).

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// The home directory `~` stands for: `$HOME`.
pub(crate) fn home() -> Option<OsString> {
    std::env::var_os("HOME").filter(|h| !h.is_empty())
}

/// [`expand_with`] the process's home directory.
pub(crate) fn expand(s: &str) -> Result<PathBuf> {
    expand_with(s, home().as_deref().map(Path::new))
}

/// Expands `s` with `home` as `~`; an error if `s` starts with `~` and there is no home.
pub(crate) fn expand_with(s: &str, home: Option<&Path>) -> Result<PathBuf> {
    let s = strip_sqlite_prefix(s);
    let p = if s == "~" || s.starts_with("~/") {
        let home = home.ok_or_else(|| {
            Error::Invalid(format!(
                "cannot expand path {s}, no home directory available"
            ))
        })?;
        home.join(s[1..].trim_start_matches('/'))
    } else {
        PathBuf::from(s)
    };
    let abs = std::path::absolute(&p).map_err(|e| Error::io(format!("absolute path {s}"), e))?;
    Ok(clean(&abs))
}

/// `s` without a leading `sqlite://` or `sqlite3://`.
pub(crate) fn strip_sqlite_prefix(s: &str) -> &str {
    s.strip_prefix("sqlite3://")
        .or_else(|| s.strip_prefix("sqlite://"))
        .unwrap_or(s)
}

/// `p` with `.` dropped and `..` taking off the component before it (at the root, nothing),
/// lexically, as Go's `filepath.Clean`.
pub(crate) fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    let mut depth = 0usize;
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if depth > 0 => {
                out.pop();
                depth -= 1;
            }
            Component::ParentDir if out.has_root() => {}
            Component::ParentDir => out.push(".."),
            Component::Normal(n) => {
                out.push(n);
                depth += 1;
            }
            c => out.push(c.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion() {
        let home = Some(Path::new("/home/u"));
        let x = |s: &str| expand_with(s, home).unwrap();
        assert_eq!(x("~"), PathBuf::from("/home/u"));
        assert_eq!(x("~/"), PathBuf::from("/home/u"));
        assert_eq!(x("~/a/b.db"), PathBuf::from("/home/u/a/b.db"));
        assert_eq!(x("sqlite://~/a.db"), PathBuf::from("/home/u/a.db"));
        assert_eq!(x("sqlite3:///x/y.db"), PathBuf::from("/x/y.db"));
        assert_eq!(x("/x/./y/../z.db"), PathBuf::from("/x/z.db"));
        assert_eq!(x("/../../z.db"), PathBuf::from("/z.db"));
        assert_eq!(
            x("~user/a"),
            std::env::current_dir().unwrap().join("~user/a")
        );
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(x("a/../b.db"), cwd.join("b.db"));
        assert!(expand_with("~/a", None).is_err());
        assert_eq!(clean(Path::new("a/../..")), PathBuf::from(".."));
    }
}
