//! Human durations as written in the configuration and on the command line:
//! `30d`, `12h`, `1w`, `1y`, `90s`, and combinations such as `1d12h`.
//!
//! Units: `s` seconds, `m` minutes, `h` hours, `d` days, `w` weeks (7 days),
//! `y` years (365 days). Months are not offered: their length varies, and
//! `30d` says what is meant. Parsing only; nothing here reads a clock.

use chrono::Duration;

/// Why a duration does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{text}`: {reason} (write a number and a unit s, m, h, d, w or y, e.g. `30d` or `1d12h`)")]
pub struct DurationError {
    /// The text given.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

const UNITS: [(char, i64); 6] =
    [('y', 365 * 86_400), ('w', 7 * 86_400), ('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Parses `30d`, `1d12h`, `0s`. A bare number is refused: the unit is not obvious.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError { text: text.to_string(), reason };
    let s = text.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let Some(&(_, secs)) = UNITS.iter().find(|(u, _)| *u == c.to_ascii_lowercase()) else {
            return Err(err("unknown unit"));
        };
        if digits.is_empty() {
            return Err(err("a unit without a number"));
        }
        let n: i64 = digits.parse().map_err(|_| err("number too large"))?;
        total = n.checked_mul(secs).and_then(|v| total.checked_add(v)).ok_or_else(|| err("too long"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(err("a number without a unit"));
    }
    // chrono limits durations to about 292 million years; stay far below.
    if total > 1000 * 365 * 86_400 {
        return Err(err("too long"));
    }
    Ok(Duration::seconds(total))
}

/// Formats a duration the way [`parse`] reads it, largest units first
/// (`1d12h`); weeks are written as days (`30d`, not `4w2d`).
pub fn format(d: Duration) -> String {
    let mut secs = d.num_seconds();
    if secs <= 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in UNITS {
        if unit != 'w' && secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse("30d"), Ok(Duration::days(30)));
        assert_eq!(parse("1d12h"), Ok(Duration::hours(36)));
        assert_eq!(parse("2w"), Ok(Duration::days(14)));
        assert_eq!(parse("1y"), Ok(Duration::days(365)));
        assert_eq!(parse("90m"), Ok(Duration::minutes(90)));
        assert_eq!(parse("0s"), Ok(Duration::zero()));
        assert_eq!(parse(" 5H "), Ok(Duration::hours(5)));
    }

    #[test]
    fn refuses_nonsense() {
        for bad in ["", "30", "d", "3x", "1.5d", "-1d", "99999999999999999999s", "2000y"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("30").unwrap_err().to_string().contains("without a unit"));
    }

    #[test]
    fn formats_round_trip() {
        for s in ["30d", "1d12h", "1y", "1h30m", "45s", "1y8d1h1m1s"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
        assert_eq!(format(Duration::zero()), "0s");
        assert_eq!(format(parse("2w").unwrap()), "14d");
    }
}
