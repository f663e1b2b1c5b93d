//! Exactly-once consume → transform → produce with Kafka transactions.
//!
//! A batch of input messages, everything produced from them (outputs and
//! dead letters) and the input offsets are committed in one transaction, so
//! a `read_committed` reader sees each output once whatever is killed when.
//! The producer's `transactional.id` is stable per instance; the group
//! metadata sent with the offsets fences a zombie that lost its partitions.
//! Messages of a partition revoked while a batch is gathered leave the batch
//! (their new owner reads them from the committed offset), so a rebalance
//! never makes an output twice.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::join_all;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use sluice_contracts::types::DeadLetterClass;
use sluice_dlq::{DeadLetterPublisher, Failure};
use sluice_resilience::RetryPolicy;
use sluice_telemetry::liveness::{LivenessContext, WatchedProducer};
use sluice_telemetry::owned_headers;
use tracing::Instrument;

/// The W3C trace context header.
const TRACEPARENT: &str = "traceparent";

use crate::consumer::context::{
    AssignmentChange, LagFrom, RebalanceContext, STATISTICS_INTERVAL_MS,
};
use crate::consumer::{ConsumerError, HandlerError, SESSION_TIMEOUT, refuse_reserved, subscribed};
use crate::metrics::{CONSUMED, DEAD_LETTERED, PRODUCED, describe_once, zero_dead_letters};
use crate::skip::{count_if_skipped, is_tombstone};
use crate::verdict::{Tries, Verdict, attempt};
use crate::{KafkaConfig, KafkaSetupError};

/// One message to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    /// Destination topic.
    pub topic: String,
    /// Message key.
    pub key: Option<Vec<u8>>,
    /// Message value.
    pub payload: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A service's mapping from one input message to its outputs.
pub trait Transformer: Send + Sync + 'static {
    /// Its error, classified where it is understood.
    type Error: HandlerError;

    /// The outputs of `message`: zero, one or several records. Must not
    /// have effects outside Kafka: the transaction can only undo its own.
    fn transform(
        &self,
        message: &OwnedMessage,
    ) -> impl Future<Output = Result<Vec<OutputRecord>, Self::Error>> + Send;
}

/// How a transactional loop consumes and commits.
#[derive(Debug, Clone)]
pub struct TransactionalSettings {
    /// Consumer group id.
    pub group_id: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// The producer's `transactional.id`: stable per instance, so a restarted
    /// instance fences its predecessor's open transaction.
    pub transactional_id: String,
    /// Most input messages per transaction.
    pub max_batch: usize,
    /// How long a batch waits for more messages after its first.
    pub batch_linger: Duration,
    /// Retries of a transform that failed with a retryable error.
    pub retry: RetryPolicy,
    /// Wait before a batch is tried again after an aborted transaction.
    pub abort_backoff: Duration,
    /// Bound of each transaction call to the broker.
    pub transaction_timeout: Duration,
    /// How long a partition with messages waiting may stay at one offset
    /// before it is exported as stalled.
    pub stall_after: Duration,
}

/// Why a transaction did not commit.
#[derive(Debug, thiserror::Error)]
enum BatchError {
    /// The batch can be tried again after an abort, after `wait` (or the
    /// abort backoff).
    #[error("{reason}")]
    Retry {
        /// Why it was aborted.
        reason: String,
        /// How long the dependency asked to wait, if it did.
        wait: Option<Duration>,
    },
    /// Kafka refused an output as too large (the producer's
    /// `message.max.bytes`, or the topic's `max.message.bytes`): no retry
    /// would change that, so the batch is tried again with the input that
    /// made it dead-lettered.
    #[error("{reason}")]
    TooLarge {
        /// The input whose output was refused.
        input: Coordinates,
        /// What was refused, and what to change.
        reason: String,
    },
    /// The producer is fenced or broken; the process must restart.
    #[error("fatal transaction error: {0}")]
    Fatal(KafkaError),
    /// A transaction call did not return (see [`bounded`]); the process
    /// must restart.
    #[error("{0}")]
    Wedged(String),
}

