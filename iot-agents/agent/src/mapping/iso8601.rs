//! ISO 8601 as iotagent-node-lib accepts a `TimeInstant` (moment's strict `ISO_8601` parsing):
//! anything else is refused with `BAD_TIMESTAMP` when timestamps are on.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde_json::Value;

/// A `TimeInstant` as strict ISO 8601, as moment's `ISO_8601` strict parsing accepts it: a date
/// (`YYYY-MM-DD`), optionally a time (`T` or space, `hh`, `hh:mm`, `hh:mm:ss`, fractions) and an
/// offset (`Z`, `±hh`, `±hhmm`, `±hh:mm`; none means UTC here), or the basic format
/// `YYYYMMDDThhmmss[Z]`.
pub fn strict_iso(v: &Value) -> Option<DateTime<Utc>> {
    let s = v.as_str()?.trim();
    let (date, rest) = if s.len() >= 10 && s.as_bytes()[4] == b'-' {
        (NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok()?, s.get(10..)?)
    } else if s.len() >= 8 && s.as_bytes().iter().take(8).all(u8::is_ascii_digit) {
        (NaiveDate::parse_from_str(s.get(..8)?, "%Y%m%d").ok()?, s.get(8..)?)
    } else {
        return None;
    };
    if rest.is_empty() {
        return date.and_hms_opt(0, 0, 0).map(|d| d.and_utc());
    }
    let rest = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' '))?;
    let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (time, zone) = rest.split_at(zone_at);
    let time = parse_time(time)?;
    let offset_secs = match zone {
        "" | "Z" | "z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
            if !(digits.len() == 2 || digits.len() == 4) || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let h: i32 = digits.get(..2)?.parse().ok()?;
            let m: i32 = digits.get(2..).filter(|m| !m.is_empty()).map(str::parse).transpose().ok()?.unwrap_or(0);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    let local = date.and_time(time);
    let offset = chrono::FixedOffset::east_opt(offset_secs)?;
    local.and_local_timezone(offset).single().map(|d| d.with_timezone(&Utc))
}

/// `hh`, `hh:mm`, `hh:mm:ss`, `hh:mm:ss.fff` (or `,fff`), and the basic `hhmm`, `hhmmss`.
fn parse_time(t: &str) -> Option<NaiveTime> {
    let (main, frac) = match t.find(['.', ',']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let digits: String = main.chars().filter(|c| *c != ':').collect();
    let extended = main.contains(':');
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 2 | 4 | 6) {
        return None;
    }
    if extended && main.len() != digits.len() + digits.len() / 2 - 1 {
        return None;
    }
    let h: u32 = digits.get(..2)?.parse().ok()?;
    let m: u32 = digits.get(2..4).map(str::parse).transpose().ok()?.unwrap_or(0);
    let s: u32 = digits.get(4..6).map(str::parse).transpose().ok()?.unwrap_or(0);
    let nanos = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) && digits.len() == 6 => {
            let mut padded = f.chars().take(9).collect::<String>();
            while padded.len() < 9 {
                padded.push('0');
            }
            padded.parse().ok()?
        }
        Some(_) => return None,
    };
    NaiveTime::from_hms_nano_opt(h, m, s, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::js;
    use serde_json::json;

    #[test]
    fn strict_iso_8601() {
        let iso = |s: &str| strict_iso(&json!(s)).map(|d| js::iso(&d));
        assert_eq!(iso("2024-01-02T03:04:05Z").as_deref(), Some("2024-01-02T03:04:05.000Z"));
        assert_eq!(iso("2024-01-02T03:04:05.123+02:00").as_deref(), Some("2024-01-02T01:04:05.123Z"));
        assert_eq!(iso("2024-01-02T03:04:05,5-0130").as_deref(), Some("2024-01-02T04:34:05.500Z"));
        assert_eq!(iso("2024-01-02T03:04+01").as_deref(), Some("2024-01-02T02:04:00.000Z"));
        assert_eq!(iso("2024-01-02 03:04:05").as_deref(), Some("2024-01-02T03:04:05.000Z"));
        assert_eq!(iso("2024-01-02T03").as_deref(), Some("2024-01-02T03:00:00.000Z"));
        assert_eq!(iso("2024-01-02").as_deref(), Some("2024-01-02T00:00:00.000Z"));
        assert_eq!(iso("20240102T030405Z").as_deref(), Some("2024-01-02T03:04:05.000Z"));
        for bad in [
            json!("Tue, 1 Jul 2003 10:52:37 +0200"),
            json!(1_700_000_000),
            json!("2024-13-01"),
            json!("24-01-02"),
            json!("2024-01-02T25:00:00Z"),
            json!("2024-01-02T03:4:05Z"),
            json!("2024-01-02T03:04:05+2"),
            json!("2024-01-02X03:04:05"),
            json!("2024-01-02T03:04:05.Z"),
            json!("yesterday"),
        ] {
            assert!(strict_iso(&bad).is_none(), "{bad}");
        }
    }
}
