//! Typed reading of one YAML mapping's keys (string, path, boolean, duration, number, size),
//! remembering which were read so that unknown keys are errors naming the key and line.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::yaml::{Node, Value};
use crate::error::{Error, Result};
use crate::wire::parse_size;

/// An error at a line of the config file.
pub(super) fn err(line: usize, msg: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("config line {line}: {msg}"))
}

/// A mapping being read: remembers which keys were used so the rest can be reported.
pub(super) struct Obj<'a> {
    pub(super) line: usize,
    entries: &'a [(String, Node)],
    used: HashSet<&'a str>,
    ctx: &'static str,
}

impl<'a> Obj<'a> {
    pub(super) fn new(node: &'a Node, ctx: &'static str) -> Result<Obj<'a>> {
        match &node.value {
            Value::Map(m) => Ok(Obj {
                line: node.line,
                entries: m,
                used: HashSet::new(),
                ctx,
            }),
            Value::Null => Ok(Obj {
                line: node.line,
                entries: &[],
                used: HashSet::new(),
                ctx,
            }),
            _ => Err(err(node.line, format!("{ctx} must be a mapping of keys"))),
        }
    }

    /// The node under `key`, without marking the key read.
    pub(super) fn entry(&self, key: &str) -> Option<&'a Node> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, n)| n)
    }

    pub(super) fn get(&mut self, key: &'static str) -> Option<&'a Node> {
        let n = self.entry(key)?;
        self.used.insert(key);
        if n.value == Value::Null {
            return None;
        }
        Some(n)
    }

    pub(super) fn str(&mut self, key: &'static str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Node {
                value: Value::Str(s),
                ..
            }) => Ok(Some(s.clone())),
            Some(n) => Err(err(n.line, format!("{key} must be a single value"))),
        }
    }

    /// A path, expanded as Litestream's `expand()` ([`crate::cli::paths::expand`]).
    pub(super) fn path(&mut self, key: &'static str) -> Result<Option<PathBuf>> {
        let line = self.entry(key).map_or(self.line, |n| n.line);
        match self.str(key)? {
            None => Ok(None),
            Some(s) => crate::cli::paths::expand(&s)
                .map(Some)
                .map_err(|e| err(line, format!("{key}: {e}"))),
        }
    }

    /// A single value read through `parse`; when that fails, the error names the key's line,
    /// the key and the value as an invalid `what`, then `hint`.
    fn typed<T>(
        &mut self,
        key: &'static str,
        what: &str,
        hint: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>> {
        let line = self.entry(key).map_or(self.line, |n| n.line);
        match self.str(key)? {
            None => Ok(None),
            Some(v) => parse(&v)
                .map(Some)
                .ok_or_else(|| err(line, format!("{key}: invalid {what} {v:?}{hint}"))),
        }
    }

    pub(super) fn bool(&mut self, key: &'static str) -> Result<Option<bool>> {
        self.typed(key, "boolean", "", |v| match v {
            "true" | "True" | "TRUE" | "yes" | "on" => Some(true),
            "false" | "False" | "FALSE" | "no" | "off" => Some(false),
            _ => None,
        })
    }

    pub(super) fn duration(&mut self, key: &'static str) -> Result<Option<Duration>> {
        self.typed(
            key,
            "duration",
            " (use e.g. 500ms, 10s, 5m, 24h)",
            parse_duration,
        )
    }

    pub(super) fn int(&mut self, key: &'static str) -> Result<Option<i64>> {
        self.typed(key, "number", "", |v| v.parse::<i64>().ok())
    }

    pub(super) fn size(&mut self, key: &'static str) -> Result<Option<u64>> {
        self.typed(key, "size", " (use e.g. 5MiB, 10MB)", parse_size)
    }

    /// Keys Litestream parses but that have no effect here: warn.
    pub(super) fn ignored(&mut self, warnings: &mut Vec<String>, keys: &[&'static str], why: &str) {
        for k in keys {
            if let Some(n) = self.entry(k) {
                self.used.insert(k);
                warnings.push(format!("config line {}: {k} is ignored: {why}", n.line));
            }
        }
    }

    /// Fails on any key not read.
    pub(super) fn finish(self) -> Result<()> {
        for (k, n) in self.entries {
            if !self.used.contains(k.as_str()) {
                return Err(err(n.line, format!("unknown key {k:?} in {}", self.ctx)));
            }
        }
        Ok(())
    }
}

pub(crate) use crate::time::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (s, ms) in [
            ("1s", 1000u128),
            ("500ms", 500),
            ("1m30s", 90_000),
            ("24h", 86_400_000),
            ("1.5s", 1500),
            ("0", 0),
            ("1h0m0s", 3_600_000),
        ] {
            assert_eq!(parse_duration(s).unwrap().as_millis(), ms, "{s}");
        }
        for bad in ["", "1", "s", "1x", "-1s"] {
            assert!(parse_duration(bad).is_none(), "{bad}");
        }
    }
}