/// Where an input message is: topic, partition, offset.
type Coordinates = (String, i32, i64);

fn coordinates(message: &OwnedMessage) -> Coordinates {
    (
        message.topic().to_owned(),
        message.partition(),
        message.offset(),
    )
}

/// Consumes topics and produces their transformations exactly once.
pub struct TransactionalLoop<T> {
    consumer: StreamConsumer<RebalanceContext>,
    producer: WatchedProducer,
    transformer: Arc<T>,
    dead_letters: DeadLetterPublisher,
    settings: TransactionalSettings,
    /// Messages transformed: what tells a poison message from an outage.
    served: AtomicU64,
}

impl<T: Transformer> TransactionalLoop<T> {
    /// A loop subscribed to `settings.topics`. Dead letters go through
    /// `dead_letters`' topic inside the loop's transactions.
    pub fn new(
        kafka: &KafkaConfig,
        settings: TransactionalSettings,
        transformer: T,
        dead_letters: &DeadLetterPublisher,
    ) -> Result<Self, ConsumerError> {
        describe_once();
        zero_dead_letters(&settings.topics);
        refuse_reserved(kafka, &["transactional.id"])?;
        let config = kafka.client_config(&[
            ("group.id", &settings.group_id),
            // Offsets are committed by the transaction, never by the consumer.
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
            ("isolation.level", "read_committed"),
            // The instance's identity is already stable across restarts
            // (its transactional id fences its predecessor); as a static
            // member it also gets its partitions back at once after a
            // crash instead of after the session timeout.
            ("group.instance.id", &settings.transactional_id),
            SESSION_TIMEOUT,
            ("statistics.interval.ms", STATISTICS_INTERVAL_MS),
        ]);
        // Its partition tasks take no batch in hand: what a revoked
        // partition wrote is in an open transaction, aborted, not applied.
        let consumer = subscribed(
            config,
            LagFrom::Position,
            settings.stall_after,
            Duration::ZERO,
            &settings.topics,
        )?;
        let producer: WatchedProducer = kafka
            .client_config(&[
                ("transactional.id", &settings.transactional_id),
                ("enable.idempotence", "true"),
                ("acks", "all"),
                // The loop waits for every output of a batch before it
                // commits, so lingering only delays the commit: at
                // librdkafka's 5 ms it was a third of each transaction.
                ("linger.ms", "0"),
            ])
            .create_with_context(LivenessContext)
            .map_err(|source| KafkaSetupError {
                client: "transactional producer",
                source,
            })?;
        Ok(Self {
            dead_letters: dead_letters.with_producer(producer.clone()),
            consumer,
            producer,
            transformer: Arc::new(transformer),
            settings,
            served: AtomicU64::new(0),
        })
    }

