//! Putting a request's events on Kafka: a single event with the idempotent
//! producer, a batch inside one Kafka transaction. Either every event of a
//! batch is visible to read_committed consumers (all of Sluice's) or none
//! is, whatever fails between the first send and the last: a broker gone
//! mid-batch, a topic that vanished, a refused record. Checks alone could
//! not promise that, since the second event can fail after the first was
//! acknowledged. Events that each fit their topic are never refused for
//! their sum: a MessageSet the broker refuses as too large is sent again a
//! record per set.
//!
//! librdkafka runs one transaction per producer at a time, so batches take
//! a producer from a small pool, made on first use (a pool of N gives N
//! concurrent batches). Their `transactional.id`s are `<prefix>-<slot>`: a
//! restarted instance with the same prefix fences its predecessor's
//! producers and aborts what they left open at once, instead of after the
//! transaction timeout, during which read_committed readers of those
//! partitions would wait.

use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use sluice_kafka::{
    KafkaConfig, KafkaSetupError, RECORD_OVERHEAD, TopicLimits, blocking, idempotent_producer,
};
use sluice_telemetry::liveness::WatchedProducer;
use sluice_telemetry::owned_headers;
use tokio::sync::mpsc;

/// An encoded event, ready to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Where it goes.
    pub topic: String,
    /// The aggregate id.
    pub key: String,
    /// Its Avro value (registry framing included).
    pub value: Vec<u8>,
    /// Its headers.
    pub headers: Vec<(&'static str, String)>,
}

impl Outgoing {
    fn size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.key.len() + self.value.len() + headers + RECORD_OVERHEAD
    }

    fn record(&self) -> FutureRecord<'_, String, Vec<u8>> {
        let headers = owned_headers(self.headers.iter().map(|(key, value)| (key, Some(value))));
        FutureRecord::to(&self.topic)
            .key(&self.key)
            .payload(&self.value)
            .headers(headers)
    }
}

/// Why events were not put on Kafka: none of them is visible to readers,
/// but for [`PublishError::Undecided`].
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Event `index` can never be taken by its topic.
    #[error("event {index}: {reason}")]
    TooLarge {
        /// Its place in the request.
        index: usize,
        /// Its size and the topic's limit.
        reason: String,
    },
    /// Kafka could not take them now; a retry may succeed.
    #[error("Kafka did not take the events: {0}")]
    Unavailable(String),
    /// A commit librdkafka had left open ended in an error that does not
    /// say how: the events may be visible (a producer with the same
    /// transactional id completes a commit the coordinator prepared).
    #[error("the outcome of the events' commit is unknown: {0}")]
    Undecided(String),
}

/// Sends a request's events; see the module header.
pub struct Publisher {
    /// A fatal error of this one ends the process; a batch producer's only
    /// ends its slot's producer (see [`ProducerPool::give_back`]).
    single: WatchedProducer,
    pool: ProducerPool,
    limits: TopicLimits,
    ack_timeout: Duration,
}

impl Publisher {
    /// `max_transactions` batches at once, each producer's id
    /// `<transactional_id_prefix>-<slot>`; every send waits at most `ack_timeout`.
    pub fn new(
        kafka: &KafkaConfig,
        transactional_id_prefix: &str,
        max_transactions: usize,
        ack_timeout: Duration,
    ) -> Result<Self, KafkaSetupError> {
        // message.timeout.ms is the ack timeout, so an event refused here is
        // never delivered later behind the client's back.
        let kafka = kafka
            .clone()
            .with_property("message.timeout.ms", ack_timeout.as_millis().to_string());
        Ok(Self {
            single: idempotent_producer(&kafka)?,
            pool: ProducerPool::new(&kafka, transactional_id_prefix, max_transactions),
            limits: TopicLimits::new(&kafka)?,
            ack_timeout,
        })
    }

    /// Puts `events` on Kafka: `Ok` once every one is acknowledged (a batch:
    /// committed); an error means none is visible to read_committed readers.
    pub async fn publish(&self, events: &[Outgoing]) -> Result<(), PublishError> {
        for (index, event) in events.iter().enumerate() {
            let limit = self.limits.max_message_bytes(&event.topic).await;
            if event.size() > limit {
                return Err(too_large(index, event, &format!("takes at most {limit}")));
            }
        }
        let sent = match events {
            [event] => send(&self.single, event, self.ack_timeout)
                .await
                .map_err(|err| refusal(0, event, err)),
            events => self.in_transaction(events, Pace::Together).await,
        };
        match sent {
            // Every event fits its topic as far as the check above knows
            // (a limit the broker did not tell, or changed since, is found
            // out here, and again on the way below), yet the broker
            // refused one as too large: librdkafka had put it in one
            // MessageSet with others of its partition (of this request, or
            // of a concurrent one on the shared producer) past the topic's
            // limit, and does not split a refused set as Java's producer
            // does. Nothing was written; once more, a record per set.
            Err(PublishError::TooLarge { .. }) => self.in_transaction(events, Pace::OneByOne).await,
            sent => sent,
        }
    }

