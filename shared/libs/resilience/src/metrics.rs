//! Metric names of this crate, declared and described in one place.

/// Gauge: breaker state (0 closed, 1 half-open, 2 open), label `breaker`.
pub const BREAKER_STATE: &str = "sluice_breaker_state";
/// Counter: breaker transitions, labels `breaker` and `to`.
pub const BREAKER_TRANSITIONS: &str = "sluice_breaker_transitions_total";
/// Histogram: seconds a call waited for a token, labels `limiter` and `target`.
pub const LIMITER_WAIT: &str = "sluice_limiter_wait_seconds";
/// Counter: times a target asked us to wait (Retry-After), labels `limiter` and `target`.
pub const LIMITER_DEFERRALS: &str = "sluice_limiter_deferrals_total";
/// Gauge: the share of its configured rate a limiter paces to (the part of
/// a fleet-wide quota this replica owns), label `limiter`.
pub const LIMITER_SHARE: &str = "sluice_limiter_share";
/// Counter: retries made, label `operation`.
pub const RETRIES: &str = "sluice_retries_total";
/// Histogram: seconds a sink's call to its external API took, labels
/// `sink`, `operation` and `status` (the HTTP status, or `transport` when
/// no answer came).
pub const SINK_REQUEST: &str = "sluice_sink_request_seconds";

/// Records one call of `sink` to its API: how long it took and how it ended.
pub fn record_request(
    sink: &'static str,
    operation: &str,
    status: Option<u16>,
    elapsed: std::time::Duration,
) {
    let status = status.map_or_else(|| "transport".to_owned(), |code| code.to_string());
    metrics::histogram!(SINK_REQUEST, "sink" => sink, "operation" => operation.to_owned(), "status" => status)
        .record(elapsed.as_secs_f64());
}

/// Registers descriptions with the installed recorder.
pub(crate) fn describe() {
    metrics::describe_gauge!(
        BREAKER_STATE,
        "Circuit breaker state: 0 closed, 1 half-open, 2 open."
    );
    metrics::describe_counter!(
        BREAKER_TRANSITIONS,
        "Circuit breaker state changes, by target state."
    );
    metrics::describe_gauge!(
        LIMITER_SHARE,
        "Share of the configured rate this replica paces to: the partitions it owns of those the fleet shares the quota over."
    );
    metrics::describe_histogram!(
        SINK_REQUEST,
        metrics::Unit::Seconds,
        "Calls of a sink to its external API, by operation and HTTP status."
    );
}
