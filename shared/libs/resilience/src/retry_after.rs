//! `Retry-After` as a remote sends it (RFC 9110 §10.2.3): delay-seconds or
//! an HTTP-date. A remote's answer is not trusted: a wait past the
//! operator's bound ([`MAX_RETRY_AFTER`] by default) is cut to it (a partition held for hours by one odd
//! header helps nobody), and a value that is neither form is ignored, as if
//! the header were absent.

use std::time::{Duration, SystemTime};

/// The longest wait a remote may ask for, unless configured otherwise.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// The wait a `Retry-After` header value asks for at `now`, at most `max`;
/// `None` when there is no header or it is unreadable.
pub fn retry_after(value: Option<&str>, now: SystemTime, max: Duration) -> Option<Duration> {
    let value = value?.trim();
    let wait = if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
        // More digits than a u64 holds are still a (long) number of seconds.
        value.parse::<u64>().map_or(max, Duration::from_secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        let at = SystemTime::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(at.timestamp()).unwrap_or(0));
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(value: &str) -> Option<Duration> {
        // Sun, 06 Nov 1994 08:49:37 GMT
        retry_after(
            Some(value),
            SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777),
            MAX_RETRY_AFTER,
        )
    }

    #[test]
    fn seconds_and_dates_are_read_and_bounded() {
        assert_eq!(at("120"), Some(Duration::from_secs(120)));
        assert_eq!(at(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            at("Sun, 06 Nov 1994 08:50:07 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            at("Sun, 06 Nov 1994 08:00:00 GMT"),
            Some(Duration::ZERO),
            "a past date"
        );
        assert_eq!(at("86400"), Some(MAX_RETRY_AFTER));
        assert_eq!(at("18446744073709551615"), Some(MAX_RETRY_AFTER));
        assert_eq!(at("99999999999999999999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(at("Fri, 31 Dec 9999 23:59:59 GMT"), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn nonsense_is_no_header() {
        for value in ["-5", "1.5", "soon", "", "Sun, 99 Nov 1994 08:49:37 GMT"] {
            assert_eq!(at(value), None, "{value:?}");
        }
        assert_eq!(retry_after(None, SystemTime::now(), MAX_RETRY_AFTER), None);
    }
}
