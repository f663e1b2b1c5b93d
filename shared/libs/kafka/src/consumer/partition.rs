//! One partition's task: handles its messages in order and stores each
//! offset only once the message is settled.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use sluice_contracts::types::DeadLetterClass;
use sluice_dlq::{DeadLetterPublisher, Failure};
use sluice_resilience::RetryPolicy;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Handler;
use super::context::RebalanceContext;
use crate::metrics::{DEAD_LETTERED, HANDLED, PROCESSING};
use crate::skip::{count_if_skipped, is_tombstone};
use crate::verdict::{Verdict, attempt};

/// Longest wait between two tries to write a dead letter.
const MAX_DEAD_LETTER_BACKOFF: Duration = Duration::from_secs(30);

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
/// A stop lets the batch in hand finish (and its offsets be stored) but
/// starts no other; what was queued is handled again by whoever owns the
/// partition next. After a revoke the store fails, as the partition is gone.
pub(crate) async fn run_partition<H: Handler>(
    shared: Arc<Shared<H>>,
    topic: String,
    mut queue: mpsc::Receiver<OwnedMessage>,
    stop: CancellationToken,
) {
    let done = metrics::counter!(HANDLED, "topic" => topic.clone(), "outcome" => "done");
    let dead_lettered =
        metrics::counter!(HANDLED, "topic" => topic.clone(), "outcome" => "dead_lettered");
    let skipped = metrics::counter!(HANDLED, "topic" => topic.clone(), "outcome" => "skipped");
    let processing = metrics::histogram!(PROCESSING, "topic" => topic.clone());
    let in_hand = shared.consumer.context().in_hand();
    while let Some(batch) = next_batch(&mut queue, shared.batch, &stop).await {
        let partition = (topic.clone(), batch[0].partition());
        if !in_hand.until_free(&partition, &stop).await {
            return;
        }
        let Ok(_permit) = shared.in_flight.acquire().await else {
            return;
        };
        // Held until the offsets are stored: a revoke waits for it.
        let Some(_in_hand) = in_hand.begin(&partition, &stop).await else {
            return;
        };
        let started = Instant::now();
        let Some(outcomes) = settle_batch(&shared, &batch, &stop).await else {
            return;
        };
        for (message, settled) in batch.iter().zip(outcomes) {
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
            match settled {
                Settled::Done => done.increment(1),
                Settled::Skipped => skipped.increment(1),
                Settled::DeadLettered(class) => {
                    dead_lettered.increment(1);
                    metrics::counter!(DEAD_LETTERED, "topic" => topic.clone(), "class" => class.as_str()).increment(1);
                }
            }
            processing.record(started.elapsed().as_secs_f64());
        }
    }
}

/// The next messages of the queue, in order: the first to come, then what
/// else is queued or arrives within the linger, up to the window's size.
/// `None` when the queue closed or `stop` fired.
async fn next_batch(
    queue: &mut mpsc::Receiver<OwnedMessage>,
    window: BatchWindow,
    stop: &CancellationToken,
) -> Option<Vec<OwnedMessage>> {
    let first = tokio::select! {
        biased;
        () = stop.cancelled() => return None,
        message = queue.recv() => message?,
    };
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
    Some(batch)
}

/// Settles a batch: handled as one unit until done, held through outages;
/// when it fails for good, message by message (and so, from the start, a
/// batch of one or one holding a tombstone). `None` when stopped first.
async fn settle_batch<H: Handler>(
    shared: &Shared<H>,
    batch: &[OwnedMessage],
    stop: &CancellationToken,
) -> Option<Vec<Settled>> {
    let [first, ..] = batch else {
        return Some(Vec::new());
    };
    if batch.len() == 1 || batch.iter().any(is_tombstone) {
        return settle_each(shared, batch, stop).await;
    }
    let span = sluice_telemetry::batch_span(batch);
    let handled = until_settled(shared, first, stop, "handle_batch", || {
        shared.handler.handle_batch(batch)
    })
    .instrument(span)
    .await?;
    match handled {
        Ok(()) => Some(vec![Settled::Done; batch.len()]),
        Err(failure) => {
            tracing::info!(topic = first.topic(), partition = first.partition(), size = batch.len(),
                error = %failure.message, "batch failed; handling its messages one by one");
            settle_each(shared, batch, stop).await
        }
    }
}

/// Settles the messages of `batch` one by one, in order, each in its span.
async fn settle_each<H: Handler>(
    shared: &Shared<H>,
    batch: &[OwnedMessage],
    stop: &CancellationToken,
) -> Option<Vec<Settled>> {
    let mut outcomes = Vec::with_capacity(batch.len());
    for message in batch {
        let span = sluice_telemetry::message_span(message);
        outcomes.push(settle(shared, message, stop).instrument(span).await?);
    }
    Some(outcomes)
}

/// Handles `message` until it is done or dead-lettered; `None` when stopped
/// first. Retryable errors are retried by the policy; a pause holds the
/// partition (its queue fills and the dispatcher pauses it) without spending
/// the message's attempts.
async fn settle<H: Handler>(
    shared: &Shared<H>,
    message: &OwnedMessage,
    stop: &CancellationToken,
) -> Option<Settled> {
    if is_tombstone(message) {
        count_if_skipped(message);
        return Some(Settled::Skipped);
    }
    let handled = until_settled(shared, message, stop, "handle", || {
        shared.handler.handle(message)
    })
    .await?;
    match handled {
        Ok(()) => Some(Settled::Done),
        Err(failure) => {
            let class = failure.class;
            shared.handler.given_up(message, &failure).await;
            dead_letter(&shared.dead_letters, message, failure, stop)
                .await
                .then_some(Settled::DeadLettered(class))
        }
    }
}

/// Runs `call` (the handler, for `message` or the batch it starts) until it
/// succeeds or fails for good: retryable errors through the policy, a pause
/// holding the partition without spending attempts. `None` when stopped
/// while holding.
async fn until_settled<H, F, Fut>(
    shared: &Shared<H>,
    message: &OwnedMessage,
    stop: &CancellationToken,
    operation: &str,
    mut call: F,
) -> Option<Result<(), Failure>>
where
    H: Handler,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), H::Error>>,
{
    let first_failure_at = OnceLock::new();
    loop {
        let handled = attempt(
            &shared.retry,
            shared.pause_backoff,
            &first_failure_at,
            operation,
            &mut call,
        )
        .await;
        match handled {
            Ok(()) => return Some(Ok(())),
            Err(Verdict::DeadLetter(failure)) => return Some(Err(failure)),
            Err(Verdict::Hold { wait, reason }) => {
                tracing::warn!(topic = message.topic(), partition = message.partition(), error = %reason, ?wait,
                    "dependency unavailable; holding the partition");
                if !sleep_unless_stopped(wait, stop).await {
                    return None;
                }
            }
        }
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
    let mut wait = Duration::from_millis(500);
    loop {
        match publisher.publish(message, failure.clone()).await {
            Ok(()) => return true,
            Err(err) => {
                tracing::warn!(topic = message.topic(), offset = message.offset(), error = %err, ?wait,
                    "dead letter not written; trying again");
                if !sleep_unless_stopped(wait, stop).await {
                    return false;
                }
                wait = (wait * 2).min(MAX_DEAD_LETTER_BACKOFF);
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
