//! What the commands that drive a running daemon over its control socket share
//! (`list`, `info`, `register`, `unregister`, `start`, `stop`, `sync`): the `-socket`,
//! `-timeout` and `-json` flags, parsing them as Litestream does (flags before the
//! database path), and printing an answer's fields.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::control::{client, DEFAULT_SOCKET};
use crate::cli::flags::{self, Flag, Parsed};
use crate::cli::{CliError, Usage};
use crate::error::Result;
use crate::wire::json::{quote, Value};

/// `-socket`, `-timeout` and `-json`.
const COMMON: [Flag; 3] = [
    Flag {
        name: "socket",
        value: Some("PATH"),
        help: "Path to control socket (default: /var/run/litestream.sock).",
    },
    Flag {
        name: "timeout",
        value: Some("SECONDS"),
        help: "Maximum time to wait in seconds.",
    },
    Flag {
        name: "json",
        value: None,
        help: "Output raw JSON instead of human-readable text.",
    },
];

/// A parsed daemon command: its flags, socket, timeout and the database path if it takes one.
pub(crate) struct Call {
    pub p: Parsed,
    pub socket: PathBuf,
    pub timeout: Duration,
    pub db: Option<String>,
}

/// Parses `args`: `own` flags besides the common ones; `needs_db` for commands that take
/// `DB_PATH`. `None` after `-h`.
pub(crate) fn parse(
    args: &[String],
    own: &[Flag],
    needs_db: Option<&str>,
    default_timeout: u64,
    usage: &str,
) -> std::result::Result<Option<Call>, CliError> {
    let spec: Vec<Flag> = COMMON.iter().chain(own).copied().collect();
    let p = flags::parse(args, &spec).map_err(|e| Usage(e.to_string()))?;
    if p.help {
        print!("{usage}\nOptions:\n\n{}", flags::usage(&spec));
        return Ok(None);
    }
    let timeout = match p.get("timeout") {
        None => default_timeout,
        Some(t) => t
            .parse::<i64>()
            .map_err(|_| Usage(format!("invalid value {t:?} for flag -timeout")))?
            .max(0) as u64,
    };
    if timeout == 0 {
        return Err(Usage("timeout must be greater than 0".into()).into());
    }
    let db = match (needs_db, p.positional.as_slice()) {
        (None, []) => None,
        (None, _) | (Some(_), [_, _, ..]) => return Err(Usage("too many arguments".into()).into()),
        (Some(hint), []) => {
            return Err(Usage(format!("database path required\nhint: {hint}")).into())
        }
        (Some(_), [db]) => Some(db.clone()),
    };
    Ok(Some(Call {
        socket: PathBuf::from(p.get("socket").unwrap_or(DEFAULT_SOCKET)),
        timeout: Duration::from_secs(timeout),
        db,
        p,
    }))
}

impl Call {
    /// Sends the request; the answer's JSON.
    pub(crate) fn send(&self, what: &str, method: &str, target: &str, body: &str) -> Result<Value> {
        client::call(&self.socket, self.timeout, what, method, target, body)
    }

    /// The database path as given.
    pub(crate) fn db(&self) -> &str {
        self.db.as_deref().unwrap_or("")
    }

    /// `{"path": DB, "timeout": N}` plus `extra` members.
    pub(crate) fn path_body(&self, extra: &str) -> String {
        format!(
            "{{\"path\":{},\"timeout\":{}{extra}}}",
            quote(self.db()),
            self.timeout.as_secs()
        )
    }

    /// True with `-json`.
    pub(crate) fn json(&self) -> bool {
        self.p.bool("json")
    }

    /// The socket path as text.
    pub(crate) fn socket_text(&self) -> String {
        self.socket.display().to_string()
    }
}

/// Prints `fields` as `name: value` lines, or (with `json`) as an indented JSON object;
/// values are pre-formatted JSON (strings quoted).
pub(crate) fn print_fields(json: bool, fields: &[(&str, String)]) {
    if json {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("  {}: {v}", quote(k)))
            .collect();
        println!("{{\n{}\n}}", body.join(",\n"));
    } else {
        for (k, v) in fields {
            let shown = crate::wire::json::parse(v)
                .ok()
                .and_then(|x| x.as_str().map(String::from))
                .unwrap_or_else(|| v.clone());
            println!("{k}: {shown}");
        }
    }
}
