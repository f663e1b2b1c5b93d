//! What a service plugs into the consumer loop.

use std::fmt::Display;
use std::future::Future;

use rdkafka::message::OwnedMessage;
use sluice_contracts::types::DeadLetterClass;
use sluice_resilience::Classified;

/// A service's logic for one message.
pub trait Handler: Send + Sync + 'static {
    /// Its error, classified where it is understood.
    type Error: HandlerError;

    /// Handles one message. Called again for the same message on a retryable
    /// error or after a pause, so it must be idempotent (the sinks key their
    /// effects on event and command ids).
    fn handle(
        &self,
        message: &OwnedMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// An error a handler returns.
pub trait HandlerError: Classified + Display + Send + Sync + 'static {
    /// The dead-letter class of a permanent failure (retryable failures that
    /// outlast the retries are `RETRIES_EXHAUSTED`).
    fn dead_letter_class(&self) -> DeadLetterClass {
        DeadLetterClass::Permanent
    }
}
