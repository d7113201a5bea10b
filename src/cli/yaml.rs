//! A small YAML reader for `litestream.yml`: block mappings and sequences by indentation,
//! plain / single-quoted / double-quoted scalars, comments, and flow sequences and maps of
//! scalars (`[a, b]`, `{}`). Every node remembers its line for error messages. Anchors,
//! aliases, tags and block scalars (`|`, `>`) are refused with a clear error rather than
//! misread. It is fuzzed (`fuzz/fuzz_targets/config_parse.rs`).

use crate::error::{Error, Result};

/// A parsed value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// An empty value, `~` or `null`.
    Null,
    /// A scalar, unparsed.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<(String, Node)>),
}

/// A value and the (1-based) line it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone)]
struct Line {
    no: usize,
    indent: usize,
    text: String,
}

fn err(line: usize, msg: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("config line {line}: {msg}"))
}

/// Removes a comment (`#` at the start or after whitespace, outside quotes).
fn strip_comment(s: &str) -> &str {
    let b = s.as_bytes();
    let (mut single, mut double) = (false, false);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'\\' if double => i += 1,
            b'#' if !single && !double && (i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t') => {
                return &s[..i];
            }
            _ => {}
        }
        i += 1;
    }
    s
}

fn lines(doc: &str) -> Result<Vec<Line>> {
    let mut out = Vec::new();
    for (i, raw) in doc.lines().enumerate() {
        let no = i + 1;
        let text = strip_comment(raw).trim_end();
        if text.trim().is_empty() {
            continue;
        }
        let indent = text.len() - text.trim_start_matches(' ').len();
        if text[indent..].starts_with('\t') {
            return Err(err(no, "tabs are not allowed for indentation"));
        }
        let t = &text[indent..];
        if t == "---" || t == "..." {
            if out.is_empty() || t == "..." {
                continue;
            }
            return Err(err(no, "only one YAML document is supported"));
        }
        out.push(Line {
            no,
            indent,
            text: t.to_string(),
        });
    }
    Ok(out)
}

/// Parses a YAML document.
pub(crate) fn parse(doc: &str) -> Result<Node> {
    let mut ls = lines(doc)?;
    if ls.is_empty() {
        return Ok(Node {
            line: 1,
            value: Value::Null,
        });
    }
    let mut i = 0;
    let indent = ls[0].indent;
    let node = block(&mut ls, &mut i, indent, 0)?;
    if i < ls.len() {
        return Err(err(
            ls[i].no,
            format!("unexpected indentation of {:?}", ls[i].text),
        ));
    }
    Ok(node)
}

fn is_seq_item(t: &str) -> bool {
    t == "-" || t.starts_with("- ")
}

/// A `key: value` line (not a flow collection that happens to contain ": ").
fn is_map_entry(t: &str) -> bool {
    !t.starts_with('{') && !t.starts_with('[') && split_key(t).is_some()
}

/// Splits `key: rest` at the first `:` followed by a space or the end, outside quotes.
fn split_key(t: &str) -> Option<(String, &str)> {
    let b = t.as_bytes();
    let (key_end, after) = if b.first() == Some(&b'"') || b.first() == Some(&b'\'') {
        let q = b[0];
        let mut j = 1;
        while j < b.len() && b[j] != q {
            if q == b'"' && b[j] == b'\\' {
                j += 1;
            }
            j += 1;
        }
        if j >= b.len() {
            return None;
        }
        let rest = &t[j + 1..];
        if !rest.starts_with(':') {
            return None;
        }
        (j + 1, j + 2)
    } else {
        let mut found = None;
        for (j, &c) in b.iter().enumerate() {
            if c == b':' && (j + 1 == b.len() || b[j + 1] == b' ') {
                found = Some(j);
                break;
            }
        }
        let j = found?;
        (j, j + 1)
    };
    let key_raw = t[..key_end].trim();
    let key = match scalar(key_raw, 0) {
        Ok(Value::Str(s)) => s,
        _ => key_raw.to_string(),
    };
    Some((key, t[after.min(t.len())..].trim()))
}

fn block(ls: &mut [Line], i: &mut usize, indent: usize, depth: usize) -> Result<Node> {
    if depth > 64 {
        return Err(err(ls[*i].no, "nesting too deep"));
    }
    let first = ls[*i].clone();
    if is_seq_item(&first.text) {
        return seq(ls, i, indent, depth);
    }
    if is_map_entry(&first.text) {
        return map(ls, i, indent, depth);
    }
    *i += 1;
    Ok(Node {
        line: first.no,
        value: scalar(&first.text, first.no)?,
    })
}

