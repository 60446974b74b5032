//! An entry's `fetched_at` in JSON, written and read without chrono's
//! formatter and parser: every entry of a run goes through both twice (the
//! run's spill, then the manifest), and chrono wrote a character at a time
//! through serde_json's escaping, a third of the cost of an entry.
//!
//! The text is exactly chrono's: RFC 3339 in UTC with `Z`, and 0, 3, 6 or
//! 9 digits of fraction (as few as show every non-zero digit). Anything
//! else (a year past 9999, a leap second, another offset when read) goes
//! through chrono as before.

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// Serialises like chrono's `Serialize` for `Option<DateTime<Utc>>`.
pub(super) fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    let Some(t) = t else { return s.serialize_none() };
    let mut buf = [0u8; 32];
    match write(t, &mut buf) {
        Some(n) => s.serialize_some(std::str::from_utf8(&buf[..n]).expect("ASCII digits")),
        None => s.serialize_some(t),
    }
}

/// Reads what [`serialize`] (or chrono) wrote.
pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    Option::<Time>::deserialize(d).map(|t| t.map(|t| t.0))
}

/// A time read from a string, seen in place (no copy of it is made).
struct Time(DateTime<Utc>);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Time;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an RFC 3339 date and time")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Time, E> {
                match parse(s) {
                    Some(t) => Ok(Time(t)),
                    None => s.parse::<DateTime<Utc>>().map(Time).map_err(E::custom),
                }
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// Writes `n` as `width` decimal digits (zero-padded, high digits cut) at
/// `out[at..]`; returns where they end. Also the index's HTTP dates.
pub(crate) fn digits(out: &mut [u8], at: usize, n: u32, width: usize) -> usize {
    let mut n = n;
    for i in (0..width).rev() {
        out[at + i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    at + width
}

/// `t` as chrono writes it, into `out`; its length, or `None` where chrono
/// must write it (a year past 9999, a leap second).
fn write(t: &DateTime<Utc>, out: &mut [u8; 32]) -> Option<usize> {
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let nanos = t.nanosecond();
    if nanos >= 1_000_000_000 {
        return None;
    }
    let mut at = digits(out, 0, year, 4);
    for (sep, n) in [(b'-', t.month()), (b'-', t.day()), (b'T', t.hour()), (b':', t.minute()), (b':', t.second())] {
        out[at] = sep;
        at = digits(out, at + 1, n, 2);
    }
    let (frac, width) = match nanos {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
        n if n % 1_000 == 0 => (n / 1_000, 6),
        n => (n, 9),
    };
    if width > 0 {
        out[at] = b'.';
        at = digits(out, at + 1, frac, width);
    }
    out[at] = b'Z';
    Some(at + 1)
}

/// Reads exactly what [`write`] writes; `None` for anything else.
fn parse(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = b.get(from..from + len)?;
        part.iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if b.len() < 20 || seps.iter().any(|&(i, c)| b[i] != c) || b[b.len() - 1] != b'Z' {
        return None;
    }
    let nanos = match b.len() - 20 {
        0 => 0,
        4 if b[19] == b'.' => num(20, 3)? * 1_000_000,
        7 if b[19] == b'.' => num(20, 6)? * 1_000,
        10 if b[19] == b'.' => num(20, 9)?,
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(i32::try_from(num(0, 4)?).ok()?, num(5, 2)?, num(8, 2)?)?;
    let time = date.and_hms_nano_opt(num(11, 2)?, num(14, 2)?, num(17, 2)?, nanos)?;
    Some(time.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Ours(#[serde(serialize_with = "serialize", deserialize_with = "deserialize")] Option<DateTime<Utc>>);

    fn times() -> Vec<DateTime<Utc>> {
        let mut v = Vec::new();
        for secs in [0, 1, 59, 951_782_400, 1_764_000_000, 1_796_119_199, 253_402_300_799] {
            for nanos in [0, 1, 7_000, 120_000_000, 123_456_789, 999_999_999, 5_000_000, 100] {
                v.push(DateTime::from_timestamp(secs, nanos).unwrap());
            }
        }
        v
    }

    #[test]
    fn writes_and_reads_what_chrono_writes_and_reads() {
        for t in times() {
            let chrono = serde_json::to_string(&Some(t)).unwrap();
            let ours = serde_json::to_string(&Ours(Some(t))).unwrap();
            assert_eq!(ours, chrono, "{t:?}");
            assert_eq!(serde_json::from_str::<Ours>(&chrono).unwrap(), Ours(Some(t)));
            let mut buf = [0u8; 32];
            let n = write(&t, &mut buf).unwrap();
            assert_eq!(parse(std::str::from_utf8(&buf[..n]).unwrap()), Some(t), "{chrono}");
        }
        assert_eq!(serde_json::to_string(&Ours(None)).unwrap(), "null");
        assert_eq!(serde_json::from_str::<Ours>("null").unwrap(), Ours(None));
    }

    #[test]
    fn what_it_does_not_write_goes_through_chrono() {
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        let far = DateTime::from_timestamp(253_402_300_800, 0).unwrap();
        for t in [leap, far] {
            assert_eq!(serde_json::to_string(&Ours(Some(t))).unwrap(), serde_json::to_string(&Some(t)).unwrap());
            let back: Ours = serde_json::from_str(&serde_json::to_string(&Some(t)).unwrap()).unwrap();
            assert_eq!(back, Ours(Some(t)));
        }
        // Other offsets and precisions, as a format 1 manifest or a hand may hold.
        for (text, want) in [
            ("\"2026-12-04T10:00:00+01:00\"", "2026-12-04T09:00:00Z"),
            ("\"2026-12-04T10:00:00.5Z\"", "2026-12-04T10:00:00.500Z"),
        ] {
            let back: Ours = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), format!("\"{want}\""));
        }
        for bad in
            ["\"2026-13-04T10:00:00Z\"", "\"2026-12-04T10:00:00.12Z\"", "\"yesterday\"", "\"2026-02-30T00:00:00Z\""]
        {
            let ok = serde_json::from_str::<Ours>(bad).is_ok();
            assert_eq!(ok, serde_json::from_str::<Option<DateTime<Utc>>>(bad).is_ok(), "{bad}");
        }
    }
}
