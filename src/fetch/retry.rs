//! When to try a request again and how long to wait first.
//!
//! Pure: computes delays, the fetcher sleeps. Exponential backoff with full
//! jitter (a uniform draw in `[0, min(max, base * 2^attempt)]`), replaced by
//! the server's `Retry-After` on 429 and 503 when it gives one.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDateTime, Utc};

/// Statuses worth another try: rate limiting and passing server trouble.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// Statuses whose `Retry-After` header is honoured.
pub fn honours_retry_after(status: u16) -> bool {
    matches!(status, 429 | 503)
}

/// Full-jitter backoff before retry number `attempt + 1` (`attempt` counts
/// from 0), never above `max`.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = backoff_ceiling(base, max, attempt);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=ms))
}

/// The ceiling of [`backoff`] for `attempt`: `base` doubled per attempt,
/// never above `max`.
pub fn backoff_ceiling(base: Duration, max: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.min(20)).min(max)
}

/// The delay asked for by a `Retry-After` value: delta-seconds or an
/// HTTP-date (IMF-fixdate, RFC 850 or asctime), relative to `now`. A date in
/// the past gives zero; an unparsable value gives `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let when = http_date(value)?;
    let now: DateTime<Utc> = now.into();
    Some((when - now).to_std().unwrap_or(Duration::ZERO))
}

fn http_date(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc2822(value) {
        return Some(d.with_timezone(&Utc));
    }
    // The two obsolete forms RFC 9110 still asks recipients to accept.
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> SystemTime {
        DateTime::parse_from_rfc3339(rfc3339).expect("test date parses").with_timezone(&Utc).into()
    }

    #[test]
    fn retry_after_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
    }

    #[test]
    fn retry_after_imf_fixdate() {
        let now = at("2015-10-21T07:28:00Z");
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
    }

    #[test]
    fn retry_after_obsolete_date_forms() {
        let now = at("1994-11-06T08:49:00Z");
        assert_eq!(parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now), Some(Duration::from_secs(37)));
        assert_eq!(parse_retry_after("Sun Nov  6 08:49:37 1994", now), Some(Duration::from_secs(37)));
    }

    #[test]
    fn retry_after_in_the_past_is_zero() {
        let now = at("2030-01-01T00:00:00Z");
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_garbage_is_none() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn backoff_stays_under_ceiling() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for attempt in 0..40 {
            let d = backoff(base, max, attempt);
            let ceiling = (base * 2u32.pow(attempt.min(4))).min(max);
            assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
        }
    }

    #[test]
    fn retryable_statuses() {
        for s in [429, 500, 502, 503, 504] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [200, 301, 304, 400, 401, 403, 404, 410, 501] {
            assert!(!is_retryable_status(s), "{s}");
        }
        assert!(honours_retry_after(429) && honours_retry_after(503));
        assert!(!honours_retry_after(500));
    }
}
