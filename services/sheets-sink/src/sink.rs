//! The handler the consumer loop runs for each batch of SheetRowUpserts:
//! decode, upsert through the breaker; what the errors mean for the batch.

use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use sluice_avro::{AvroCodec, CodecError};
use sluice_contracts::types::{DeadLetterClass, SheetRowUpsert};
use sluice_kafka::{Handler, HandlerError};
use sluice_resilience::{BreakerError, CircuitBreaker, Classified, ErrorClass, Rejected};

use crate::google::GoogleError;
use crate::upsert::Upserter;

/// Why a command was not applied (this time).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The message has no value.
    #[error("the message has no value")]
    Empty,
    /// Not a SheetRowUpsert.
    #[error("decoding the command: {0}")]
    Decode(#[from] CodecError),
    /// The breaker refused the call: the API is failing.
    #[error(transparent)]
    BreakerOpen(Rejected),
    /// The API call failed.
    #[error(transparent)]
    Google(GoogleError),
}

impl Classified for SinkError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Empty => ErrorClass::Permanent,
            // The registry being away is no reason to dead-letter a command.
            Self::Decode(CodecError::RegistryUnavailable(_)) | Self::BreakerOpen(_) => {
                ErrorClass::Pause
            }
            Self::Decode(_) => ErrorClass::Permanent,
            Self::Google(err) => err.class(),
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::BreakerOpen(rejected) => rejected.retry_in,
            Self::Google(err) => err.retry_after(),
            _ => None,
        }
    }
}

impl HandlerError for SinkError {
    fn dead_letter_class(&self) -> DeadLetterClass {
        match self {
            Self::Empty | Self::Decode(_) => DeadLetterClass::Decode,
            _ => DeadLetterClass::Permanent,
        }
    }
}

/// Applies SheetRowUpserts.
pub struct SheetsSink {
    /// Decodes commands.
    pub codec: AvroCodec,
    /// Writes rows.
    pub upserter: Upserter,
    /// Guards the API.
    pub breaker: CircuitBreaker,
}

impl SheetsSink {
    async fn apply(&self, messages: &[OwnedMessage]) -> Result<(), SinkError> {
        let mut commands: Vec<SheetRowUpsert> = Vec::with_capacity(messages.len());
        for message in messages {
            let bytes = message.payload().ok_or(SinkError::Empty)?;
            commands.push(self.codec.decode(bytes).await?);
        }
        match self.breaker.call(self.upserter.upsert(&commands)).await {
            Ok(applied) => {
                tracing::debug!(?applied, commands = commands.len(), "rows upserted");
                Ok(())
            }
            Err(BreakerError::Rejected(rejected)) => Err(SinkError::BreakerOpen(rejected)),
            Err(BreakerError::Call(err)) => Err(SinkError::Google(err)),
        }
    }
}

impl Handler for SheetsSink {
    type Error = SinkError;

    async fn handle(&self, message: &OwnedMessage) -> Result<(), SinkError> {
        self.apply(std::slice::from_ref(message)).await
    }

    async fn handle_batch(&self, messages: &[OwnedMessage]) -> Result<(), SinkError> {
        self.apply(messages).await
    }
}
