//! Replies: the outcome of a command a sink handled, written to a results
//! topic under the command's key and awaited until Kafka acknowledges it, so
//! the command's offset is stored only once its answer is on Kafka.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureRecord;
use sluice_avro::{AvroCodec, CodecError};
use sluice_contracts::types::Contract;
use sluice_telemetry::liveness::WatchedProducer;
use sluice_telemetry::owned_headers;

use crate::{KafkaConfig, KafkaSetupError, idempotent_producer};

/// Why a reply was not written.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// Encoding (the registry is away, say).
    #[error("encoding the reply: {0}")]
    Encode(#[from] CodecError),
    /// Kafka did not acknowledge it.
    #[error("producing the reply: {0}")]
    Produce(rdkafka::error::KafkaError),
}

/// Writes replies to one topic.
pub struct ReplyPublisher {
    producer: WatchedProducer,
    codec: Arc<AvroCodec>,
    topic: String,
}

/// How long a reply may wait for Kafka before the command is tried again.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

impl ReplyPublisher {
    /// Publishes to `topic` through its own idempotent producer on `kafka`.
    /// The producer sends at once (`linger.ms` 0): each command waits for
    /// its reply, so lingering would add the linger to every command.
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

    /// Writes `reply` under `key` for the command read from `command`,
    /// carrying its trace on.
    pub async fn publish<T: Contract>(
        &self,
        key: &str,
        reply: &T,
        command: &OwnedMessage,
    ) -> Result<(), ReplyError> {
        let trace = sluice_telemetry::outgoing_trace_headers(&tracing::Span::current(), command);
        self.send(key, reply, trace).await
    }

    /// Writes `value` under `key`, in the current span's trace (for what is
    /// not an answer to a Kafka message: an HTTP request's record, say).
    pub async fn publish_traced<T: Contract>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), ReplyError> {
        let trace = sluice_telemetry::child_span_context_headers(&tracing::Span::current());
        self.send(key, value, trace).await
    }

    /// The topic it writes to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// `value` as this publisher writes it, for a caller that puts it in
    /// its own transaction.
    pub async fn encode<T: Contract>(&self, value: &T) -> Result<Vec<u8>, ReplyError> {
        Ok(self.codec.encode(&self.topic, value).await?)
    }

    async fn send<T: Contract>(
        &self,
        key: &str,
        value: &T,
        trace: Vec<(String, Vec<u8>)>,
    ) -> Result<(), ReplyError> {
        let value = self.codec.encode(&self.topic, value).await?;
        let headers = owned_headers(trace.iter().map(|(key, value)| (key, Some(value))));
        let record = FutureRecord::to(&self.topic)
            .key(key)
            .payload(&value)
            .headers(headers);
        self.producer
            .send(record, DELIVERY_TIMEOUT)
            .await
            .map(drop)
            .map_err(|(err, _)| ReplyError::Produce(err))
    }
}
