//! What a handler owes Kafka before its message's offset may be stored, but
//! the next message need not wait for: a sink's answer to a saga and its
//! audit record. The handler encodes them and hands them back; the consumer
//! loop sends them and waits for Kafka's acknowledgement while it handles the
//! partition's next batches, and stores the offset only then. Awaited in the
//! handler instead, one `acks=all` round trip per command cost sheets-sink
//! about 15 % of its pace one row per request (1 443, 1 411 against 1 685,
//! 1 637 commands/s without the record, docs/OPERATIONS.md).
//!
//! A record Kafka keeps refusing (its topic missing, a record too large, no
//! permission) holds the partition, logged at each try, until Kafka takes
//! it or the partition is stopped, and `sluice_partition_stalled` says so
//! after `stall_after`: the write it records is done, so neither
//! dead-lettering the command nor storing its offset without the record
//! would be true.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::FutureRecord;
use sluice_telemetry::liveness::WatchedProducer;

use crate::ReplyError;

/// How long a send waits for room in the producer's full queue; delivery
/// itself is bounded by the producer's `message.timeout.ms`.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// Records to be on Kafka before the offset of the message whose handling
/// made them is stored. Nothing is sent until the consumer loop sends it:
/// a handler that fails after making them leaves no trace.
#[derive(Default)]
#[must_use = "what is owed is sent only when the handler returns it"]
pub struct Owed(Vec<Outgoing>);

impl Owed {
    /// Nothing owed.
    pub fn nothing() -> Self {
        Self::default()
    }

    /// These records and `other`'s.
    pub fn and(mut self, other: Owed) -> Self {
        self.0.extend(other.0);
        self
    }

    /// Sends it now and waits for Kafka's acknowledgement: for what must be
    /// on Kafka before the handler returns (the answer to a command it
    /// refuses, which the loop dead-letters) or a writer outside the loop.
    pub async fn send_now(self) -> Result<(), ReplyError> {
        let sent = self.0.iter().map(Outgoing::deliver);
        futures::future::try_join_all(sent)
            .await
            .map(drop)
            .map_err(ReplyError::Produce)
    }

    pub(crate) fn records(&self) -> &[Outgoing] {
        &self.0
    }
}

impl FromIterator<Owed> for Owed {
    fn from_iter<I: IntoIterator<Item = Owed>>(owed: I) -> Self {
        Self(owed.into_iter().flat_map(|owed| owed.0).collect())
    }
}

impl From<Outgoing> for Owed {
    fn from(record: Outgoing) -> Self {
        Self(vec![record])
    }
}

/// One encoded record and the idempotent producer that sends it.
pub(crate) struct Outgoing {
    pub producer: WatchedProducer,
    pub topic: String,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: OwnedHeaders,
}

impl Outgoing {
    /// Sends the record and waits for Kafka's acknowledgement (`acks=all`).
    pub(crate) async fn deliver(&self) -> Result<(), KafkaError> {
        let record = FutureRecord::to(&self.topic)
            .key(&self.key)
            .payload(&self.payload)
            .headers(self.headers.clone());
        self.producer
            .send(record, QUEUE_TIMEOUT)
            .await
            .map(drop)
            .map_err(|(err, _)| err)
    }
}
