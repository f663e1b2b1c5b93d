//! Rebalance notifications from librdkafka's callbacks to the dispatcher,
//! and the consumer lag from its statistics.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Statistics, TopicPartitionList};

use super::in_hand::InHand;
use crate::metrics::CONSUMER_LAG;
use crate::stall::{PartitionStats, StallWatch};

/// How often librdkafka reports statistics (the lag gauge's refresh).
pub(crate) const STATISTICS_INTERVAL_MS: &str = "5000";

/// A partition: topic and number.
pub(crate) type Partition = (String, i32);

/// A change of assignment, seen in a rebalance callback.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AssignmentChange {
    Assigned(Vec<Partition>),
    Revoked(Vec<Partition>),
}

/// What the lag gauge counts from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LagFrom {
    /// The group's committed offset: the at-least-once loop commits through
    /// its consumer, so that is what a restart would resume from.
    Committed,
    /// The loop's own position. A transactional loop commits its offsets
    /// through its producer: the consumer's committed offset stays where it
    /// was at assignment, and lag from it only grew with every message.
    Position,
}

/// Queues assignment changes for the dispatcher. With auto-commit on,
/// librdkafka commits the stored offsets of revoked partitions itself before
/// they go; the dispatcher then stops their tasks, whose later stores fail
/// for an unassigned partition, so nothing is committed twice or ahead.
/// Assignments and statistics also go to the loop's stall watch. A revoke
/// waits for the revoked partitions' batches in hand ([`InHand`]).
#[derive(Debug)]
pub(crate) struct RebalanceContext {
    changes: Mutex<Vec<AssignmentChange>>,
    lag_from: LagFrom,
    stalls: Arc<StallWatch>,
    in_hand: InHand,
}

impl RebalanceContext {
    /// A context whose lag gauge counts from `lag_from`, telling `stalls`,
    /// whose revokes wait up to `revoke_grace` for batches in hand.
    pub(crate) fn new(lag_from: LagFrom, stalls: Arc<StallWatch>, revoke_grace: Duration) -> Self {
        Self {
            changes: Mutex::default(),
            lag_from,
            stalls,
            in_hand: InHand::new(revoke_grace),
        }
    }

    /// The partition tasks' batches in hand.
    pub(crate) fn in_hand(&self) -> &InHand {
        &self.in_hand
    }

    /// The loop's stall watch.
    pub(crate) fn stalls(&self) -> &Arc<StallWatch> {
        &self.stalls
    }

    /// The changes seen since the last call, oldest first.
    pub(crate) fn take_changes(&self) -> Vec<AssignmentChange> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<AssignmentChange>> {
        self.changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ClientContext for RebalanceContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        sluice_telemetry::liveness::client_log("consumer", level, facility, message);
    }

    /// Consumer lag per assigned partition: the high watermark minus the
    /// committed offset, or, for a loop that commits through its producer,
    /// the last stable offset minus the next offset it reads (before its
    /// first read, the committed offset it starts from). librdkafka reports
    /// -1 until the offsets are known; nothing is set then.
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in statistics.topics {
            for (partition, stats) in stats.partitions {
                let lag = match self.lag_from {
                    LagFrom::Position if stats.app_offset >= 0 && stats.ls_offset >= 0 => {
                        (stats.ls_offset - stats.app_offset).max(0)
                    }
                    _ => stats.consumer_lag,
                };
                if partition >= 0 && lag >= 0 {
                    metrics::gauge!(CONSUMER_LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                        .set(lag as f64);
                }
                self.stalls.statistics(
                    &topic,
                    partition,
                    &PartitionStats {
                        app_offset: stats.app_offset,
                        next_offset: stats.next_offset,
                        ls_offset: stats.ls_offset,
                    },
                );
            }
        }
    }
}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked = partitions(list);
            tracing::info!(?revoked, "partitions revoked");
            self.stalls.revoked(&revoked);
            self.in_hand.revoke(&revoked);
            self.lock().push(AssignmentChange::Revoked(revoked));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let assigned = partitions(list);
            tracing::info!(?assigned, "partitions assigned");
            self.stalls.assigned(&assigned);
            self.lock().push(AssignmentChange::Assigned(assigned));
        }
    }
}

fn partitions(list: &TopicPartitionList) -> Vec<Partition> {
    list.elements()
        .iter()
        .map(|p| (p.topic().to_owned(), p.partition()))
        .collect()
}
