//! An error type for the tests of this crate, classified like an HTTP status.

use std::time::Duration;

use crate::{Classified, ErrorClass};

/// A failed HTTP call: its status and `Retry-After`, if any.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Status(pub u16, pub Option<Duration>);

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.0)
    }
}

impl Classified for Status {
    fn class(&self) -> ErrorClass {
        match self.0 {
            429 => ErrorClass::Pause,
            500.. => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        self.1
    }
}
