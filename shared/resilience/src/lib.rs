//! Protecting a dependency (the Sheets API, the ERP): how a failure is
//! classified, and the circuit breaker that stops calling a dependency that
//! keeps failing. One instance per sink and target, all of it configuration.

mod breaker;
mod class;
mod metrics;

pub use breaker::{
    BreakerConfig, BreakerError, BreakerState, CircuitBreaker, FailureRate, Permit, Rejected,
};
pub use class::{Classified, ErrorClass};

/// A setting that cannot work, named with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct InvalidConfig {
    /// The setting, as it is named in configuration.
    pub setting: &'static str,
    /// Why its value cannot work.
    pub reason: String,
}