fn seq(ls: &mut [Line], i: &mut usize, indent: usize, depth: usize) -> Result<Node> {
    let line = ls[*i].no;
    let mut items = Vec::new();
    while *i < ls.len() && ls[*i].indent == indent && is_seq_item(&ls[*i].text) {
        let cur = ls[*i].clone();
        let rest = cur.text[1..].trim_start();
        if rest.is_empty() {
            *i += 1;
            if *i < ls.len() && ls[*i].indent > indent {
                let child = ls[*i].indent;
                items.push(block(ls, i, child, depth + 1)?);
            } else {
                items.push(Node {
                    line: cur.no,
                    value: Value::Null,
                });
            }
            continue;
        }
        // "- key: value" starts a mapping indented at the item's content.
        let offset = cur.text.len() - rest.len();
        if is_seq_item(rest) || is_map_entry(rest) {
            ls[*i].indent = indent + offset;
            ls[*i].text = rest.to_string();
            let child = indent + offset;
            items.push(block(ls, i, child, depth + 1)?);
        } else {
            *i += 1;
            items.push(Node {
                line: cur.no,
                value: scalar(rest, cur.no)?,
            });
        }
    }
    Ok(Node {
        line,
        value: Value::Seq(items),
    })
}

fn map(ls: &mut [Line], i: &mut usize, indent: usize, depth: usize) -> Result<Node> {
    let line = ls[*i].no;
    let mut entries: Vec<(String, Node)> = Vec::new();
    while *i < ls.len() && ls[*i].indent == indent && !is_seq_item(&ls[*i].text) {
        let cur = ls[*i].clone();
        let Some((key, rest)) = split_key(&cur.text) else {
            return Err(err(
                cur.no,
                format!("expected \"key: value\", got {:?}", cur.text),
            ));
        };
        if entries.iter().any(|(k, _)| *k == key) {
            return Err(err(cur.no, format!("duplicate key {key:?}")));
        }
        *i += 1;
        let value = if !rest.is_empty() {
            Node {
                line: cur.no,
                value: scalar(rest, cur.no)?,
            }
        } else if *i < ls.len() && ls[*i].indent > indent {
            let child = ls[*i].indent;
            block(ls, i, child, depth + 1)?
        } else if *i < ls.len() && ls[*i].indent == indent && is_seq_item(&ls[*i].text) {
            // A sequence may sit at its key's indentation.
            seq(ls, i, indent, depth + 1)?
        } else {
            Node {
                line: cur.no,
                value: Value::Null,
            }
        };
        entries.push((key, value));
    }
    if *i < ls.len() && ls[*i].indent > indent {
        return Err(err(
            ls[*i].no,
            format!("unexpected indentation of {:?}", ls[*i].text),
        ));
    }
    Ok(Node {
        line,
        value: Value::Map(entries),
    })
}

