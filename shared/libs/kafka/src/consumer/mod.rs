//! The at-least-once consumer loop.
//!
//! One dispatcher polls Kafka and hands each message to its partition's task
//! through a bounded queue. When a queue is full its messages wait, in
//! order, in a backlog until the task catches up; once the backlog holds a
//! fetch's bytes (`max.partition.fetch.bytes`, 1 MiB by default) the
//! partition is paused. The dispatcher itself never blocks, so it keeps
//! polling (and keeps the group membership) while a sink waits out an
//! outage. A pause costs a fetch: librdkafka drops what it had fetched for
//! the partition and fetches it again on resume, so the bound is a fetch,
//! not a batch (a fetch is counted compressed: an lz4 one may still be cut
//! short). A paused partition is resumed once its backlog is down to half
//! that, not empty, so the fetch that resuming starts overlaps with the
//! work still queued, and the resume seeks to where it fetches from: that
//! wakes librdkafka's broker thread, which a resume alone leaves asleep for
//! up to a second when none of the broker's partitions is being fetched.
//! Pausing when the queue filled (500 messages, sheets-sink's batch)
//! refetched every batch or two on a backlog: its benchmark's batched run
//! did 12 032 commands/s, 48 204 with a fetch's bytes as the bound, 53 177
//! with the seek too.

pub(crate) mod context;
mod handler;
mod in_hand;
mod partition;
mod quota;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use sluice_dlq::DeadLetterPublisher;
use sluice_resilience::{RateLimiter, RetryPolicy};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::context::{
    AssignmentChange, LagFrom, Partition, RebalanceContext, STATISTICS_INTERVAL_MS,
};
pub use self::handler::{Handler, HandlerError, Order};
use self::partition::{BatchWindow, Shared, run_partition};
use self::quota::Quota;
use crate::metrics::{CONSUMED, PAUSED_PARTITIONS, describe_once, zero_dead_letters};
use crate::stall::StallWatch;
use crate::{KafkaConfig, KafkaSetupError};

/// How long a member that stopped heartbeating keeps its partitions. A
/// process killed without leaving its group holds them until then: at
/// librdkafka's 45 s, a SIGKILLed sink restarted at once still waited ~50 s
/// for its partitions (`make chaos`). Heartbeats come from librdkafka's own
/// thread, so a slow handler does not expire a session
/// (`max.poll.interval.ms` watches that). An operator's property wins.
pub(crate) const SESSION_TIMEOUT: (&str, &str) = ("session.timeout.ms", "10000");

/// How much librdkafka fetches of a partition at once, under its two names,
/// and its default: a partition's backlog holds this much before the
/// partition is paused, so a fetch is not dropped as soon as it arrives.
const FETCH_BYTES: [&str; 2] = ["max.partition.fetch.bytes", "fetch.message.max.bytes"];
const DEFAULT_FETCH_BYTES: usize = 1_048_576;

/// Properties a loop sets itself because its delivery guarantee depends on them.
const RESERVED: [&str; 3] = ["enable.auto.commit", "enable.auto.offset.store", "group.id"];

/// Refuses the reserved properties, and `also`, in the operator's properties.
pub(crate) fn refuse_reserved(kafka: &KafkaConfig, also: &[&str]) -> Result<(), ConsumerError> {
    let reserved = |key: &str| RESERVED.contains(&key) || also.contains(&key);
    match kafka.properties().iter().find(|(key, _)| reserved(key)) {
        Some((key, _)) => Err(ConsumerError::ReservedProperty { key: key.clone() }),
        None => Ok(()),
    }
}

/// A consumer made from `config`, its lag read `from` committed offsets or
/// its position, its stalls watched after `stall_after`, its revokes
/// waiting up to `revoke_grace` for batches in hand, subscribed to `topics`.
pub(crate) fn subscribed(
    config: rdkafka::ClientConfig,
    from: LagFrom,
    stall_after: Duration,
    revoke_grace: Duration,
    topics: &[String],
) -> Result<StreamConsumer<RebalanceContext>, ConsumerError> {
    let context = RebalanceContext::new(from, StallWatch::new(stall_after), revoke_grace);
    let consumer: StreamConsumer<RebalanceContext> =
        config
            .create_with_context(context)
            .map_err(|source| KafkaSetupError {
                client: "consumer",
                source,
            })?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&names)
        .map_err(|source| ConsumerError::Subscribe {
            topics: topics.to_vec(),
            source,
        })?;
    Ok(consumer)
}

