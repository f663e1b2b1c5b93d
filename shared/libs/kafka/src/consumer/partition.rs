//! One partition's task: handles its messages in order and stores each
//! offset only once the message is settled and what its handling owes Kafka
//! is acknowledged.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use sluice_contracts::types::DeadLetterClass;
use sluice_dlq::{DeadLetterPublisher, Failure};
use sluice_resilience::RetryPolicy;
use tokio::sync::{Semaphore, SemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::context::RebalanceContext;
use super::{Handler, Order, in_hand};
use crate::Owed;
use crate::metrics::{DEAD_LETTERED, HANDLED, PROCESSING};
use crate::skip::{count_if_skipped, is_tombstone};
use crate::verdict::{Tries, Verdict, attempt};

/// Longest wait between two tries to write a dead letter or an owed record.
const MAX_RESEND_BACKOFF: Duration = Duration::from_secs(30);

/// What every partition task of one loop shares.
pub(crate) struct Shared<H> {
    pub consumer: Arc<StreamConsumer<RebalanceContext>>,
    pub handler: H,
    pub dead_letters: DeadLetterPublisher,
    pub retry: RetryPolicy,
    pub pause_backoff: Duration,
    pub batch: BatchWindow,
    /// Bounds the batches handled at once across partitions.
    pub in_flight: Semaphore,
    /// Calls of the handler that succeeded, across partitions: the sign
    /// that the dependency works while one message keeps failing.
    pub served: AtomicU64,
}

/// How many queued messages go to the handler at once, and how long to wait
/// for them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchWindow {
    pub max: usize,
    pub linger: Duration,
}

/// How a message was settled.
#[derive(Clone, Copy)]
enum Settled {
    Done,
    /// Passed over by design (a tombstone).
    Skipped,
    DeadLettered(DeadLetterClass),
}

/// Handles the partition's messages until its queue closes or `stop` fires.
/// A stop lets the messages in hand that are settled have their offsets
/// stored but starts no other; what was queued is handled again by whoever
/// owns the partition next. After a revoke the store fails, as the
/// partition is gone.
///
/// What a batch owes Kafka ([`Owed`]) is sent as soon as the batch is
/// settled, while the next batches are gathered and handled (up to
/// [`OWING_DEPTH`] wait for it), if messages are waiting; its offsets are
/// stored once Kafka acknowledged it, and before the next batch's. The
/// partition stays in hand (a revoke waits) until nothing handled is left
/// unstored.
pub(crate) async fn run_partition<H: Handler>(
    shared: Arc<Shared<H>>,
    topic: String,
    mut queue: mpsc::Receiver<OwnedMessage>,
    stop: CancellationToken,
) {
    let counters = Counters::new(&topic);
    let in_hand = shared.consumer.context().in_hand();
    let mut held: Option<in_hand::Batch<'_>> = None;
    let mut owing: VecDeque<Owing> = VecDeque::new();
    loop {
        let first = if owing.is_empty() {
            let next = tokio::select! {
                biased;
                () = stop.cancelled() => None,
                message = queue.recv() => message,
            };
            match next {
                Some(first) => first,
                None => return,
            }
        } else {
            // Another batch only if a message is waiting: else the offsets
            // are stored now rather than after the queue's next message.
            match waiting(&mut queue, &stop) {
                Some(first) => first,
                None => {
                    if !store_all(&mut owing, &shared, &counters).await {
                        return;
                    }
                    held = None;
                    continue;
                }
            }
        };
        let partition = (topic.clone(), first.partition());
        // The batch is in hand from before it is handled until its offsets
        // are stored: a revoke waits for it.
        let handled = async {
            let batch = gather(first, &mut queue, shared.batch).await;
            if held.is_none() && !in_hand.until_free(&partition, &stop).await {
                return None;
            }
            // Under Order::Key each key takes a share of its own instead.
            let mut slot = Slot::new(&shared.in_flight);
            if H::ORDER == Order::Partition && !slot.take(&stop).await {
                return None;
            }
            if held.is_none() {
                held = Some(in_hand.begin(&partition, &stop).await?);
            } else if stop.is_cancelled() {
                return None;
            }
            let started = Instant::now();
            let (outcomes, owed) = settle_batch(&shared, &batch, &mut slot, &stop).await?;
            Some(Owing::new(batch, outcomes, owed, started, &stop))
        };
        let oldest = if owing.len() >= OWING_DEPTH {
            owing.pop_front()
        } else {
            None
        };
        let stored = async {
            match oldest {
                Some(previous) => previous.store(&shared, &counters).await,
                None => true,
            }
        };
        let (handled, stored) = tokio::join!(handled, stored);
        if !stored {
            return;
        }
        let Some(handled) = handled else {
            // Stopped: what was handled before is stored, once Kafka has
            // its records, as the revoke waits for; then no more.
            store_all(&mut owing, &shared, &counters).await;
            return;
        };
        owing.push_back(handled);
    }
}

