//! Rebalance notifications from librdkafka's callbacks to the dispatcher,
//! and the consumer lag from its statistics.

use std::sync::Mutex;

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Statistics, TopicPartitionList};

use crate::metrics::CONSUMER_LAG;

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

/// Queues assignment changes for the dispatcher. With auto-commit on,
/// librdkafka commits the stored offsets of revoked partitions itself before
/// they go; the dispatcher then stops their tasks, whose later stores fail
/// for an unassigned partition, so nothing is committed twice or ahead.
#[derive(Debug, Default)]
pub(crate) struct RebalanceContext {
    changes: Mutex<Vec<AssignmentChange>>,
}

impl RebalanceContext {
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
    /// Consumer lag per assigned partition: the high watermark minus the
    /// consumer's position (librdkafka reports -1 until both are known).
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in statistics.topics {
            for (partition, stats) in stats.partitions {
                if partition >= 0 && stats.consumer_lag >= 0 {
                    metrics::gauge!(CONSUMER_LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                        .set(stats.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked = partitions(list);
            tracing::info!(?revoked, "partitions revoked");
            self.lock().push(AssignmentChange::Revoked(revoked));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let assigned = partitions(list);
            tracing::info!(?assigned, "partitions assigned");
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