/// How often backlogs are offered to their partition tasks again.
const BACKLOG_TICK: Duration = Duration::from_millis(10);

/// How a consumer loop consumes.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Consumer group id.
    pub group_id: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Messages queued per partition for its task; more wait in the
    /// partition's backlog (see the module docs for when it is paused).
    pub partition_buffer: usize,
    /// Messages handled at once across all partitions (a batch counts as
    /// one; under [`Order::Key`] each of its keys does).
    pub max_concurrent: usize,
    /// Most messages of one partition handed to the handler at once
    /// ([`Handler::handle_batch`]); 1 handles them singly. Keep
    /// `partition_buffer` at least this large, or batches stay small.
    pub max_batch: usize,
    /// How long a batch that is not full waits for more messages; zero
    /// takes only the messages already queued.
    pub batch_linger: Duration,
    /// Retries of a message whose handler failed with a retryable error.
    pub retry: RetryPolicy,
    /// How long a partition holds when the handler says "pause" without a
    /// `Retry-After`.
    pub pause_backoff: Duration,
    /// How long shutdown waits for messages being handled.
    pub shutdown_grace: Duration,
    /// Longest a revoke waits for the revoked partitions' batches in hand
    /// (at most `shutdown_grace`). The loop sees no SIGTERM meanwhile, so
    /// the two together must stay within the pod's termination grace.
    pub revoke_wait: Duration,
    /// How long a partition with messages waiting may stay at one offset
    /// before it is exported as stalled.
    pub stall_after: Duration,
}

/// Why the loop stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The consumer could not be created.
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    /// Subscribing failed (a topic name librdkafka refuses, say).
    #[error("subscribing to {topics:?}: {source}")]
    Subscribe {
        /// The topics.
        topics: Vec<String>,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// A property the at-least-once rule depends on was set in the Kafka
    /// properties.
    #[error(
        "kafka property {key} cannot be set for a consumer loop: it stores and commits offsets itself, after handling"
    )]
    ReservedProperty {
        /// The property.
        key: String,
    },
    /// A Kafka transaction failed for good (this instance was fenced by a
    /// newer one with the same transactional id, say).
    #[error("kafka transaction: {0}")]
    Transaction(KafkaError),
    /// librdkafka gave up on the consumer for good (a static member fenced
    /// by another with its `group.instance.id`, say); a new process must
    /// take its place.
    #[error("the consumer failed for good: {reason}")]
    Fatal {
        /// librdkafka's reason.
        reason: String,
    },
    /// A handler panicked. The loop stops rather than move past a message
    /// nobody settled; its offset was not stored.
    #[error("the handler panicked on {topic} partition {partition}")]
    HandlerPanicked {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
}

/// Consumes topics with at-least-once delivery into a [`Handler`].
pub struct ConsumerLoop<H> {
    consumer: Arc<StreamConsumer<RebalanceContext>>,
    shared: Arc<Shared<H>>,
    settings: ConsumerSettings,
    /// A backlog's bytes at which its partition is paused.
    backlog_bytes: usize,
    quota: Option<Arc<RateLimiter>>,
}