    /// Runs until `shutdown` completes; the batch in hand is committed (or
    /// left uncommitted, to be redone) before it returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ConsumerError> {
        let timeout = self.settings.transaction_timeout;
        let producer = self.producer.clone();
        blocking(move || producer.init_transactions(timeout))
            .await
            .map_err(|source| KafkaSetupError {
                client: "transactional producer",
                source,
            })?;
        let _stall_checks = self.consumer.context().stalls().start();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let batch = tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                batch = self.next_batch() => batch?,
            };
            if batch.is_empty() {
                // All of it belonged to revoked partitions.
                continue;
            }
            let batch: Arc<[OwnedMessage]> = batch.into();
            for message in batch.iter() {
                metrics::counter!(CONSUMED, "topic" => message.topic().to_owned()).increment(1);
            }
            // Inputs whose outputs Kafka refused as too large, and why.
            let mut refused = HashMap::new();
            loop {
                let wait = match self.commit_batch(Arc::clone(&batch), &refused).await {
                    Ok(()) => {
                        let stalls = self.consumer.context().stalls();
                        for message in batch.iter() {
                            stalls.settled(message.topic(), message.partition(), message.offset());
                            count_if_skipped(message);
                        }
                        break;
                    }
                    Err(BatchError::Fatal(err)) => {
                        return Err(ConsumerError::Transaction(err));
                    }
                    Err(BatchError::Wedged(reason)) => {
                        return Err(ConsumerError::Fatal { reason });
                    }
                    Err(BatchError::Retry { reason, wait }) => {
                        // A consumer librdkafka gave up on would fail every retry.
                        self.fatal()?;
                        tracing::warn!(%reason, "transaction aborted; the batch is tried again");
                        wait.unwrap_or(self.settings.abort_backoff)
                    }
                    Err(BatchError::TooLarge { input, reason }) => {
                        tracing::warn!(topic = input.0, partition = input.1, offset = input.2, %reason,
                            "an output too large for Kafka; its input is dead-lettered and the batch tried again");
                        refused.insert(input, reason);
                        Duration::ZERO
                    }
                };
                let producer = self.producer.clone();
                match bounded(timeout + WEDGED_AFTER, "abort_transaction", move || {
                    producer.abort_transaction(timeout)
                })
                .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => return Err(ConsumerError::Transaction(err)),
                    Err(reason) => return Err(ConsumerError::Fatal { reason }),
                }
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }

    /// Waits for one message, then takes what else arrives within the linger.
    async fn next_batch(&self) -> Result<Vec<OwnedMessage>, ConsumerError> {
        let mut batch = Vec::new();
        while batch.is_empty() {
            let received = self
                .consumer
                .recv()
                .await
                .map(|m| crate::headers::detach(&m));
            self.receive(&mut batch, received)?;
        }
        let linger = tokio::time::sleep(self.settings.batch_linger);
        tokio::pin!(linger);
        while batch.len() < self.settings.max_batch {
            tokio::select! {
                () = &mut linger => break,
                received = self.consumer.recv() => {
                    let received = received.map(|m| crate::headers::detach(&m));
                    self.receive(&mut batch, received)?;
                }
            }
        }
        self.drop_revoked(&mut batch);
        Ok(batch)
    }

    /// Adds a received message to the batch, after dropping the messages of
    /// partitions revoked while it was received: a rebalance runs inside
    /// `recv`, and a revoked partition's new owner (this loop again, perhaps)
    /// reads them from the committed offset. Broker trouble is retried by
    /// librdkafka; an error it gives up on ends the loop.
    fn receive(
        &self,
        batch: &mut Vec<OwnedMessage>,
        received: Result<OwnedMessage, KafkaError>,
    ) -> Result<(), ConsumerError> {
        self.drop_revoked(batch);
        let stalls = self.consumer.context().stalls();
        match received {
            Ok(message) => {
                stalls.received(message.topic(), message.partition(), message.offset());
                batch.push(message);
            }
            Err(err) => {
                self.fatal()?;
                tracing::warn!(error = %err, "consumer error");
                stalls.consumer_error(&err);
            }
        }
        Ok(())
    }

    /// The consumer's fatal error, if librdkafka gave up on it: a static
    /// member fenced by another with its `group.instance.id` (what a broker
    /// restart can leave a restarted instance with) is never let back in.
    fn fatal(&self) -> Result<(), ConsumerError> {
        match self.consumer.client().fatal_error() {
            Some((_, reason)) => Err(ConsumerError::Fatal { reason }),
            None => Ok(()),
        }
    }

    /// Drops the messages of partitions revoked since the last look. Also
    /// run when the batch is complete: a `recv` cut short by the linger may
    /// have run a rebalance without returning a message.
    fn drop_revoked(&self, batch: &mut Vec<OwnedMessage>) {
        for change in self.consumer.context().take_changes() {
            if let AssignmentChange::Revoked(revoked) = change {
                let before = batch.len();
                batch.retain(|m| {
                    !revoked
                        .iter()
                        .any(|(topic, partition)| m.topic() == topic && m.partition() == *partition)
                });
                if batch.len() < before {
                    tracing::info!(
                        dropped = before - batch.len(),
                        "messages of revoked partitions left the batch"
                    );
                }
            }
        }
    }

    /// Transforms `batch` and commits its outputs with its offsets in one
    /// transaction; the inputs in `refused` are dead-lettered instead.
    async fn commit_batch(
        &self,
        batch: Arc<[OwnedMessage]>,
        refused: &HashMap<Coordinates, String>,
    ) -> Result<(), BatchError> {
        self.producer.begin_transaction().map_err(classify)?;
        let spans: Vec<tracing::Span> = batch.iter().map(sluice_telemetry::message_span).collect();
        let first_tries = self.first_tries(&batch, &spans).await;
        // Each output with the index of its input.
        let mut outputs: Vec<(usize, OutputRecord)> = Vec::new();
        let mut next_offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
        // Each message's span ends with its turn, as when mapped in turn.
        let turns = batch.iter().zip(spans).zip(first_tries).enumerate();
        for (index, ((message, span), first_try)) in turns {
            next_offsets.insert(
                (message.topic().to_owned(), message.partition()),
                message.offset() + 1,
            );
            if is_tombstone(message) {
                continue;
            }
            if let Some(reason) = refused.get(&coordinates(message)) {
                let now = sluice_contracts::now_millis();
                let failure = Failure {
                    class: DeadLetterClass::Permanent,
                    message: reason.clone(),
                    attempts: 1,
                    first_failure_at: now,
                    last_failure_at: now,
                };
                self.dead_letter(message, failure).await?;
                continue;
            }
            let transformed = match first_try {
                Some(transformed) => {
                    self.served.fetch_add(1, Ordering::Relaxed);
                    traced(transformed, &span, message)
                }
                None => {
                    self.transform(message, &span)
                        .instrument(span.clone())
                        .await?
                }
            };
            outputs.extend(transformed.into_iter().map(|output| (index, output)));
        }
        // Sent together, not one round trip each: the transaction's commit
        // is what makes them visible, in the order they were enqueued.
        let sent = join_all(outputs.iter().map(|(_, output)| {
            self.producer
                .send(record(output), self.settings.transaction_timeout)
        }))
        .await;
        for ((input, output), delivery) in outputs.iter().zip(sent) {
            match delivery {
                Ok(_) => {
                    metrics::counter!(PRODUCED, "topic" => output.topic.clone()).increment(1);
                }
                Err((err, _))
                    if err.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge) =>
                {
                    return Err(BatchError::TooLarge {
                        input: coordinates(&batch[*input]),
                        reason: format!(
                            "its output to {} is {} bytes and Kafka refused it ({err}): raise the producer's message.max.bytes and the topic's max.message.bytes, or map less into one record",
                            output.topic,
                            output.payload.len() + output.key.as_ref().map_or(0, Vec::len),
                        ),
                    });
                }
                Err((err, _)) => return Err(classify(err)),
            }
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in next_offsets {
            offsets
                .add_partition_offset(&topic, partition, Offset::Offset(next))
                .map_err(classify)?;
        }
        let group = self
            .consumer
            .group_metadata()
            .ok_or_else(|| BatchError::Retry {
                reason: "no consumer group metadata yet".into(),
                wait: None,
            })?;
        let producer = self.producer.clone();
        let timeout = self.settings.transaction_timeout;
        let bound = timeout * 2 + WEDGED_AFTER;
        bounded(
            bound,
            "send_offsets_to_transaction and commit_transaction",
            move || {
                producer.send_offsets_to_transaction(&offsets, &group, timeout)?;
                producer.commit_transaction(timeout)
            },
        )
        .await
        .map_err(BatchError::Wedged)?
        .map_err(classify)
    }

    /// Writes `message`'s dead letter in the transaction.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        failure: Failure,
    ) -> Result<(), BatchError> {
        let class = failure.class;
        self.dead_letters
            .publish(message, failure)
            .await
            .map_err(|err| BatchError::Retry {
                reason: err.to_string(),
                wait: None,
            })?;
        metrics::counter!(DEAD_LETTERED, "topic" => message.topic().to_owned(), "class" => class.as_str())
            .increment(1);
        Ok(())
    }

    /// The outputs of one message, carrying its trace onward unless the
    /// transformer set their context; or its dead letter, written in the
    /// transaction, and no outputs.
    async fn transform(
        &self,
        message: &OwnedMessage,
        span: &tracing::Span,
    ) -> Result<Vec<OutputRecord>, BatchError> {
        let transformed = attempt(
            &self.settings.retry,
            self.settings.abort_backoff,
            &mut Tries::new(&self.served),
            &self.served,
            "transform",
            || self.transformer.transform(message),
        )
        .await;
        match transformed {
            Ok(outputs) => {
                self.served.fetch_add(1, Ordering::Relaxed);
                Ok(traced(outputs, span, message))
            }
            Err(Verdict::Hold { wait, reason }) => Err(BatchError::Retry {
                reason,
                wait: Some(wait),
            }),
            Err(Verdict::DeadLetter(failure)) => {
                self.dead_letter(message, failure).await?;
                Ok(Vec::new())
            }
        }
    }

    /// Each message's outputs from a first try, mapped on as many tasks as
    /// the runtime has workers, or `None` where that try failed or a try
    /// before it in its task did (the walk in order retries or
    /// dead-letters it as it would have). Mapping is CPU work and a batch's
    /// messages are independent until they are produced: mapped in turn on
    /// one task, the transformer's loop held 0.75 of a core; on two it
    /// drained 1.17 to 1.56 × as many events a second at the same CPU per
    /// event (its benchmark, five interleaved pairs).
    async fn first_tries(
        &self,
        batch: &Arc<[OwnedMessage]>,
        spans: &[tracing::Span],
    ) -> Vec<Option<Vec<OutputRecord>>> {
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        if workers < 2 || batch.len() < 2 {
            return vec![None; batch.len()];
        }
        let tasks = chunks(batch.len(), workers).map(|range| {
            let transformer = Arc::clone(&self.transformer);
            let batch = Arc::clone(batch);
            let spans = spans[range.clone()].to_vec();
            tokio::spawn(async move {
                let mut mapped = vec![None; range.len()];
                for ((index, span), slot) in range.zip(spans).zip(&mut mapped) {
                    let message = &batch[index];
                    if is_tombstone(message) {
                        continue;
                    }
                    match transformer.transform(message).instrument(span).await {
                        Ok(outputs) => *slot = Some(outputs),
                        // The rest of the chunk is left to the walk: a
                        // dependency that times out would otherwise be
                        // waited on once for every message here, where
                        // the walk holds the batch at the first.
                        Err(_) => break,
                    }
                }
                mapped
            })
        });
        join_all(tasks.collect::<Vec<_>>())
            .await
            .into_iter()
            .flat_map(|task| {
                task.unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
            })
            .collect()
    }
}