/// Stores the owed batches in order, each once Kafka has its records; false
/// when one could not be (those after it are left unstored).
async fn store_all<H: Handler>(
    owing: &mut VecDeque<Owing>,
    shared: &Shared<H>,
    counters: &Counters,
) -> bool {
    while let Some(previous) = owing.pop_front() {
        if !previous.store(shared, counters).await {
            return false;
        }
    }
    true
}

/// Batches whose records may wait for Kafka's acknowledgement while the
/// partition's next ones are handled. One, with the records sent at once
/// (`linger.ms` 0), bound a lane to the round trip: erp-sink did 2 296,
/// 2 229 and 1 177 commands/s in its benchmark; eight, with the records
/// lingering 5 ms, 3 506, 3 488 and 3 073 (the same runs, alternating).
const OWING_DEPTH: usize = 8;

/// A settled batch whose offsets wait for what its handling owes Kafka.
struct Owing {
    batch: Vec<OwnedMessage>,
    outcomes: Vec<Settled>,
    acknowledged: tokio::task::JoinHandle<bool>,
    started: Instant,
}

impl Owing {
    /// Starts sending what is owed, on a task of its own, until Kafka
    /// acknowledged all of it or a failed send meets `stop`.
    fn new(
        batch: Vec<OwnedMessage>,
        outcomes: Vec<Settled>,
        owed: Owed,
        started: Instant,
        stop: &CancellationToken,
    ) -> Self {
        let stop = stop.clone();
        let acknowledged = tokio::spawn(async move {
            let acknowledged = owed.records().iter().map(|record| {
                until_acknowledged(
                    &stop,
                    || record.deliver(),
                    |err, wait| {
                        tracing::warn!(topic = record.topic, key = record.key, error = %err, ?wait,
                        "a handled message's record not acknowledged; sending it again");
                    },
                )
            });
            futures::future::join_all(acknowledged)
                .await
                .into_iter()
                .all(|acknowledged| acknowledged)
        });
        Self {
            batch,
            outcomes,
            acknowledged,
            started,
        }
    }

    /// Waits until Kafka acknowledged what is owed, then stores the batch's
    /// offsets; false (nothing stored) when a send failed and `stop` fired
    /// before it was tried again.
    async fn store<H: Handler>(self, shared: &Shared<H>, counters: &Counters) -> bool {
        let acknowledged = match self.acknowledged.await {
            Ok(acknowledged) => acknowledged,
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Err(_cancelled) => false,
        };
        if !acknowledged {
            return false;
        }
        for (message, settled) in self.batch.iter().zip(self.outcomes) {
            // The at-least-once rule: the offset is stored (for the next
            // auto-commit) only now that the message is done or dead-lettered.
            if let Err(err) =
                shared
                    .consumer
                    .store_offset(message.topic(), message.partition(), message.offset())
            {
                tracing::warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(),
                    error = %err, "offset not stored; the message will be handled again");
            }
            shared.consumer.context().stalls().settled(
                message.topic(),
                message.partition(),
                message.offset(),
            );
            counters.count(settled);
            counters
                .processing
                .record(self.started.elapsed().as_secs_f64());
        }
        true
    }
}

/// A partition's handling metrics.
struct Counters {
    topic: String,
    done: metrics::Counter,
    dead_lettered: metrics::Counter,
    skipped: metrics::Counter,
    processing: metrics::Histogram,
}

impl Counters {
    fn new(topic: &str) -> Self {
        let counter = |outcome: &'static str| metrics::counter!(HANDLED, "topic" => topic.to_owned(), "outcome" => outcome);
        Self {
            topic: topic.to_owned(),
            done: counter("done"),
            dead_lettered: counter("dead_lettered"),
            skipped: counter("skipped"),
            processing: metrics::histogram!(PROCESSING, "topic" => topic.to_owned()),
        }
    }

    fn count(&self, settled: Settled) {
        match settled {
            Settled::Done => self.done.increment(1),
            Settled::Skipped => self.skipped.increment(1),
            Settled::DeadLettered(class) => {
                self.dead_lettered.increment(1);
                metrics::counter!(DEAD_LETTERED, "topic" => self.topic.clone(), "class" => class.as_str())
                    .increment(1);
            }
        }
    }
}

/// The queue's next message if one is waiting now and `stop` has not fired.
fn waiting(
    queue: &mut mpsc::Receiver<OwnedMessage>,
    stop: &CancellationToken,
) -> Option<OwnedMessage> {
    if stop.is_cancelled() {
        return None;
    }
    queue.try_recv().ok()
}

