//! Rebalance notifications from librdkafka's callbacks to the dispatcher.

use std::sync::Mutex;

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, TopicPartitionList};

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

impl ClientContext for RebalanceContext {}

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
