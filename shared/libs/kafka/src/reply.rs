//! Replies: the outcome of a command a sink handled, written to a results
//! topic under the command's key and acknowledged by Kafka before the
//! command's offset is stored: awaited by the caller, or owed ([`Owed`]) to
//! the consumer loop, which sends it while it handles the next batch.

use std::sync::Arc;

use rdkafka::message::OwnedMessage;
use sluice_avro::{AvroCodec, CodecError};
use sluice_contracts::types::Contract;
use sluice_telemetry::liveness::WatchedProducer;
use sluice_telemetry::owned_headers;

use crate::owed::{Outgoing, Owed};
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

impl ReplyPublisher {
    /// Publishes to `topic` through its own idempotent producer on `kafka`,
    /// for records owed to a consumer loop ([`Self::owe`]): the loop goes
    /// on with the partition's next batches while Kafka acknowledges them,
    /// so the producer lingers (librdkafka's 5 ms) and sends them in fewer
    /// requests. Sent at once instead, each command's two records were
    /// requests of their own, and the broker spent 257 µs of CPU a command
    /// (erp-sink's benchmark, docs/SCALING.md).
    pub fn new(
        kafka: &KafkaConfig,
        codec: Arc<AvroCodec>,
        topic: impl Into<String>,
    ) -> Result<Self, KafkaSetupError> {
        Ok(Self::with_producer(
            idempotent_producer(kafka)?,
            codec,
            topic,
        ))
    }

    /// As [`Self::new`], for a caller that waits for each record (an HTTP
    /// request's, a replay's): the producer sends at once (`linger.ms` 0).
    pub fn immediate(
        kafka: &KafkaConfig,
        codec: Arc<AvroCodec>,
        topic: impl Into<String>,
    ) -> Result<Self, KafkaSetupError> {
        let producer = idempotent_producer(&kafka.clone().with_property("linger.ms", "0"))?;
        Ok(Self::with_producer(producer, codec, topic))
    }

    fn with_producer(
        producer: WatchedProducer,
        codec: Arc<AvroCodec>,
        topic: impl Into<String>,
    ) -> Self {
        Self {
            producer,
            codec,
            topic: topic.into(),
        }
    }

    /// Writes `reply` under `key` for the command read from `command`,
    /// carrying its trace on.
    pub async fn publish<T: Contract>(
        &self,
        key: &str,
        reply: &T,
        command: &OwnedMessage,
    ) -> Result<(), ReplyError> {
        self.owe(key, reply, Some(command)).await?.send_now().await
    }

    /// Writes `value` under `key`, in the current span's trace (for what is
    /// not an answer to a Kafka message: an HTTP request's record, say).
    pub async fn publish_traced<T: Contract>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), ReplyError> {
        self.owe(key, value, None).await?.send_now().await
    }

    /// `value` encoded as [`Self::publish`] (with a `cause`) or
    /// [`Self::publish_traced`] write it, for the consumer loop to send
    /// before it stores the offset of the message being handled.
    pub async fn owe<T: Contract>(
        &self,
        key: &str,
        value: &T,
        cause: Option<&OwnedMessage>,
    ) -> Result<Owed, ReplyError> {
        self.outgoing(key, value, cause).await.map(Owed::from)
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

    /// `value` under `key` with the trace of `cause` carried on, or the
    /// current span's without one.
    async fn outgoing<T: Contract>(
        &self,
        key: &str,
        value: &T,
        cause: Option<&OwnedMessage>,
    ) -> Result<Outgoing, ReplyError> {
        let span = tracing::Span::current();
        let trace = match cause {
            Some(cause) => sluice_telemetry::outgoing_trace_headers(&span, cause),
            None => sluice_telemetry::child_span_context_headers(&span),
        };
        Ok(Outgoing {
            producer: self.producer.clone(),
            topic: self.topic.clone(),
            key: key.to_owned(),
            payload: self.codec.encode(&self.topic, value).await?,
            headers: owned_headers(trace.iter().map(|(key, value)| (key, Some(value)))),
        })
    }
}