impl<H: Handler> ConsumerLoop<H> {
    /// A loop subscribed to `settings.topics`, dead-lettering through
    /// `dead_letters`.
    pub fn new(
        kafka: &KafkaConfig,
        settings: ConsumerSettings,
        handler: H,
        dead_letters: DeadLetterPublisher,
    ) -> Result<Self, ConsumerError> {
        describe_once();
        zero_dead_letters(&settings.topics);
        // Exported from the start, so dashboards and alerts see 0, not nothing.
        metrics::gauge!(PAUSED_PARTITIONS).set(0.0);
        refuse_reserved(kafka, &[])?;
        let config = kafka.client_config(&[
            ("group.id", &settings.group_id),
            // Offsets are stored by hand once a message is settled, and
            // committed in the background (and on revoke and close).
            ("enable.auto.commit", "true"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            // Never act on messages of aborted transactions.
            ("isolation.level", "read_committed"),
            // A resumed partition joins the next fetch request, which
            // waits behind the one in flight: the broker holds that up to
            // this long when the other partitions have nothing new. At
            // librdkafka's 500 ms, a sink that keeps pausing partitions
            // idled half of every second.
            ("fetch.wait.max.ms", "50"),
            SESSION_TIMEOUT,
            ("statistics.interval.ms", STATISTICS_INTERVAL_MS),
        ]);
        let backlog_bytes = FETCH_BYTES
            .iter()
            .find_map(|key| config.get(key)?.parse().ok())
            .unwrap_or(DEFAULT_FETCH_BYTES);
        let consumer = subscribed(
            config,
            LagFrom::Committed,
            settings.stall_after,
            settings.revoke_wait.min(settings.shutdown_grace),
            &settings.topics,
        )?;
        let consumer = Arc::new(consumer);
        let shared = Arc::new(Shared {
            consumer: Arc::clone(&consumer),
            handler,
            dead_letters,
            retry: settings.retry.clone(),
            pause_backoff: settings.pause_backoff,
            batch: BatchWindow {
                max: settings.max_batch.max(1),
                linger: settings.batch_linger,
            },
            in_flight: Semaphore::new(settings.max_concurrent.max(1)),
            served: std::sync::atomic::AtomicU64::new(0),
        });
        Ok(Self {
            consumer,
            shared,
            settings,
            backlog_bytes,
            quota: None,
        })
    }

    /// Paces `limiter` to the share of the topics' partitions this member
    /// owns, recomputed at each rebalance: replicas of one group together
    /// keep to the rate it was configured with (an API's quota is the
    /// fleet's, not each pod's).
    #[must_use]
    pub fn sharing(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.quota = Some(limiter);
        self
    }

    /// Consumes until `shutdown` completes, then stops taking messages, lets
    /// the ones being handled finish (up to the grace period), commits what
    /// is settled and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ConsumerError> {
        let mut dispatcher = Dispatcher {
            consumer: Arc::clone(&self.consumer),
            shared: self.shared,
            buffer: self.settings.partition_buffer.max(1),
            backlog_bytes: self.backlog_bytes,
            queues: HashMap::new(),
            backlogs: HashMap::new(),
            tasks: JoinSet::new(),
            task_partitions: HashMap::new(),
            stop_all: CancellationToken::new(),
        };
        // Ends (the task is aborted) with the loop.
        let quota = self.quota.map(|limiter| {
            Quota::start(
                limiter,
                Arc::clone(&self.consumer),
                self.settings.topics.clone(),
            )
        });
        let _stall_checks = self.consumer.context().stalls().start();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut tick = tokio::time::interval(BACKLOG_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let rebalance = |dispatcher: &mut Dispatcher<H>| {
            if dispatcher.apply(self.consumer.context().take_changes())
                && let Some(quota) = &quota
            {
                quota.rebalanced();
            }
        };
        let result = loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break Ok(()),
                received = self.consumer.recv() => match received {
                    Ok(message) => {
                        // The rebalance this recv served comes first: the
                        // message may be a newly assigned partition's first.
                        rebalance(&mut dispatcher);
                        dispatcher.dispatch(crate::headers::detach(&message));
                    }
                    // Broker trouble is reported here and retried by librdkafka.
                    Err(err) => {
                        tracing::warn!(error = %err, "consumer error");
                        self.consumer.context().stalls().consumer_error(&err);
                    }
                },
                _ = tick.tick() => {
                    if let Err(err) = dispatcher.reap_tasks() {
                        break Err(err);
                    }
                    // A revoke a recv served but did not return from comes
                    // first: a partition revoked and assigned again must
                    // not be resumed (and sought) from its old backlog.
                    rebalance(&mut dispatcher);
                    dispatcher.drain_backlogs();
                }
            }
            rebalance(&mut dispatcher);
        };
        dispatcher.stop(self.settings.shutdown_grace).await;
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => {
                tracing::warn!(error = %err, "final commit failed; settled messages may be handled again")
            }
        }
        result
    }
}