/// `len` indices cut into at most `parts` contiguous, non-empty ranges
/// whose sizes differ by one at most.
fn chunks(len: usize, parts: usize) -> impl Iterator<Item = Range<usize>> {
    let parts = parts.clamp(1, len.max(1));
    let (size, longer) = (len / parts, len % parts);
    (0..parts)
        .map(move |part| {
            let start = part * size + part.min(longer);
            start..start + size + usize::from(part < longer)
        })
        .filter(|range| !range.is_empty())
}

/// `outputs` carrying `message`'s trace onward, unless an output set its
/// own trace context or correlation id.
fn traced(
    mut outputs: Vec<OutputRecord>,
    span: &tracing::Span,
    message: &OwnedMessage,
) -> Vec<OutputRecord> {
    let trace = sluice_telemetry::outgoing_trace_headers(span, message);
    for output in &mut outputs {
        let has =
            |headers: &[(String, Vec<u8>)], name: &str| headers.iter().any(|(key, _)| key == name);
        let own_trace = has(&output.headers, TRACEPARENT);
        for (key, value) in &trace {
            let traced = key == TRACEPARENT || key == "tracestate";
            let kept = has(&output.headers, key) || (traced && own_trace);
            if !kept {
                output.headers.push((key.clone(), value.clone()));
            }
        }
    }
    outputs
}

