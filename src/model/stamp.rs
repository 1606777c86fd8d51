//! Compact observedAt: most clients send `YYYY-MM-DDTHH:MM:SS.mmmZ`, which is exactly the text
//! its milliseconds format back to, so an attribute can keep 6 bytes inline instead of a boxed
//! string (and a side struct to hold it). Other spellings are kept as text.

use std::ops::Deref;

/// Milliseconds are stored biased by 2^47 in 48 bits: years 0000 to 6429.
const BIAS: i64 = 1 << 47;
const LIMIT: i64 = 1 << 48;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The text `ms` renders as (`%Y-%m-%dT%H:%M:%S%.3fZ`), for years 0000 to 9999.
pub fn format(ms: i64) -> Option<[u8; 24]> {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let (h, mi, s, milli) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, mo);
    put(8, 2, d);
    put(11, 2, h);
    put(14, 2, mi);
    put(17, 2, s);
    put(20, 3, milli);
    Some(out)
}

/// The milliseconds of `text` when it is exactly what [`format`] writes for them.
pub fn parse_exact(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 24 {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        b[from..to].iter().try_fold(0i64, |acc, c| c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0')))
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, s, milli) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let ms = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60_000 + s * 1000 + milli;
    // The separators, and dates such as February 30, fail the round trip.
    (format(ms)? == *b).then_some(ms)
}

/// An observedAt packed into 48 bits plus a presence flag, 7 bytes aligned to 1: beside an
/// attribute's one-byte kind it fills what would be padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Packed {
    set: bool,
    bits: [u8; 6],
}

impl Packed {
    pub const NONE: Packed = Packed { set: false, bits: [0; 6] };

    /// The packed form of `text`, when it has one.
    pub fn of(text: &str) -> Option<Packed> {
        let ms = parse_exact(text)?;
        let u = ms.checked_add(BIAS).filter(|u| (0..LIMIT).contains(u))?;
        let le = u.to_le_bytes();
        Some(Packed { set: true, bits: [le[0], le[1], le[2], le[3], le[4], le[5]] })
    }

    pub fn is_set(self) -> bool {
        self.set
    }

    pub fn millis(self) -> Option<i64> {
        let b = self.bits;
        self.set.then(|| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], 0, 0]) - BIAS)
    }

    /// The text it stands for.
    pub fn stamp(self) -> Option<Stamp<'static>> {
        Some(Stamp::Formatted(format(self.millis()?)?))
    }
}

/// An observedAt as text: borrowed from the attribute, or formatted from its packed form
/// (on the stack).
#[derive(Clone, Copy)]
pub enum Stamp<'a> {
    Text(&'a str),
    Formatted([u8; 24]),
}

impl<'a> Stamp<'a> {
    pub fn as_str(&self) -> &str {
        match self {
            Stamp::Text(s) => s,
            // Only ASCII digits and separators are ever written.
            Stamp::Formatted(b) => std::str::from_utf8(b).unwrap_or_default(),
        }
    }
}

impl Deref for Stamp<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Stamp<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Stamp<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Stamp<'_> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Stamp<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for Stamp<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn packs_only_what_round_trips() {
        for t in [
            "2026-01-15T10:00:00.000Z",
            "1970-01-01T00:00:00.000Z",
            "0000-01-01T00:00:00.000Z",
            "2024-02-29T23:59:59.999Z",
        ] {
            let p = Packed::of(t).unwrap();
            assert_eq!(Stamp::Formatted(format(p.millis().unwrap()).unwrap()).as_str(), t);
        }
        for t in [
            "2026-01-15T10:00:00Z",
            "2026-01-15T10:00:00.000+01:00",
            "2026-01-15T10:00:00.0000Z",
            "2023-02-29T00:00:00.000Z",
            "2026-13-15T10:00:00.000Z",
            "2026-01-15 10:00:00.000Z",
            "9999-12-31T23:59:59.999Z",
            "yesterday",
        ] {
            assert!(Packed::of(t).is_none(), "{t}");
        }
    }

    proptest! {
        /// The formatter agrees with chrono wherever a packed stamp can be.
        #[test]
        fn format_agrees_with_chrono(ms in -(1i64 << 47)..(1i64 << 47)) {
            if let Some(b) = format(ms) {
                let text = std::str::from_utf8(&b).unwrap().to_owned();
                prop_assert_eq!(&text, &crate::model::format_millis(ms));
                prop_assert_eq!(Packed::of(&text).and_then(Packed::millis), Some(ms));
            }
        }
    }
}
