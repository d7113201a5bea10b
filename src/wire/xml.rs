//! Just enough XML for S3 responses: find elements by name and read their text. S3's
//! response documents are flat and machine-generated; no attributes, namespaces or
//! nesting beyond what the callers walk are needed. Malformed input yields nothing (or
//! an error from the caller), never a panic.

/// Every `<name>...</name>` element's inner content, in document order (top-level matches
/// only: an element nested inside another match is part of that match's content).
pub(crate) fn elements<'a>(doc: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}");
    let close = format!("</{name}>");
    let mut out = Vec::new();
    let mut rest = doc;
    while let Some(start) = rest.find(&open) {
        // `<name>`, `<name attr...>` or `<name/>`, not `<names>`.
        let after_name = start + open.len();
        match rest.as_bytes().get(after_name) {
            Some(b'>') | Some(b' ') | Some(b'/') | Some(b'\t') | Some(b'\n') | Some(b'\r') => {}
            _ => {
                rest = &rest[after_name..];
                continue;
            }
        }
        let after_tag = match rest[start..].find('>') {
            Some(i) => start + i + 1,
            None => break,
        };
        if rest[..after_tag].ends_with("/>") {
            out.push("");
            rest = &rest[after_tag..];
            continue;
        }
        let Some(end) = rest[after_tag..].find(&close) else {
            break;
        };
        out.push(&rest[after_tag..after_tag + end]);
        rest = &rest[after_tag + end + close.len()..];
    }
    out
}

/// The unescaped text of the first `<name>` element.
pub(crate) fn text(doc: &str, name: &str) -> Option<String> {
    elements(doc, name).first().map(|s| unescape(s))
}

/// Replaces the five predefined entities and numeric character references.
pub(crate) fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(semi) = rest.find(';').filter(|&j| j <= 12) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let ent = &rest[1..semi];
        let decoded = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ if ent.starts_with("#x") || ent.starts_with("#X") => {
                u32::from_str_radix(&ent[2..], 16)
                    .ok()
                    .and_then(char::from_u32)
            }
            _ if ent.starts_with('#') => ent[1..].parse::<u32>().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for an XML element.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_objects_v2() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><IsTruncated>true</IsTruncated>
<Contents><Key>db/0000/0000000000000001-0000000000000001.ltx</Key><LastModified>2026-11-24T11:10:12.640Z</LastModified><Size>576</Size></Contents>
<Contents><Key>a&amp;b</Key><Size>1</Size></Contents>
<NextContinuationToken>tok&lt;1&gt;</NextContinuationToken></ListBucketResult>"#;
        let c = elements(doc, "Contents");
        assert_eq!(c.len(), 2);
        assert_eq!(text(c[0], "Size").as_deref(), Some("576"));
        assert_eq!(text(c[1], "Key").as_deref(), Some("a&b"));
        assert_eq!(text(doc, "IsTruncated").as_deref(), Some("true"));
        assert_eq!(
            text(doc, "NextContinuationToken").as_deref(),
            Some("tok<1>")
        );
        assert_eq!(elements("<A/><A>x</A><AB>y</AB>", "A"), vec!["", "x"]);
        assert_eq!(unescape("&#65;&#x42;&bogus;&"), "AB&bogus;&");
        assert_eq!(escape("<a&'\">"), "&lt;a&amp;&apos;&quot;&gt;");
        // Truncated documents give what is complete.
        assert_eq!(elements("<A>1</A><A>2", "A"), vec!["1"]);
    }
}