    async fn in_transaction(&self, events: &[Outgoing], pace: Pace) -> Result<(), PublishError> {
        let producer = self.pool.take(self.ack_timeout).await?;
        if let Err(err) = producer.begin_transaction() {
            let failed = Err(unavailable(err));
            self.pool.give_back(producer, &failed);
            return failed;
        }
        let refused = match pace {
            Pace::Together => {
                let sends = events
                    .iter()
                    .map(|event| send(&producer, event, self.ack_timeout));
                let sent = futures::future::join_all(sends).await;
                let mut refusals = sent
                    .into_iter()
                    .zip(events)
                    .enumerate()
                    .filter_map(|(index, (sent, event))| {
                        sent.err().map(|err| refusal(index, event, err))
                    })
                    .collect::<Vec<_>>();
                // Once one set is refused the transaction can only abort,
                // and the others may fail for that; a refusal as too large
                // is what tells the cause.
                let at = refusals
                    .iter()
                    .position(|refused| matches!(refused, PublishError::TooLarge { .. }))
                    .unwrap_or(0);
                (at < refusals.len()).then(|| refusals.swap_remove(at))
            }
            Pace::OneByOne => {
                let mut refused = None;
                for (index, event) in events.iter().enumerate() {
                    if let Err(err) = send(&producer, event, self.ack_timeout).await {
                        refused = Some(refusal(index, event, err));
                        break;
                    }
                }
                refused
            }
        };
        let outcome = match refused {
            Some(refused) => {
                self.abort(&producer).await;
                Err(refused)
            }
            None => self.commit(&producer).await,
        };
        self.pool.give_back(producer, &outcome);
        outcome
    }

    /// Commits. A commit librdkafka leaves open (it timed out and carries
    /// on in the background: the coordinator may have it) is asked again
    /// until Kafka decides it, with no upper bound: answering "not
    /// accepted" while it is open would deny events that may then land.
    /// Meanwhile a retry of the request finds its key in progress, and
    /// batches beyond the pool's free producers are answered 503.
    async fn commit(&self, producer: &FutureProducer) -> Result<(), PublishError> {
        let started = Instant::now();
        let mut left_open = false;
        tracing::debug!("committing a batch's transaction");
        loop {
            let committing = producer.clone();
            let timeout = self.ack_timeout;
            let called = Instant::now();
            let err = match blocking(move || committing.commit_transaction(timeout)).await {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            let (retriable, must_abort) = match &err {
                KafkaError::Transaction(rd) => (rd.is_retriable(), rd.txn_requires_abort()),
                _ => (false, false),
            };
            if !retriable {
                self.abort(producer).await;
                // Refused before any open outcome, the transaction can only
                // abort. Any other end (fatal: fenced by a producer with
                // the same id, which completes a commit the coordinator
                // prepared) does not say which way it went.
                return Err(if must_abort && !left_open {
                    unavailable(err)
                } else {
                    PublishError::Undecided(err.to_string())
                });
            }
            left_open = true;
            tracing::warn!(
                waited_ms = started.elapsed().as_millis(),
                error = %err,
                "a batch's commit is still undecided; asking again"
            );
            // An answer well before the timeout (no coordinator known yet)
            // is not asked again at once.
            if called.elapsed() < timeout / 2 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    async fn abort(&self, producer: &FutureProducer) {
        let aborting = producer.clone();
        let timeout = self.ack_timeout;
        if let Err(err) = blocking(move || aborting.abort_transaction(timeout)).await {
            // The producer is dropped from the pool (see give_back); its
            // transaction ends when the coordinator times it out or the
            // next producer with its id starts.
            tracing::warn!(error = %err, "aborting a batch's transaction failed");
        }
    }
}

/// How a transaction's events are sent.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// All at once: librdkafka may put several in one MessageSet.
    Together,
    /// Each once the one before is acknowledged: a MessageSet each.
    OneByOne,
}

async fn send<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    event: &Outgoing,
    ack_timeout: Duration,
) -> Result<(), KafkaError> {
    producer
        .send(event.record(), ack_timeout)
        .await
        .map(drop)
        .map_err(|(err, _)| err)
}

/// A refusal that no retry changes is named; the rest are transient.
fn refusal(index: usize, event: &Outgoing, err: KafkaError) -> PublishError {
    if err.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge) {
        return too_large(index, event, "refused it as too large");
    }
    unavailable(err)
}

