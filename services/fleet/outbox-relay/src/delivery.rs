//! A committed transaction's rows on their way to Kafka: encoded, handed to
//! the producer together, and acknowledged as one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::{BoxFuture, join_all};
use pgwire_replication::Lsn;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord};
use sluice_kafka::RECORD_OVERHEAD;
use sluice_telemetry::liveness::WatchedProducer;

use crate::row::OutboxMessage;

/// Header naming the end LSN of the transaction an event came from: the slot
/// position the relay confirms once the whole transaction is on Kafka.
pub const LSN_HEADER: &str = "sluice.lsn";
/// How long to wait before offering a record again to a full producer queue.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(5);

/// An outbox row of a transaction: the message, or why it is not one.
#[derive(Debug)]
pub(crate) struct Pending {
    pub row: Result<OutboxMessage, String>,
    /// The row as it came, for its dead letter.
    pub raw: Raw,
}

/// An outbox row as it came, spelled out only for a dead letter: made into
/// JSON for every row, it was 3 % of the relay's CPU in its benchmark.
#[derive(Debug)]
pub(crate) enum Raw {
    /// A logical decoding message's content.
    Message(Vec<u8>),
    /// A table row: its columns' names and text values.
    Row {
        columns: Arc<[String]>,
        values: Vec<Option<String>>,
    },
}

impl Raw {
    /// The bytes of the dead letter's value: a message's content, or a
    /// row as a JSON object of its columns.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Message(content) => content.clone(),
            Self::Row { columns, values } => {
                let named: BTreeMap<&str, Option<&str>> = columns
                    .iter()
                    .map(String::as_str)
                    .zip(values.iter().map(Option::as_deref))
                    .collect();
                serde_json::to_vec(&named).unwrap_or_default()
            }
        }
    }
}

/// Where a transaction sits in the WAL and when it committed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Commit {
    /// End of the commit record: the position to confirm.
    pub end_lsn: Lsn,
    /// When Postgres committed it.
    pub time: SystemTime,
}

impl Commit {
    /// From pgoutput's commit fields (microseconds since 2000-01-01).
    pub fn new(end_lsn: Lsn, commit_time_micros: i64) -> Self {
        const POSTGRES_EPOCH: Duration = Duration::from_secs(946_684_800);
        let since = Duration::from_micros(u64::try_from(commit_time_micros).unwrap_or(0));
        Self {
            end_lsn,
            time: SystemTime::UNIX_EPOCH + POSTGRES_EPOCH + since,
        }
    }
}

/// A message ready to produce.
pub(crate) struct Record<'a> {
    pub topic: String,
    /// The row's id, for errors.
    pub id: &'a str,
    pub key: &'a str,
    pub value: Vec<u8>,
    pub headers: Vec<(&'a str, &'a str)>,
}

impl Record<'_> {
    /// A debug line naming the record, its flow and its trace (the fields an
    /// operator searches the log by), before it goes to Kafka.
    pub fn log_relaying(&self, commit: Commit) {
        let header = |name: &str| {
            self.headers
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| *value)
        };
        tracing::debug!(
            row = self.id,
            topic = self.topic,
            correlation_id = header(sluice_telemetry::CORRELATION_ID_HEADER),
            trace_id = header("traceparent").and_then(|parent| parent.split('-').nth(1)),
            lsn = %commit.end_lsn,
            "relaying"
        );
    }

    /// Its size on the wire, the LSN header and the batch's framing included.
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(key, value)| key.len() + value.len())
            .sum();
        // An LSN is at most 17 characters (`FFFFFFFF/FFFFFFFF`).
        self.key.len() + self.value.len() + headers + LSN_HEADER.len() + 17 + RECORD_OVERHEAD
    }
}

/// A transaction handed to Kafka, acknowledged as a whole.
pub(crate) struct Acknowledged {
    pub commit: Commit,
    /// Events per topic, for the relayed counter.
    pub topics: Vec<String>,
}

/// Why a transaction's events did not all reach Kafka.
#[derive(Debug, thiserror::Error)]
#[error("event {event_id} to {topic}: {source}")]
pub struct DeliveryError {
    event_id: String,
    topic: String,
    source: KafkaError,
}

/// Hands `records` to the producer in order (waiting while its queue is
/// full) and returns what resolves once Kafka acknowledged every one.
pub(crate) async fn send_all(
    producer: &WatchedProducer,
    records: Vec<Record<'_>>,
    commit: Commit,
) -> Result<BoxFuture<'static, Result<Acknowledged, DeliveryError>>, DeliveryError> {
    let lsn = commit.end_lsn.to_string();
    let mut deliveries: Vec<(String, String, DeliveryFuture)> = Vec::with_capacity(records.len());
    for record in records {
        let delivery = enqueue(producer, &record, &lsn).await?;
        deliveries.push((record.topic, record.id.to_owned(), delivery));
    }
    Ok(async move {
        let (ids, futures): (Vec<_>, Vec<_>) = deliveries
            .into_iter()
            .map(|(topic, id, delivery)| ((topic, id), delivery))
            .unzip();
        let mut topics = Vec::with_capacity(ids.len());
        for ((topic, event_id), outcome) in ids.into_iter().zip(join_all(futures).await) {
            let failed = |source| DeliveryError {
                event_id: event_id.clone(),
                topic: topic.clone(),
                source,
            };
            match outcome {
                Ok(Ok(_)) => topics.push(topic),
                Ok(Err((err, _))) => return Err(failed(err)),
                Err(_) => return Err(failed(KafkaError::Canceled)),
            }
        }
        Ok(Acknowledged { commit, topics })
    }
    .boxed())
}

async fn enqueue(
    producer: &WatchedProducer,
    record: &Record<'_>,
    lsn: &str,
) -> Result<DeliveryFuture, DeliveryError> {
    loop {
        let headers = record.headers.iter().fold(
            OwnedHeaders::new_with_capacity(record.headers.len() + 1),
            |headers, &(key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(value),
                })
            },
        );
        let headers = headers.insert(Header {
            key: LSN_HEADER,
            value: Some(lsn),
        });
        let message = FutureRecord::to(&record.topic)
            .key(record.key)
            .payload(&record.value)
            .headers(headers);
        match producer.send_result(message) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(QUEUE_FULL_PAUSE).await;
            }
            Err((source, _)) => {
                return Err(DeliveryError {
                    event_id: record.id.to_owned(),
                    topic: record.topic.clone(),
                    source,
                });
            }
        }
    }
}
