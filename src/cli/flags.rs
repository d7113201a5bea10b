//! Go-style command-line flags (`-name value`, `-name=value`, `--name`, boolean `-name`),
//! the way Litestream's commands take them. Flags may also follow positional arguments.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// One flag a command accepts.
#[derive(Clone, Copy)]
pub(crate) struct Flag {
    pub name: &'static str,
    /// Placeholder for the value, or `None` for a boolean flag.
    pub value: Option<&'static str>,
    pub help: &'static str,
}

/// Parsed arguments.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    values: HashMap<&'static str, String>,
    pub positional: Vec<String>,
    pub help: bool,
}

impl Parsed {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|s| s.as_str())
    }

    pub fn bool(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true"))
    }
}

fn parse_bool(name: &str, v: &str) -> Result<&'static str> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok("true"),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok("false"),
        _ => Err(Error::Invalid(format!(
            "invalid boolean value {v:?} for flag -{name}"
        ))),
    }
}

/// Parses `args` against `spec`.
pub(crate) fn parse(args: &[String], spec: &[Flag]) -> Result<Parsed> {
    let mut out = Parsed::default();
    let mut i = 0;
    let mut only_positional = false;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if only_positional || !a.starts_with('-') || a == "-" {
            out.positional.push(a.clone());
            continue;
        }
        if a == "--" {
            only_positional = true;
            continue;
        }
        let body = a.trim_start_matches('-');
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if name == "h" || name == "help" {
            out.help = true;
            continue;
        }
        let Some(flag) = spec.iter().find(|f| f.name == name) else {
            return Err(Error::Invalid(format!(
                "flag provided but not defined: -{name}"
            )));
        };
        let value = match (flag.value, inline) {
            (None, None) => "true".to_string(),
            (None, Some(v)) => parse_bool(name, &v)?.to_string(),
            (Some(_), Some(v)) => v,
            (Some(_), None) => {
                let Some(v) = args.get(i) else {
                    return Err(Error::Invalid(format!("flag needs an argument: -{name}")));
                };
                i += 1;
                v.clone()
            }
        };
        out.values.insert(flag.name, value);
    }
    Ok(out)
}

/// Formats the flag list for `-h`.
pub(crate) fn usage(spec: &[Flag]) -> String {
    let mut s = String::new();
    for f in spec {
        match f.value {
            Some(v) => s.push_str(&format!("\t-{} {v}\n", f.name)),
            None => s.push_str(&format!("\t-{}\n", f.name)),
        }
        for line in f.help.lines() {
            s.push_str(&format!("\t    {line}\n"));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &[Flag] = &[
        Flag {
            name: "o",
            value: Some("PATH"),
            help: "",
        },
        Flag {
            name: "force",
            value: None,
            help: "",
        },
    ];

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn go_style() {
        let p = parse(&v(&["-o", "x", "--force", "url"]), SPEC).unwrap();
        assert_eq!(p.get("o"), Some("x"));
        assert!(p.bool("force"));
        assert_eq!(p.positional, v(&["url"]));
        let p = parse(&v(&["url", "-o=y", "-force=false"]), SPEC).unwrap();
        assert_eq!(p.get("o"), Some("y"));
        assert!(!p.bool("force"));
        assert!(parse(&v(&["-nope"]), SPEC).is_err());
        assert!(parse(&v(&["-o"]), SPEC).is_err());
        assert!(parse(&v(&["-h"]), SPEC).unwrap().help);
        assert_eq!(
            parse(&v(&["--", "-o"]), SPEC).unwrap().positional,
            v(&["-o"])
        );
    }
}
