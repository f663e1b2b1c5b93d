//! ErpResults to `erp.results.v1`, keyed by external reference like the
//! commands, each awaited until Kafka acknowledges it.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_avro::{AvroCodec, CodecError};
use sluice_contracts::types::ErpResult;
use sluice_kafka::{KafkaConfig, KafkaSetupError, idempotent_producer};

/// Why a result was not written.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    /// Encoding (the registry is away, say).
    #[error("encoding the result: {0}")]
    Encode(#[from] CodecError),
    /// Kafka did not acknowledge it.
    #[error("producing the result: {0}")]
    Produce(rdkafka::error::KafkaError),
}

/// Writes ErpResults.
pub struct ResultPublisher {
    producer: FutureProducer,
    codec: Arc<AvroCodec>,
    topic: String,
}

/// How long a result may wait for Kafka before the command is tried again.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

impl ResultPublisher {
    /// Publishes to `topic` through its own idempotent producer on `kafka`.
    /// The producer sends at once (`linger.ms` 0): each command waits for
    /// its result, so lingering would add the linger to every command.
    pub fn new(
        kafka: &KafkaConfig,
        codec: Arc<AvroCodec>,
        topic: impl Into<String>,
    ) -> Result<Self, KafkaSetupError> {
        let producer = idempotent_producer(&kafka.clone().with_property("linger.ms", "0"))?;
        Ok(Self {
            producer,
            codec,
            topic: topic.into(),
        })
    }

    /// Writes `result` for the command read from `command`, carrying its
    /// trace on.
    pub async fn publish(
        &self,
        result: &ErpResult,
        command: &OwnedMessage,
    ) -> Result<(), ResultError> {
        let value = self.codec.encode(&self.topic, result).await?;
        let trace = sluice_telemetry::outgoing_trace_headers(&tracing::Span::current(), command);
        let headers = trace
            .iter()
            .fold(OwnedHeaders::new(), |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(value),
                })
            });
        let record = FutureRecord::to(&self.topic)
            .key(&result.external_ref)
            .payload(&value)
            .headers(headers);
        self.producer
            .send(record, DELIVERY_TIMEOUT)
            .await
            .map(drop)
            .map_err(|(err, _)| ResultError::Produce(err))
    }
}