/// Routes messages to partition tasks, pausing partitions that fall behind.
struct Dispatcher<H> {
    consumer: Arc<StreamConsumer<RebalanceContext>>,
    shared: Arc<Shared<H>>,
    buffer: usize,
    backlog_bytes: usize,
    queues: HashMap<Partition, PartitionQueue>,
    /// Messages of partitions that fell behind, in order, not yet queued.
    backlogs: HashMap<Partition, Backlog>,
    tasks: JoinSet<()>,
    /// Which partition each running task serves, to name it if it panics.
    task_partitions: HashMap<tokio::task::Id, Partition>,
    stop_all: CancellationToken,
}

/// A partition's messages waiting for room in its queue.
#[derive(Default)]
struct Backlog {
    messages: VecDeque<OwnedMessage>,
    /// The messages' bytes, as [`footprint`] counts them.
    bytes: usize,
    /// The offset after the last message received.
    next_offset: i64,
    /// Whether the partition is paused (fetching stopped).
    paused: bool,
}

impl Backlog {
    fn push_back(&mut self, message: OwnedMessage) {
        self.bytes += footprint(&message);
        self.next_offset = message.offset() + 1;
        self.messages.push_back(message);
    }

    fn pop_front(&mut self) -> Option<OwnedMessage> {
        let message = self.messages.pop_front()?;
        self.bytes -= footprint(&message);
        Some(message)
    }

    fn push_front(&mut self, message: OwnedMessage) {
        self.bytes += footprint(&message);
        self.messages.push_front(message);
    }
}

/// What a message counts for in a backlog: its payload, key and topic
/// name and the struct holding them, so empty messages count too. Headers
/// are left out (a few trace ids).
fn footprint(message: &OwnedMessage) -> usize {
    std::mem::size_of::<OwnedMessage>()
        + message.topic().len()
        + message.payload().map_or(0, <[u8]>::len)
        + message.key().map_or(0, <[u8]>::len)
}

struct PartitionQueue {
    sender: mpsc::Sender<OwnedMessage>,
    stop: CancellationToken,
    /// `sluice_consumed_total` of the partition's topic, resolved once.
    consumed: metrics::Counter,
}

impl<H: Handler> Dispatcher<H> {
    fn dispatch(&mut self, message: OwnedMessage) {
        let partition = (message.topic().to_owned(), message.partition());
        self.consumer
            .context()
            .stalls()
            .received(&partition.0, partition.1, message.offset());
        let queue = self.queues.entry(partition.clone()).or_insert_with(|| {
            let (sender, receiver) = mpsc::channel(self.buffer);
            let stop = self.stop_all.child_token();
            let task = self.tasks.spawn(run_partition(
                Arc::clone(&self.shared),
                partition.0.clone(),
                receiver,
                stop.clone(),
            ));
            self.task_partitions.insert(task.id(), partition.clone());
            self.consumer
                .context()
                .in_hand()
                .watch(partition.clone(), stop.clone());
            let consumed = metrics::counter!(CONSUMED, "topic" => partition.0.clone());
            PartitionQueue {
                sender,
                stop,
                consumed,
            }
        });
        queue.consumed.increment(1);
        // Behind a backlog, in order; else queued if there is room.
        let message = if self.backlogs.contains_key(&partition) {
            message
        } else {
            match queue.sender.try_send(message) {
                Ok(()) => return,
                // A closed queue means a panicked task: reap_tasks ends the loop.
                Err(
                    mpsc::error::TrySendError::Full(message)
                    | mpsc::error::TrySendError::Closed(message),
                ) => message,
            }
        };
        let backlog = self.backlogs.entry(partition.clone()).or_default();
        backlog.push_back(message);
        if !backlog.paused && backlog.bytes >= self.backlog_bytes {
            backlog.paused = true;
            self.set_paused(&partition, true);
        }
    }

    /// Offers backlogged messages to their tasks again; resumes partitions
    /// whose backlog is down to half its bound, and forgets empty backlogs.
    fn drain_backlogs(&mut self) {
        let mut resume = Vec::new();
        let mut caught_up = Vec::new();
        for (partition, backlog) in &mut self.backlogs {
            let Some(queue) = self.queues.get(partition) else {
                continue;
            };
            while let Some(message) = backlog.pop_front() {
                if let Err(err) = queue.sender.try_send(message) {
                    let (mpsc::error::TrySendError::Full(message)
                    | mpsc::error::TrySendError::Closed(message)) = err;
                    backlog.push_front(message);
                    break;
                }
            }
            if backlog.paused && backlog.bytes <= self.backlog_bytes / 2 {
                backlog.paused = false;
                resume.push((partition.clone(), backlog.next_offset));
            }
            if backlog.messages.is_empty() {
                caught_up.push(partition.clone());
            }
        }
        for (partition, next) in resume {
            self.resume(&partition, next);
        }
        for partition in caught_up {
            self.backlogs.remove(&partition);
        }
    }

