//! Topic creation from the topic map.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use sluice_contracts::Catalog;

use crate::ProvisionError;

/// Replication factor of created topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// The broker's `default.replication.factor`.
    BrokerDefault,
    /// This many replicas.
    Factor(i32),
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
    let replicas = match replication {
        Replication::BrokerDefault => -1,
        Replication::Factor(n) => n,
    };
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .zip(&retention)
        .map(|(topic, retention_ms)| {
            NewTopic::new(
                topic.name(),
                topic.spec().partitions,
                TopicReplication::Fixed(replicas),
            )
            .set(
                "cleanup.policy",
                topic.spec().cleanup_policy.as_kafka_config(),
            )
            .set("retention.ms", retention_ms)
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
