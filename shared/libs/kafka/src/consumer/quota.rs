//! An API's rate shared by a group's members: each paces its limiter to the
//! share of the topics' partitions it owns, so replicas configured alike
//! keep to the configured rate together (an API's quota is the fleet's, not
//! each pod's).
//!
//! The share is counted from the consumer's assignment (not tracked from
//! rebalance events, which an error can skip) in a task of its own, after
//! each rebalance and every half minute (a count that failed, a topic that
//! grew): a metadata request never holds the loop. A member that owns
//! nothing keeps its share: it makes no calls, and an eager rebalance,
//! which revokes everything before it assigns, passes through nothing.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use sluice_resilience::RateLimiter;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::context::RebalanceContext;

/// How long counting a topic's partitions may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the share is counted again without a rebalance.
const RECOUNT: Duration = Duration::from_secs(30);

/// The task keeping a limiter at this member's share; stops when dropped.
pub(super) struct Quota {
    rebalanced: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Quota {
    /// Keeps `limiter` at the share of `topics`' partitions `consumer` owns.
    pub(super) fn start(
        limiter: Arc<RateLimiter>,
        consumer: Arc<StreamConsumer<RebalanceContext>>,
        topics: Vec<String>,
    ) -> Self {
        let rebalanced = Arc::new(Notify::new());
        let task = tokio::spawn(keep(limiter, consumer, topics, Arc::clone(&rebalanced)));
        Self { rebalanced, task }
    }

    /// The assignment changed: count again.
    pub(super) fn rebalanced(&self) {
        self.rebalanced.notify_one();
    }
}

impl Drop for Quota {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn keep(
    limiter: Arc<RateLimiter>,
    consumer: Arc<StreamConsumer<RebalanceContext>>,
    topics: Vec<String>,
    rebalanced: Arc<Notify>,
) {
    let mut kept = None;
    loop {
        tokio::select! {
            () = rebalanced.notified() => {}
            () = tokio::time::sleep(RECOUNT) => {}
        }
        let (consumer, counted) = (Arc::clone(&consumer), topics.clone());
        match tokio::task::spawn_blocking(move || count(&consumer, &counted)).await {
            Ok(Ok((0, _))) => {}
            Ok(Ok((_, 0))) => {
                tracing::warn!(
                    ?topics,
                    "the topics have no partitions; the quota's share is kept"
                );
            }
            Ok(Ok((owned, total))) => {
                let share = owned as f64 / total as f64;
                if kept != Some(share) {
                    tracing::info!(
                        owned,
                        total,
                        share,
                        "pacing to the owned partitions' share of the quota"
                    );
                    limiter.set_share(share);
                    kept = Some(share);
                }
            }
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "partitions not counted; the quota's share is kept until the next count");
            }
            Err(err) => tracing::warn!(error = %err, "counting partitions"),
        }
    }
}

/// The partitions of `topics` the consumer owns, and all of theirs.
fn count(
    consumer: &StreamConsumer<RebalanceContext>,
    topics: &[String],
) -> Result<(usize, usize), KafkaError> {
    let owned = consumer
        .assignment()?
        .elements()
        .iter()
        .filter(|p| topics.iter().any(|t| t == p.topic()))
        .count();
    let mut total = 0;
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
        total += metadata
            .topics()
            .iter()
            .map(|t| t.partitions().len())
            .sum::<usize>();
    }
    Ok((owned, total))
}