    /// Applies the rebalances since the last call; whether there were any.
    fn apply(&mut self, changes: Vec<AssignmentChange>) -> bool {
        let changed = !changes.is_empty();
        for change in changes {
            match change {
                AssignmentChange::Revoked(partitions) => {
                    for partition in partitions {
                        if let Some(queue) = self.queues.remove(&partition) {
                            queue.stop.cancel();
                        }
                        if self.backlogs.remove(&partition).is_some_and(|b| b.paused) {
                            metrics::gauge!(PAUSED_PARTITIONS).decrement(1);
                        }
                    }
                }
                // librdkafka keeps a partition paused across a revoke and a
                // later assign; a newly assigned partition starts flowing.
                AssignmentChange::Assigned(partitions) => {
                    if !partitions.is_empty() {
                        self.shared.handler.assigned(&partitions);
                    }
                    let list = partition_list(&partitions);
                    if let Err(err) = self.consumer.resume(&list) {
                        tracing::debug!(error = %err, "resuming newly assigned partitions");
                    }
                }
            }
        }
        changed
    }

    /// Collects finished partition tasks; a panic ends the loop.
    fn reap_tasks(&mut self) -> Result<(), ConsumerError> {
        while let Some(finished) = self.tasks.try_join_next_with_id() {
            let (id, panicked) = match finished {
                Ok((id, ())) => (id, false),
                Err(err) => (err.id(), err.is_panic()),
            };
            let partition = self.task_partitions.remove(&id);
            if panicked {
                let (topic, partition) = partition.unwrap_or_default();
                return Err(ConsumerError::HandlerPanicked { topic, partition });
            }
        }
        Ok(())
    }

    /// Stops every task, waiting up to `grace` for messages being handled.
    async fn stop(mut self, grace: Duration) {
        self.stop_all.cancel();
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                ?grace,
                "messages still being handled at shutdown; they will be handled again"
            );
            self.tasks.abort_all();
        }
    }

    /// Resumes `partition`, fetching from `next`. A resume alone leaves
    /// librdkafka's broker thread asleep until its next wake-up, up to a
    /// second, when none of that broker's partitions is being fetched (the
    /// loop's test saw 1.0 s from each resume to its fetch); a seek to
    /// where the resume fetches from wakes it. The seek carries no leader
    /// epoch (rdkafka does not give a message's), so that one fetch skips
    /// librdkafka's check for a log truncated by an unclean leader change.
    fn resume(&self, partition: &Partition, next: i64) {
        self.set_paused(partition, false);
        let (topic, partition) = (partition.0.as_str(), partition.1);
        if let Err(err) = self
            .consumer
            .seek(topic, partition, Offset::Offset(next), Duration::ZERO)
        {
            tracing::debug!(topic, partition, error = %err, "seeking a resumed partition");
        }
    }

    fn set_paused(&self, partition: &Partition, paused: bool) {
        let list = partition_list(std::slice::from_ref(partition));
        let result = if paused {
            self.consumer.pause(&list)
        } else {
            self.consumer.resume(&list)
        };
        match result {
            Ok(()) if paused => metrics::gauge!(PAUSED_PARTITIONS).increment(1),
            Ok(()) => metrics::gauge!(PAUSED_PARTITIONS).decrement(1),
            Err(err) => {
                tracing::warn!(topic = partition.0, partition = partition.1, paused, error = %err,
                "changing the partition's pause state failed")
            }
        }
        tracing::debug!(
            topic = partition.0,
            partition = partition.1,
            paused,
            "backpressure"
        );
    }
}

fn partition_list(partitions: &[Partition]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for (topic, partition) in partitions {
        list.add_partition(topic, *partition);
    }
    list
}
