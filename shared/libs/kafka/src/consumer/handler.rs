//! What a service plugs into the consumer loop.

use std::fmt::Display;
use std::future::Future;

use rdkafka::message::OwnedMessage;
use sluice_contracts::types::DeadLetterClass;
use sluice_dlq::Failure;
use sluice_resilience::Classified;

use crate::Owed;

/// Which messages of a partition a handler needs handled in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// All of them: one message (or batch) of a partition at a time.
    Partition,
    /// Those of one key: a batch's keys are handled at once, each key's
    /// messages in order, each key taking its own share of
    /// [`ConsumerSettings::max_concurrent`](super::ConsumerSettings), and
    /// the batch's offsets stored once all of them are settled. A
    /// call-bound sink's lanes are then its own bound, not its partitions'
    /// count: two erp-sink replicas of four lanes on six partitions, Odoo
    /// answering in 20 ms, did 1.44 × one in order per partition, 1.95 ×
    /// in order per key (its benchmark, alternating builds, twice each).
    Key,
}

/// A service's logic for one message.
pub trait Handler: Send + Sync + 'static {
    /// Its error, classified where it is understood.
    type Error: HandlerError;

    /// Which messages it needs handled in order. Under [`Order::Key`],
    /// [`handle_batch`](Self::handle_batch) is not called: the loop
    /// handles each key's messages one by one.
    const ORDER: Order = Order::Partition;

    /// Handles one message. Called again for the same message on a retryable
    /// error or after a pause, so it must be idempotent (the sinks key their
    /// effects on event and command ids). What it returns owed (its answer,
    /// its audit record) the loop writes before it stores the offset,
    /// while it handles the next messages.
    fn handle(
        &self,
        message: &OwnedMessage,
    ) -> impl Future<Output = Result<Owed, Self::Error>> + Send;

    /// Handles several messages of one partition, in order, as one unit
    /// (when [`ConsumerSettings::max_batch`](super::ConsumerSettings) allows
    /// more than one). An error stands for the whole batch: retryable and
    /// pausing errors repeat it, and a permanent one makes the loop handle
    /// the messages one by one, so only the guilty one is dead-lettered.
    /// The default handles them one after another; when one fails, what
    /// those before it owe is written before the error is returned.
    fn handle_batch(
        &self,
        messages: &[OwnedMessage],
    ) -> impl Future<Output = Result<Owed, Self::Error>> + Send {
        async move {
            let mut owed = Owed::nothing();
            for message in messages {
                match self.handle(message).await {
                    Ok(more) => owed = owed.and(more),
                    Err(err) => {
                        // The messages before were handled: what they owe
                        // goes out now (an APPLIED record, not the
                        // ALREADY_APPLIED of the retry). Lost, the retry
                        // records that.
                        if let Err(unsent) = owed.send_now().await {
                            tracing::warn!(error = %unsent, "records of a batch's handled messages not written");
                        }
                        return Err(err);
                    }
                }
            }
            Ok(owed)
        }
    }

    /// Called when the group assigns this consumer `partitions` (topic,
    /// number), before any of their messages is handled. While another
    /// member had them it may have changed the remote: a handler that
    /// caches remote state (sheets-sink's row index) forgets it here.
    fn assigned(&self, partitions: &[(String, i32)]) {
        let _ = partitions;
    }

    /// Called once the loop gives up on `message`, before its dead letter
    /// is written: a handler that owes someone an answer (erp-sink's
    /// ErpResult) gives it here. The dead letter is written regardless.
    fn given_up(
        &self,
        message: &OwnedMessage,
        failure: &Failure,
    ) -> impl Future<Output = ()> + Send {
        let _ = (message, failure);
        async {}
    }
}

/// An error a handler returns.
pub trait HandlerError: Classified + Display + Send + Sync + 'static {
    /// The dead-letter class of a permanent failure (retryable failures that
    /// outlast the retries are `RETRIES_EXHAUSTED`).
    fn dead_letter_class(&self) -> DeadLetterClass {
        DeadLetterClass::Permanent
    }
}