/// The record to produce for `output`.
fn record(output: &OutputRecord) -> FutureRecord<'_, Vec<u8>, Vec<u8>> {
    let headers = owned_headers(output.headers.iter().map(|(key, value)| (key, Some(value))));
    let record = FutureRecord::to(&output.topic)
        .payload(&output.payload)
        .headers(headers);
    match &output.key {
        Some(key) => record.key(key),
        None => record,
    }
}

/// Fatal producer errors (fenced by a newer instance) end the loop; the
/// rest abort the transaction and retry the batch.
fn classify(err: KafkaError) -> BatchError {
    // A static member fenced by another with its group.instance.id never
    // commits again (the coordinator knows only the other's member id; seen
    // after a broker restart that lost this instance's join): a new process
    // must take its place, which joins afresh.
    let fatal = match &err {
        KafkaError::Transaction(rd) => {
            rd.is_fatal() || rd.code() == RDKafkaErrorCode::FencedInstanceId
        }
        _ => false,
    };
    if fatal {
        BatchError::Fatal(err)
    } else {
        BatchError::Retry {
            reason: err.to_string(),
            wait: None,
        }
    }
}

/// Grace beyond a transaction call's own timeout before it counts as wedged.
const WEDGED_AFTER: Duration = Duration::from_secs(30);

