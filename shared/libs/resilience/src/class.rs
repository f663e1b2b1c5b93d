use std::time::Duration;

/// How a failed call is handled. Decided once, where the error is understood
/// (the client that read the HTTP status, the decoder), and carried with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient (network, timeout, 5xx): retry with backoff; counts against
    /// the circuit breaker.
    Retryable,
    /// The dependency refused this input for good (another 4xx, validation):
    /// dead-letter it. The dependency itself is healthy.
    Permanent,
    /// The dependency cannot take calls now (breaker open, 429, quota used
    /// up): stop consuming and wait, spending no attempt of the message.
    Pause,
}

/// An error that knows its class.
pub trait Classified {
    /// How to handle it.
    fn class(&self) -> ErrorClass;

    /// How long the dependency asked us to wait (`Retry-After`), if it did.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}
