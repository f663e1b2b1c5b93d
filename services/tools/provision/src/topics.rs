//! Topic creation from the topic map.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use sluice_contracts::Catalog;

use crate::ProvisionError;

/// How created topics are replicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// Replicas of each partition; None takes the broker's
    /// `default.replication.factor`.
    pub factor: Option<i32>,
    /// `min.insync.replicas`: replicas that must hold a write before an
    /// `acks=all` producer is told it is written; None takes the broker's.
    pub min_insync: Option<i32>,
}

impl Replication {
    /// The broker's defaults for both.
    pub fn broker_default() -> Self {
        Self {
            factor: None,
            min_insync: None,
        }
    }

    /// `factor` replicas, of which a majority must hold a write, but never
    /// all of them: with all, any one broker down (a rolling restart) stops
    /// writes. 1 → 1, 2 → 1, 3 → 2, 5 → 3. Without it a topic of three
    /// replicas acknowledges writes held by one broker alone, lost with it.
    pub fn factor(factor: i32) -> Self {
        Self {
            factor: Some(factor),
            min_insync: Some((factor / 2 + 1).min(factor - 1).max(1)),
        }
    }
}

/// What provisioning found or did for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    /// The topic was created.
    Created,
    /// The topic existed with the declared partition count.
    Exists,
    /// The topic existed with another partition count. It is left alone:
    /// adding partitions moves keys and breaks per-key order.
    PartitionDrift {
        /// Partitions in the topic map.
        declared: i32,
        /// Partitions on the broker.
        actual: i32,
    },
}

/// Creates every topic of `catalog` that does not exist yet, with its
/// partitions, cleanup policy and retention, and reports on each.
pub async fn ensure_topics(
    admin: Arc<AdminClient<DefaultClientContext>>,
    catalog: &Catalog,
    replication: Replication,
    timeout: Duration,
) -> Result<Vec<(String, TopicOutcome)>, ProvisionError> {
    let mut existing = partition_counts(Arc::clone(&admin), timeout).await?;

    let missing: Vec<_> = catalog
        .topics()
        .iter()
        .filter(|t| !existing.contains_key(t.name()))
        .collect();
    let retention: Vec<String> = missing
        .iter()
        .map(|t| t.spec().retention_ms.to_string())
        .collect();
    // librdkafka takes -1 as "the broker's default.replication.factor".
    let replicas = replication.factor.unwrap_or(-1);
    let min_insync = replication.min_insync.map(|n| n.to_string());
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .zip(&retention)
        .map(|(topic, retention_ms)| {
            let new = NewTopic::new(
                topic.name(),
                topic.spec().partitions,
                TopicReplication::Fixed(replicas),
            )
            .set(
                "cleanup.policy",
                topic.spec().cleanup_policy.as_kafka_config(),
            )
            .set("retention.ms", retention_ms);
            match &min_insync {
                Some(n) => new.set("min.insync.replicas", n),
                None => new,
            }
        })
        .collect();

    let mut created = Vec::new();
    let mut lost_race = false;
    if !new_topics.is_empty() {
        let options = AdminOptions::new().operation_timeout(Some(timeout));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(|source| ProvisionError::Kafka {
                action: "creating topics",
                source,
            })?;
        for result in results {
            match result {
                Ok(topic) => created.push(topic),
                // Another provisioner won the race; judge it like any existing topic.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => lost_race = true,
                Err((topic, code)) => return Err(ProvisionError::CreateTopic { topic, code }),
            }
        }
    }
    if lost_race {
        existing = partition_counts(admin, timeout).await?;
    }

    Ok(catalog
        .topics()
        .iter()
        .map(|topic| {
            let declared = topic.spec().partitions;
            let outcome = if created.iter().any(|c| c == topic.name()) {
                TopicOutcome::Created
            } else {
                match existing.get(topic.name()) {
                    Some(&actual) if actual != declared => {
                        TopicOutcome::PartitionDrift { declared, actual }
                    }
                    _ => TopicOutcome::Exists,
                }
            };
            (topic.name().to_owned(), outcome)
        })
        .collect())
}

/// Partition count of every topic on the cluster.
async fn partition_counts(
    admin: Arc<AdminClient<DefaultClientContext>>,
    timeout: Duration,
) -> Result<HashMap<String, i32>, ProvisionError> {
    // librdkafka's metadata call blocks; keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        let metadata = admin
            .inner()
            .fetch_metadata(None, timeout)
            .map_err(|source| ProvisionError::Kafka {
                action: "reading cluster metadata",
                source,
            })?;
        Ok(metadata
            .topics()
            .iter()
            .map(|t| {
                (
                    t.name().to_owned(),
                    i32::try_from(t.partitions().len()).unwrap_or(i32::MAX),
                )
            })
            .collect())
    })
    .await
    .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}

#[cfg(test)]
mod tests {
    use super::Replication;

    #[test]
    fn a_majority_of_the_replicas_must_hold_a_write_but_never_all() {
        let min = |factor| Replication::factor(factor).min_insync;
        assert_eq!([1, 2, 3, 4, 5, 7].map(min), [1, 1, 2, 3, 3, 4].map(Some));
        assert_eq!(Replication::broker_default().min_insync, None);
    }
}
