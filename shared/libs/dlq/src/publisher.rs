//! Publishing dead letters.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use sluice_avro::{AvroCodec, CodecError};
use sluice_contracts::types::{DeadLetter, DeadLetterClass, OriginalHeader};
use sluice_resilience::{Classified, ErrorClass};
use sluice_telemetry::liveness::WatchedProducer;

use crate::headers::dead_letter_headers;

/// Why a message failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The class recorded in the dead letter.
    pub class: DeadLetterClass,
    /// The error, with its context.
    pub message: String,
    /// Tries made.
    pub attempts: u32,
    /// When the first try failed, ms since the epoch.
    pub first_failure_at: i64,
    /// When the last try failed, ms since the epoch.
    pub last_failure_at: i64,
}

/// Where a dead-lettered message came from, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    /// Topic (or, for a message from elsewhere, a name saying where).
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset (or another position, e.g. a WAL LSN).
    pub offset: i64,
    /// Timestamp, ms since the epoch.
    pub timestamp: Option<i64>,
    /// Key, byte for byte.
    pub key: Option<Vec<u8>>,
    /// Value, byte for byte.
    pub value: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<OriginalHeader>,
}

impl Original {
    /// The facts of a Kafka message.
    pub fn of<M: Message>(message: &M) -> Self {
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| OriginalHeader {
                            key: h.key.to_owned(),
                            value: h.value.map(<[u8]>::to_vec),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// A dead letter could not be written; the message must not be committed.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The DeadLetter record could not be encoded.
    #[error("encoding the dead letter for {topic}: {source}")]
    Encode {
        /// The DLQ topic.
        topic: String,
        /// The codec error.
        source: CodecError,
    },
    /// Kafka did not acknowledge it.
    #[error("producing the dead letter to {topic}: {source}")]
    Produce {
        /// The DLQ topic.
        topic: String,
        /// The producer error.
        source: KafkaError,
    },
}

impl Classified for DeadLetterError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Encode { source, .. } => source.class(),
            // A broker that does not ack now may later; the message waits.
            Self::Produce { .. } => ErrorClass::Retryable,
        }
    }
}

/// Writes one service's dead letters to its DLQ topic.
#[derive(Clone)]
pub struct DeadLetterPublisher {
    producer: WatchedProducer,
    codec: Arc<AvroCodec>,
    topic: String,
    service: String,
    service_version: String,
}

impl std::fmt::Debug for DeadLetterPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterPublisher")
            .field("topic", &self.topic)
            .field("service", &self.service)
            .finish()
    }
}

impl DeadLetterPublisher {
    /// A publisher writing `service`'s dead letters to `topic` (normally
    /// `dlq.<service>.v1`) through an idempotent, `acks=all` producer.
    pub fn new(
        producer: WatchedProducer,
        codec: Arc<AvroCodec>,
        topic: impl Into<String>,
        service: impl Into<String>,
        service_version: impl Into<String>,
    ) -> Self {
        Self {
            producer,
            codec,
            topic: topic.into(),
            service: service.into(),
            service_version: service_version.into(),
        }
    }

    /// The same publisher writing through `producer`: a transactional loop
    /// writes its dead letters inside its own transactions.
    pub fn with_producer(&self, producer: WatchedProducer) -> Self {
        Self {
            producer,
            ..self.clone()
        }
    }

    /// The DLQ topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes `original` with `failure` to the DLQ and waits for Kafka's
    /// acknowledgement; only then may the original's offset be committed.
    pub async fn publish<M: Message>(
        &self,
        original: &M,
        failure: Failure,
    ) -> Result<(), DeadLetterError> {
        self.publish_original(Original::of(original), failure).await
    }

    /// Writes a dead letter for something that did not come from a Kafka
    /// topic (an outbox row, say), described by `original`.
    pub async fn publish_original(
        &self,
        original: Original,
        failure: Failure,
    ) -> Result<(), DeadLetterError> {
        let mut letter = DeadLetter {
            original_topic: original.topic,
            original_partition: original.partition,
            original_offset: original.offset,
            original_timestamp: original.timestamp,
            original_key: original.key,
            original_value: original.value,
            original_headers: original.headers,
            error_class: failure.class,
            // What a remote answered may be in it: a letter is never
            // refused for the size of its reason.
            error_message: sluice_resilience::clipped(failure.message),
            attempts: i32::try_from(failure.attempts).unwrap_or(i32::MAX),
            first_failure_at: failure.first_failure_at,
            last_failure_at: failure.last_failure_at,
            service: self.service.clone(),
            service_version: self.service_version.clone(),
        };
        match self.send(&letter).await {
            // A letter as large as its original (one Kafka refused as too
            // large, say) is refused too: it goes without the bytes (its
            // coordinates say where they were) rather than never.
            Err(DeadLetterError::Produce { source, .. })
                if source.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge)
                    && letter.original_value.is_some() =>
            {
                let size = letter.original_value.take().map_or(0, |value| value.len());
                letter.error_message = format!(
                    "{} (the original value, {size} bytes, is left out: with it this dead letter is larger than Kafka takes)",
                    letter.error_message
                );
                self.send(&letter).await
            }
            sent => sent,
        }
    }

    /// Writes `letter` and waits for Kafka's acknowledgement.
    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let value = self
            .codec
            .encode(&self.topic, letter)
            .await
            .map_err(|source| DeadLetterError::Encode {
                topic: self.topic.clone(),
                source,
            })?;
        let mut record = FutureRecord::to(&self.topic)
            .payload(&value)
            .headers(dead_letter_headers(letter));
        if let Some(key) = &letter.original_key {
            record = record.key(key);
        }
        self.producer
            .send(record, Timeout::After(Duration::from_secs(30)))
            .await
            .map_err(|(source, _)| DeadLetterError::Produce {
                topic: self.topic.clone(),
                source,
            })?;
        Ok(())
    }
}