/// A transaction call not back within `bound` (its calls' own timeouts
/// added up, and [`WEDGED_AFTER`]) is counted as wedged: librdkafka's
/// `send_offsets_to_transaction` can wait forever for a group coordinator
/// whose broker it decommissioned (librdkafka #5456 and #5511; seen in the
/// chaos smoke, 5 minutes and on after the coordinator's node was
/// SIGKILLed, every partition held). The call cannot be cancelled, so the
/// process ends and a new one takes over: its producer fences this one's
/// transaction, which is aborted, and the batch is redone.
/// The outer error says why it counts as wedged.
async fn bounded<R: Send + 'static>(
    bound: Duration,
    what: &'static str,
    call: impl FnOnce() -> Result<R, KafkaError> + Send + 'static,
) -> Result<Result<R, KafkaError>, String> {
    tokio::time::timeout(bound, blocking(call)).await.map_err(|_| {
        format!("{what} did not return within {bound:?}: librdkafka's transactional producer is wedged")
    })
}

/// librdkafka's transaction calls block until the broker answers.
pub async fn blocking<R: Send + 'static>(
    call: impl FnOnce() -> Result<R, KafkaError> + Send + 'static,
) -> Result<R, KafkaError> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_index_once_in_order() {
        for (len, parts) in [(0, 2), (1, 2), (2, 2), (5, 2), (7, 3), (3, 8), (500, 2)] {
            let ranges: Vec<_> = chunks(len, parts).collect();
            assert!(ranges.len() <= parts, "{len} in {parts}: {ranges:?}");
            let indices: Vec<usize> = ranges.iter().flat_map(Clone::clone).collect();
            assert_eq!(indices, (0..len).collect::<Vec<_>>(), "{len} in {parts}");
            let sizes: Vec<usize> = ranges.iter().map(ExactSizeIterator::len).collect();
            let (least, most) = (sizes.iter().min(), sizes.iter().max());
            assert!(most.zip(least).is_none_or(|(m, l)| m - l <= 1), "{sizes:?}");
            assert!(sizes.iter().all(|&size| size > 0), "{sizes:?}");
        }
    }

    #[tokio::test]
    async fn a_transaction_call_that_does_not_return_is_wedged() {
        // As send_offsets_to_transaction waiting for a coordinator that
        // never comes back: a call parked until the test ends.
        let (_keep, parked) = std::sync::mpsc::channel::<()>();
        let wedged = bounded(
            Duration::from_millis(200),
            "send_offsets_to_transaction",
            move || {
                let _ = parked.recv();
                Ok(())
            },
        )
        .await;
        let reason = wedged.expect_err("a parked call came back");
        assert!(
            reason.contains("send_offsets_to_transaction did not return within 200ms"),
            "{reason}"
        );

        let answered = bounded(Duration::from_secs(5), "commit_transaction", || Ok(7)).await;
        assert!(matches!(answered, Ok(Ok(7))));
    }
}
