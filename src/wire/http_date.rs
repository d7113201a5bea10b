//! HTTP dates (RFC 1123, `Tue, 24 Nov 2026 20:41:05 GMT`): Azure's `x-ms-date` and
//! `Creation-Time`, WebDAV's `getlastmodified`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::time::{civil_from_days, days_from_civil};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Tue, 24 Nov 2026 20:41:00 GMT` (whole seconds; times before 1970 format as 1970).
pub(crate) fn format(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = MONTHS[(m - 1) as usize];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses an RFC 1123 date (the month name in any case); `None` if it is not one.
pub(crate) fn parse(s: &str) -> Option<SystemTime> {
    let rest = s.trim().split_once(", ")?.1;
    let mut it = rest.split_whitespace();
    let day: u32 = it.next()?.parse().ok()?;
    let mon = it.next()?;
    let year: i64 = it.next()?.parse().ok()?;
    let hms: Vec<u64> = it
        .next()?
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if it.next()? != "GMT" || hms.len() != 3 || hms[0] > 23 || hms[1] > 59 || hms[2] > 60 {
        return None;
    }
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(mon))? as u32 + 1;
    if !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + (hms[0] * 3600 + hms[1] * 60 + hms[2]) as i64;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            format(crate::time::parse_rfc3339("2026-11-24T20:41:05Z").unwrap()),
            "Tue, 24 Nov 2026 20:41:05 GMT"
        );
    }

    #[test]
    fn parses_what_it_formats_and_nothing_else() {
        for t in [
            "1970-01-01T00:00:00Z",
            "2026-11-24T20:41:05Z",
            "2000-02-29T23:59:59Z",
        ] {
            let t = crate::time::parse_rfc3339(t).unwrap();
            assert_eq!(parse(&format(t)), Some(t));
        }
        assert_eq!(
            parse("tue, 24 nov 2026 20:41:05 GMT"),
            crate::time::parse_rfc3339("2026-11-24T20:41:05Z").ok()
        );
        for bad in [
            "",
            "yesterday",
            "Tue, 24 Nov 2026 20:41:05",
            "Tue, 24 Foo 2026 20:41:05 GMT",
            "Tue, 32 Nov 2026 20:41:05 GMT",
            "Tue, 24 Nov 2026 24:41:05 GMT",
            "Tue, 24 Nov 2026 20:41 GMT",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