/// Parses a one-line scalar or flow collection.
fn scalar(t: &str, line: usize) -> Result<Value> {
    let t = t.trim();
    match t.chars().next() {
        None => Ok(Value::Null),
        Some('"') => {
            let mut out = String::new();
            let mut chars = t[1..].chars();
            loop {
                match chars.next() {
                    None => return Err(err(line, "unterminated double-quoted string")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some('r') => out.push('\r'),
                        Some('0') => out.push('\0'),
                        Some('"') => out.push('"'),
                        Some('\\') => out.push('\\'),
                        Some('/') => out.push('/'),
                        Some('u') => {
                            let hex: String = chars.by_ref().take(4).collect();
                            let c = u32::from_str_radix(&hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| err(line, format!("bad escape \\u{hex}")))?;
                            out.push(c);
                        }
                        other => {
                            return Err(err(
                                line,
                                format!("unsupported escape \\{}", other.unwrap_or(' ')),
                            ))
                        }
                    },
                    Some(c) => out.push(c),
                }
            }
            if !chars.as_str().trim().is_empty() {
                return Err(err(
                    line,
                    format!(
                        "unexpected text after a quoted string: {:?}",
                        chars.as_str()
                    ),
                ));
            }
            Ok(Value::Str(out))
        }
        Some('\'') => {
            let body = &t[1..];
            let mut out = String::new();
            let mut rest = body;
            loop {
                match rest.find('\'') {
                    None => return Err(err(line, "unterminated single-quoted string")),
                    Some(j) => {
                        out.push_str(&rest[..j]);
                        if rest[j + 1..].starts_with('\'') {
                            out.push('\'');
                            rest = &rest[j + 2..];
                        } else {
                            if !rest[j + 1..].trim().is_empty() {
                                return Err(err(
                                    line,
                                    format!(
                                        "unexpected text after a quoted string: {:?}",
                                        &rest[j + 1..]
                                    ),
                                ));
                            }
                            break;
                        }
                    }
                }
            }
            Ok(Value::Str(out))
        }
        Some('[') => {
            let mut items = Vec::new();
            for part in flow_parts(t, '[', ']', "sequences", line)? {
                items.push(Node {
                    line,
                    value: scalar(part, line)?,
                });
            }
            Ok(Value::Seq(items))
        }
        Some('{') => {
            let mut entries = Vec::new();
            for part in flow_parts(t, '{', '}', "mappings", line)? {
                let (k, v) = split_key(part.trim())
                    .or_else(|| part.trim().strip_suffix(':').map(|k| (k.to_string(), "")))
                    .ok_or_else(|| {
                        err(
                            line,
                            format!("expected key: value in {{...}}, got {part:?}"),
                        )
                    })?;
                entries.push((
                    k,
                    Node {
                        line,
                        value: scalar(v, line)?,
                    },
                ));
            }
            Ok(Value::Map(entries))
        }
        Some('&') | Some('*') => Err(err(line, "anchors and aliases are not supported")),
        Some('!') => Err(err(line, "tags are not supported")),
        Some('|') | Some('>') => Err(err(
            line,
            "block scalars (| and >) are not supported; use a quoted string",
        )),
        _ => {
            if t == "~" || t == "null" || t == "Null" || t == "NULL" {
                Ok(Value::Null)
            } else {
                Ok(Value::Str(t.to_string()))
            }
        }
    }
}

/// The non-blank parts of a flow collection `t` (`[...]` or `{...}`, which must fit on its
/// line), split at its top-level commas.
fn flow_parts<'a>(
    t: &'a str,
    open: char,
    close: char,
    what: &str,
    line: usize,
) -> Result<Vec<&'a str>> {
    let inner = t
        .strip_prefix(open)
        .and_then(|s| s.strip_suffix(close))
        .ok_or_else(|| {
            err(
                line,
                format!("flow {what} must fit on one line: missing {close}"),
            )
        })?;
    let mut parts = split_flow(inner);
    parts.retain(|p| !p.trim().is_empty());
    Ok(parts)
}

/// Splits flow content at top-level commas (respecting quotes and nesting).
fn split_flow(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut single, mut double, mut start) = (0i32, false, false, 0);
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'\\' if double => i += 1,
            b'[' | b'{' if !single && !double => depth += 1,
            b']' | b'}' if !single && !double => depth -= 1,
            b',' if depth == 0 && !single && !double => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&s[start.min(s.len())..]);
    parts
}

