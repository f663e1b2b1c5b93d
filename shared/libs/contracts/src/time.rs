//! The contracts' time unit: milliseconds since the Unix epoch (UTC).

/// Now, in the contracts' unit (a clock before 1970 reads as 0).
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}