fn too_large(index: usize, event: &Outgoing, refusal: &str) -> PublishError {
    PublishError::TooLarge {
        index,
        reason: format!(
            "is {} bytes as a Kafka record, and topic {} {refusal}; \
             make the event smaller or raise the topic's max.message.bytes",
            event.size(),
            event.topic
        ),
    }
}

fn unavailable(err: KafkaError) -> PublishError {
    PublishError::Unavailable(err.to_string())
}

/// Transactional producers, one per concurrent batch: a slot is taken
/// from the channel and sent back when its batch is done.
struct ProducerPool {
    kafka: KafkaConfig,
    prefix: String,
    slots: tokio::sync::Mutex<mpsc::Receiver<Slot>>,
    give: mpsc::Sender<Slot>,
}

/// A pool slot: its number, and its producer once made.
struct Slot {
    number: usize,
    producer: Option<FutureProducer>,
}

impl ProducerPool {
    fn new(kafka: &KafkaConfig, prefix: &str, size: usize) -> Self {
        let size = size.max(1);
        let (give, slots) = mpsc::channel(size);
        for number in 0..size {
            // The channel holds exactly `size` slots.
            let _ = give.try_send(Slot {
                number,
                producer: None,
            });
        }
        Self {
            kafka: kafka.clone(),
            prefix: prefix.to_owned(),
            slots: tokio::sync::Mutex::new(slots),
            give,
        }
    }

    /// A producer whose transactions are initialised, waiting for a free slot.
    async fn take(&self, timeout: Duration) -> Result<PooledProducer, PublishError> {
        // The wait for the lock counts: requests queue on it while every
        // producer is busy.
        let slot = tokio::time::timeout(timeout, async { self.slots.lock().await.recv().await })
            .await
            .ok()
            .flatten()
            .ok_or_else(|| PublishError::Unavailable("every batch producer is busy".into()))?;
        let producer = match slot.producer {
            Some(producer) => producer,
            None => match self.start(slot.number, timeout).await {
                Ok(producer) => producer,
                Err(err) => {
                    self.release(slot.number, None);
                    return Err(unavailable(err));
                }
            },
        };
        Ok(PooledProducer {
            number: slot.number,
            producer,
        })
    }

    async fn start(&self, number: usize, timeout: Duration) -> Result<FutureProducer, KafkaError> {
        let producer: FutureProducer = self
            .kafka
            .client_config(&[
                ("transactional.id", &format!("{}-{number}", self.prefix)),
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("compression.type", "lz4"),
                // The commit waits for every send anyway.
                ("linger.ms", "0"),
                // A transaction its instance abandoned (kill -9) holds back
                // read_committed readers until the coordinator aborts it.
                (
                    "transaction.timeout.ms",
                    &(timeout.as_millis() * 2).to_string(),
                ),
            ])
            .create()?;
        let initialising = producer.clone();
        blocking(move || initialising.init_transactions(timeout)).await?;
        Ok(producer)
    }

    /// Returns a producer; one whose transaction failed is dropped, and its
    /// slot makes a new one (which fences the old) next time. Besides a
    /// state unknown or fatal, an abort after the broker refused a record
    /// leaves librdkafka bumping the producer's epoch in the background,
    /// and it purges what the next transaction sends meanwhile (seen:
    /// `PurgeQueue` on the first send after such an abort).
    fn give_back(&self, pooled: PooledProducer, outcome: &Result<(), PublishError>) {
        if outcome.is_ok() {
            self.release(pooled.number, Some(pooled.producer));
            return;
        }
        self.release(pooled.number, None);
        // Dropping a producer flushes, joins its threads and destroys it:
        // blocking work, off the async workers.
        tokio::task::spawn_blocking(move || drop(pooled.producer));
    }

    fn release(&self, number: usize, producer: Option<FutureProducer>) {
        // Never full: only taken slots come back.
        let _ = self.give.try_send(Slot { number, producer });
    }
}

/// A producer taken from the pool.
struct PooledProducer {
    number: usize,
    producer: FutureProducer,
}

impl std::ops::Deref for PooledProducer {
    type Target = FutureProducer;

    fn deref(&self) -> &FutureProducer {
        &self.producer
    }
}