/// Expands `$VAR` and `${VAR}` from the environment (unset variables become empty), as
/// Go's `os.ExpandEnv` does; `$$` is a literal `$`.
pub(crate) fn expand_env(s: &str, get: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' || i + 1 >= b.len() {
            let c = s[i..].chars().next().unwrap_or('$');
            out.push(c);
            i += c.len_utf8();
            continue;
        }
        if b[i + 1] == b'$' {
            out.push('$');
            i += 2;
        } else if b[i + 1] == b'{' {
            match s[i + 2..].find('}') {
                Some(j) => {
                    out.push_str(&get(&s[i + 2..i + 2 + j]).unwrap_or_default());
                    i += j + 3;
                }
                None => {
                    out.push('$');
                    i += 1;
                }
            }
        } else {
            let start = i + 1;
            let mut j = start;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            if j == start {
                out.push('$');
                i += 1;
            } else {
                out.push_str(&get(&s[start..j]).unwrap_or_default());
                i = j;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    fn get<'a>(n: &'a Node, key: &str) -> &'a Node {
        match &n.value {
            Value::Map(m) => {
                &m.iter()
                    .find(|(k, _)| k == key)
                    .unwrap_or_else(|| panic!("no {key} in {m:?}"))
                    .1
            }
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn litestream_config() {
        let doc = r#"
# Litestream config
addr: ":9090"
dbs:
  - path: /data/app.db   # the app
    monitor-interval: 500ms
    replica:
      url: s3://bkt/app
      sync-interval: 1s
  - path: '/data/other.db'
    replicas:
    - type: file
      path: "/backups/other"
levels:
  - interval: 30s
  - {interval: 5m}
tags: [a, "b c", 'd']
empty:
nothing: ~
"#;
        let n = parse(doc).unwrap();
        assert_eq!(get(&n, "addr").value, s(":9090"));
        let dbs = match &get(&n, "dbs").value {
            Value::Seq(v) => v,
            _ => panic!(),
        };
        assert_eq!(dbs.len(), 2);
        assert_eq!(get(&dbs[0], "path").value, s("/data/app.db"));
        assert_eq!(get(&dbs[0], "path").line, 5);
        assert_eq!(get(get(&dbs[0], "replica"), "url").value, s("s3://bkt/app"));
        assert_eq!(get(&dbs[1], "path").value, s("/data/other.db"));
        let reps = match &get(&dbs[1], "replicas").value {
            Value::Seq(v) => v,
            _ => panic!(),
        };
        assert_eq!(get(&reps[0], "path").value, s("/backups/other"));
        let levels = match &get(&n, "levels").value {
            Value::Seq(v) => v,
            _ => panic!(),
        };
        assert_eq!(get(&levels[1], "interval").value, s("5m"));
        assert_eq!(
            get(&n, "tags").value,
            Value::Seq(vec![
                Node {
                    line: 17,
                    value: s("a")
                },
                Node {
                    line: 17,
                    value: s("b c")
                },
                Node {
                    line: 17,
                    value: s("d")
                }
            ])
        );
        assert_eq!(get(&n, "empty").value, Value::Null);
        assert_eq!(get(&n, "nothing").value, Value::Null);
    }

    #[test]
    fn errors_name_the_line() {
        for (doc, want) in [
            ("a: 1\na: 2\n", "line 2"),
            ("a:\n\tb: 1\n", "line 2"),
            ("a: \"x\n", "line 1"),
            ("a: &x 1\n", "anchors"),
            ("a: |\n  x\n", "block scalars"),
            ("a: 1\n  b: 2\n", "line 2"),
            ("a: [1, 2\n", "line 1"),
        ] {
            let e = parse(doc).unwrap_err().to_string();
            assert!(e.contains(want), "{doc:?}: {e}");
        }
    }

    #[test]
    fn quotes_and_comments() {
        let n = parse("a: 'it''s # not a comment'\nb: \"tab\\there\" # comment\nc: x#y\n").unwrap();
        assert_eq!(get(&n, "a").value, s("it's # not a comment"));
        assert_eq!(get(&n, "b").value, s("tab\there"));
        assert_eq!(get(&n, "c").value, s("x#y"));
    }

    #[test]
    fn mutated_documents_never_panic() {
        let base = "dbs:\n  - path: /a\n    replicas:\n      - url: 's3://b/p'\n        sync-interval: \"1s\"\n      - {type: file, path: [x, y]}\nlevels:\n- interval: 1s\n";
        let bytes = base.as_bytes();
        let mut x: u64 = 88172645463325252;
        for _ in 0..20_000 {
            let mut doc = bytes.to_vec();
            for _ in 0..(1 + x % 4) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % doc.len().max(1) as u64) as usize;
                match x % 3 {
                    0 => {
                        let pool = b" -:{}[]'\"#\n\tab";
                        doc[i] = pool[(x >> 8) as usize % pool.len()];
                    }
                    1 => {
                        doc.remove(i);
                    }
                    _ => doc.insert(i, b" -:\n"[(x >> 8) as usize % 4]),
                }
                if doc.is_empty() {
                    break;
                }
            }
            if let Ok(s) = std::str::from_utf8(&doc) {
                let _ = parse(s);
            }
        }
    }

    #[test]
    fn env_expansion() {
        let env = |k: &str| match k {
            "HOME" => Some("/root".to_string()),
            "B" => Some("bkt".to_string()),
            _ => None,
        };
        assert_eq!(
            expand_env("$HOME/x ${B}-y $NOPE $$ $ ${", &env),
            "/root/x bkt-y  $ $ ${"
        );
    }
}