/// A batch from `first` on, in order: what else is queued or arrives
/// within the linger, up to the window's size.
async fn gather(
    first: OwnedMessage,
    queue: &mut mpsc::Receiver<OwnedMessage>,
    window: BatchWindow,
) -> Vec<OwnedMessage> {
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + window.linger;
    while batch.len() < window.max {
        match queue.try_recv() {
            Ok(message) => batch.push(message),
            Err(_) if window.linger.is_zero() => break,
            Err(_) => match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(message)) => batch.push(message),
                Ok(None) | Err(_) => break,
            },
        }
    }
    batch
}

/// Settles a batch: handled as one unit until done, held through outages;
/// when it fails for good, message by message (and so, from the start, a
/// batch of one or one holding a tombstone); under [`Order::Key`], its keys
/// at once. `None` when stopped first.
async fn settle_batch<H: Handler>(
    shared: &Shared<H>,
    batch: &[OwnedMessage],
    slot: &mut Slot<'_>,
    stop: &CancellationToken,
) -> Option<(Vec<Settled>, Owed)> {
    let [first, ..] = batch else {
        return Some((Vec::new(), Owed::nothing()));
    };
    if H::ORDER == Order::Key {
        return Some(settle_by_key(shared, batch, stop).await);
    }
    if batch.len() == 1 || batch.iter().any(is_tombstone) {
        return Some(settle_each(shared, batch, slot, stop).await);
    }
    let span = sluice_telemetry::batch_span(batch);
    let handled = until_settled(shared, first, slot, stop, "handle_batch", || {
        shared.handler.handle_batch(batch)
    })
    .instrument(span)
    .await?;
    match handled {
        Ok(owed) => Some((vec![Settled::Done; batch.len()], owed)),
        Err(failure) => {
            tracing::info!(topic = first.topic(), partition = first.partition(), size = batch.len(),
                error = %failure.message, "batch failed; handling its messages one by one");
            Some(settle_each(shared, batch, slot, stop).await)
        }
    }
}

/// Settles a batch's keys at once, each key's messages in order on a share
/// of `in_flight` of its own. A stop starts no other key or message; the
/// outcomes are then those before the batch's first unsettled message, and
/// what every settled message owes is still written (a message of another
/// key after it is handled again by the next owner: at least once).
async fn settle_by_key<H: Handler>(
    shared: &Shared<H>,
    batch: &[OwnedMessage],
    stop: &CancellationToken,
) -> (Vec<Settled>, Owed) {
    let keys = by_key(batch);
    let settled = futures::future::join_all(keys.iter().map(|indices| async move {
        let mut slot = Slot::new(&shared.in_flight);
        if !slot.take(stop).await {
            return (Vec::new(), Owed::nothing());
        }
        let messages: Vec<&OwnedMessage> = indices.iter().map(|&index| &batch[index]).collect();
        settle_each(shared, messages, &mut slot, stop).await
    }))
    .await;
    let mut outcomes = vec![None; batch.len()];
    let mut owed = Owed::nothing();
    for (indices, (settled, also_owed)) in keys.iter().zip(settled) {
        for (&index, settled) in indices.iter().zip(settled) {
            outcomes[index] = Some(settled);
        }
        owed = owed.and(also_owed);
    }
    (
        outcomes.into_iter().map_while(|settled| settled).collect(),
        owed,
    )
}

/// The positions of `batch`'s messages by key, each key's in order, the
/// keys in the order they first appear (messages without a key are one key).
fn by_key(batch: &[OwnedMessage]) -> Vec<Vec<usize>> {
    let mut keys: Vec<Vec<usize>> = Vec::new();
    let mut index: HashMap<Option<&[u8]>, usize> = HashMap::new();
    for (position, message) in batch.iter().enumerate() {
        let key = *index.entry(message.key()).or_insert_with(|| {
            keys.push(Vec::new());
            keys.len() - 1
        });
        keys[key].push(position);
    }
    keys
}

/// Settles `messages` one by one, in order, each in its span; when
/// stopped, those settled before (only their offsets are stored): a stop
/// starts no other.
async fn settle_each<'m, H: Handler>(
    shared: &Shared<H>,
    messages: impl IntoIterator<Item = &'m OwnedMessage>,
    slot: &mut Slot<'_>,
    stop: &CancellationToken,
) -> (Vec<Settled>, Owed) {
    let mut outcomes = Vec::new();
    let mut owed = Owed::nothing();
    for message in messages {
        if stop.is_cancelled() {
            break;
        }
        let span = sluice_telemetry::message_span(message);
        // Stopped: the messages settled so far are stored, no more.
        let Some((settled, also_owed)) = settle(shared, message, slot, stop).instrument(span).await
        else {
            break;
        };
        outcomes.push(settled);
        owed = owed.and(also_owed);
    }
    (outcomes, owed)
}

