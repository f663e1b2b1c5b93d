//! Metric names of this crate, declared and described in one place.

/// Gauge: breaker state (0 closed, 1 half-open, 2 open), label `breaker`.
pub const BREAKER_STATE: &str = "sluice_breaker_state";
/// Counter: breaker transitions, labels `breaker` and `to`.
pub const BREAKER_TRANSITIONS: &str = "sluice_breaker_transitions_total";
/// Histogram: seconds a call waited for a token, labels `limiter` and `target`.
pub const LIMITER_WAIT: &str = "sluice_limiter_wait_seconds";
/// Counter: times a target asked us to wait (Retry-After), labels `limiter` and `target`.
pub const LIMITER_DEFERRALS: &str = "sluice_limiter_deferrals_total";
/// Counter: retries made, label `operation`.
pub const RETRIES: &str = "sluice_retries_total";

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
}
