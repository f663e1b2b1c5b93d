//! Protecting a dependency (the Sheets API, the ERP): how a failure is
//! classified, the circuit breaker that stops calling a dependency that
//! keeps failing, the rate limiter that keeps calls within its quota, and
//! the retry policy; a remote's text cut to size, and read only so far. One instance per sink and
//! target, all of it configuration.

mod breaker;
mod class;
mod limiter;
mod metrics;
mod remote_text;
mod retry;
mod retry_after;
#[cfg(test)]
mod test_support;

pub use breaker::{
    BreakerConfig, BreakerError, BreakerState, CircuitBreaker, FailureRate, Permit, Rejected,
};
pub use class::{Classified, ErrorClass};
pub use limiter::{LimiterConfig, RateLimiter};
pub use metrics::record_request;
pub use remote_text::{
    MAX_REMOTE_TEXT, MAX_SMALL_BODY, body_up_to, clipped, error_body, json_up_to,
};
pub use retry::{Delays, Exhausted, RetryPolicy};
pub use retry_after::{MAX_RETRY_AFTER, retry_after};

/// A setting that cannot work, named with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct InvalidConfig {
    /// The setting, as it is named in configuration.
    pub setting: &'static str,
    /// Why its value cannot work.
    pub reason: String,
}