/// Handles `message` until it is done or dead-lettered; `None` when stopped
/// first. Retryable errors are retried by the policy; a pause holds the
/// partition (its queue fills and the dispatcher pauses it) without spending
/// the message's attempts.
async fn settle<H: Handler>(
    shared: &Shared<H>,
    message: &OwnedMessage,
    slot: &mut Slot<'_>,
    stop: &CancellationToken,
) -> Option<(Settled, Owed)> {
    if is_tombstone(message) {
        count_if_skipped(message);
        return Some((Settled::Skipped, Owed::nothing()));
    }
    let handled = until_settled(shared, message, slot, stop, "handle", || {
        shared.handler.handle(message)
    })
    .await?;
    match handled {
        Ok(owed) => Some((Settled::Done, owed)),
        Err(failure) => {
            let class = failure.class;
            shared.handler.given_up(message, &failure).await;
            dead_letter(&shared.dead_letters, message, failure, stop)
                .await
                .then_some((Settled::DeadLettered(class), Owed::nothing()))
        }
    }
}

/// Runs `call` (the handler, for `message` or the batch it starts) until it
/// succeeds or fails for good: retryable errors through the policy, a pause
/// holding the partition; the retry budget is the message's across holds
/// ([`Tries`]). `None` when stopped while holding.
async fn until_settled<H, F, Fut>(
    shared: &Shared<H>,
    message: &OwnedMessage,
    slot: &mut Slot<'_>,
    stop: &CancellationToken,
    operation: &str,
    mut call: F,
) -> Option<Result<Owed, Failure>>
where
    H: Handler,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Owed, H::Error>>,
{
    let mut tries = Tries::new(&shared.served);
    loop {
        let handled = attempt(
            &shared.retry,
            shared.pause_backoff,
            &mut tries,
            &shared.served,
            operation,
            &mut call,
        )
        .await;
        match handled {
            Ok(owed) => {
                shared.served.fetch_add(1, Ordering::Relaxed);
                return Some(Ok(owed));
            }
            Err(Verdict::DeadLetter(failure)) => return Some(Err(failure)),
            Err(Verdict::Hold { wait, reason }) => {
                // Up to a fifth more: partitions held by one open breaker
                // wake apart, so its trial call goes to any of them.
                let wait = wait.mul_f64(1.0 + fastrand::f64() / 5.0);
                tracing::warn!(topic = message.topic(), partition = message.partition(), error = %reason, ?wait,
                    "dependency unavailable; holding the partition");
                slot.give_back();
                if !sleep_unless_stopped(wait, stop).await || !slot.take(stop).await {
                    return None;
                }
            }
        }
    }
}

/// A partition's share of the loop's `in_flight` bound: taken while it
/// handles a batch, given back while it holds for its dependency, so that
/// held partitions do not keep the others from running (and their
/// successes are what tell poison from an outage).
struct Slot<'a> {
    in_flight: &'a Semaphore,
    permit: Option<SemaphorePermit<'a>>,
}

impl<'a> Slot<'a> {
    /// A share of `in_flight`, not taken yet.
    fn new(in_flight: &'a Semaphore) -> Self {
        Self {
            in_flight,
            permit: None,
        }
    }

    /// Takes the share, waiting for one; false when `stop` fired first.
    async fn take(&mut self, stop: &CancellationToken) -> bool {
        if self.permit.is_some() {
            return true;
        }
        tokio::select! {
            biased;
            () = stop.cancelled() => false,
            permit = self.in_flight.acquire() => {
                self.permit = permit.ok();
                self.permit.is_some()
            }
        }
    }

    fn give_back(&mut self) {
        self.permit = None;
    }
}

/// Writes the dead letter, trying until Kafka acknowledges it (the message is
/// not settled before) or the task is stopped.
async fn dead_letter(
    publisher: &DeadLetterPublisher,
    message: &OwnedMessage,
    failure: Failure,
    stop: &CancellationToken,
) -> bool {
    until_acknowledged(
        stop,
        || publisher.publish(message, failure.clone()),
        |err, wait| {
            tracing::warn!(topic = message.topic(), offset = message.offset(), error = %err, ?wait,
                "dead letter not written; trying again");
        },
    )
    .await
}

/// Runs `send` until it succeeds (true) or `stop` fires (false), waiting
/// longer after each failure, which `failed` reports.
async fn until_acknowledged<F, Fut, E>(
    stop: &CancellationToken,
    mut send: F,
    failed: impl Fn(&E, Duration),
) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut wait = Duration::from_millis(500);
    loop {
        match send().await {
            Ok(()) => return true,
            Err(err) => {
                failed(&err, wait);
                if !sleep_unless_stopped(wait, stop).await {
                    return false;
                }
                wait = (wait * 2).min(MAX_RESEND_BACKOFF);
            }
        }
    }
}

/// Sleeps for `wait`; false when `stop` fired first.
async fn sleep_unless_stopped(wait: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
    }
}
