//! Skipping a record no client can read. A partition held on bytes
//! librdkafka cannot hand over (a corrupt compressed batch, say: the loop's
//! `sluice_partition_stalled{reason="consumer-error"}` names topic,
//! partition and offset) moves on only when an operator says so: the
//! group's committed offset moves past that one offset, and only if the
//! group exists, stands exactly there and has no member running (a member's
//! next commit would overwrite it), and the record really cannot be read
//! (librdkafka fails on it: a record that reads is not skipped). A dead
//! letter records who skipped what and why before anything moves, so the
//! skip is listed with the other dead letters and nothing leaves the log
//! unrecorded; the committed offset is read back after.
//!
//! librdkafka names a bad batch by its first offset, so a corrupt batch of
//! several records takes a skip per record.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_contracts::types::DeadLetterClass;
use sluice_dlq::{DeadLetterPublisher, Failure, Original};
use sluice_kafka::{KafkaConfig, blocking};

use crate::coordinate::Coordinate;

/// What an operator skips, and why.
#[derive(Debug, Clone)]
pub struct Skip {
    /// The consumer group held at the record.
    pub group: String,
    /// The record.
    pub at: Coordinate,
    /// Why, for the record of it.
    pub reason: String,
    /// Who.
    pub actor: String,
}

/// Checks the group stands at the record with no member running, records
/// the skip in `record`'s topic, then commits the offset after it.
pub async fn skip(
    kafka: &KafkaConfig,
    skip: &Skip,
    record: &DeadLetterPublisher,
    timeout: Duration,
) -> Result<()> {
    let consumer: BaseConsumer = kafka
        .client_config(&[("group.id", &skip.group), ("enable.auto.commit", "false")])
        .create()
        .context("creating a consumer of the group")?;
    let consumer = std::sync::Arc::new(consumer);
    let at = skip.at.clone();
    let group = skip.group.clone();
    let checking = std::sync::Arc::clone(&consumer);
    let failure = tokio::task::spawn_blocking(move || {
        check(&checking, &group, &at, timeout)?;
        unreadable(&checking, &at, timeout)
    })
    .await
    .context("checking the group and the record")??;

    let now = sluice_contracts::now_millis();
    record
        .publish_original(
            Original {
                topic: skip.at.topic.clone(),
                partition: skip.at.partition,
                offset: skip.at.offset,
                timestamp: None,
                key: None,
                value: None,
                headers: Vec::new(),
            },
            Failure {
                class: DeadLetterClass::Decode,
                message: format!(
                    "skipped by {} for group {}: {} (librdkafka: {failure})",
                    skip.actor, skip.group, skip.reason
                ),
                attempts: 0,
                first_failure_at: now,
                last_failure_at: now,
            },
        )
        .await
        .context("recording the skip; nothing was skipped")?;

    let mut next = TopicPartitionList::new();
    next.add_partition_offset(
        &skip.at.topic,
        skip.at.partition,
        Offset::Offset(skip.at.offset + 1),
    )?;
    let committing = std::sync::Arc::clone(&consumer);
    blocking(move || committing.commit(&next, CommitMode::Sync))
        .await
        .with_context(|| {
            format!(
                "committing offset {} for group {} (the skip is recorded but the group did not move: \
                 a member may have joined; stop it and run skip again)",
                skip.at.offset + 1,
                skip.group
            )
        })?;
    let mut partition = TopicPartitionList::new();
    partition.add_partition(&skip.at.topic, skip.at.partition);
    let read_back = blocking(move || consumer.committed_offsets(partition, timeout))
        .await
        .context("reading the group's offset back")?;
    let stands = read_back
        .find_partition(&skip.at.topic, skip.at.partition)
        .map(|p| p.offset());
    if stands != Some(Offset::Offset(skip.at.offset + 1)) {
        bail!(
            "group {} stands at {stands:?} after the commit, not {}: a member may have committed meanwhile",
            skip.group,
            skip.at.offset + 1
        );
    }
    Ok(())
}

/// The error librdkafka fails with on the record at `at`; refuses a record
/// that reads, an offset that holds none, and a broker that says nothing.
fn unreadable(consumer: &BaseConsumer, at: &Coordinate, timeout: Duration) -> Result<String> {
    let mut from = TopicPartitionList::new();
    from.add_partition_offset(&at.topic, at.partition, Offset::Offset(at.offset))?;
    consumer.assign(&from).context("reading the record")?;
    let deadline = std::time::Instant::now() + timeout;
    let mut last = None;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) if message.offset() == at.offset => bail!(
                "the record at {at} reads ({} bytes): skip is for a record no client can read; \
                 let the service dead-letter it, or fix what refuses it",
                message.payload().map_or(0, <[u8]>::len)
            ),
            Some(Ok(message)) => bail!(
                "there is no record at {at} (the next is at {}): nothing skipped",
                message.offset()
            ),
            Some(Err(err)) if cannot_be_read(&err) => return Ok(err.to_string()),
            Some(Err(err)) => last = Some(err),
            None => {}
        }
    }
    bail!(
        "nothing read at {at} in {timeout:?}, and no error that says the record cannot be read{}",
        last.map(|err| format!(" (last: {err})"))
            .unwrap_or_default()
    )
}

/// Whether librdkafka says the bytes of a record cannot be had.
fn cannot_be_read(err: &KafkaError) -> bool {
    matches!(
        err.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BadCompression
                | RDKafkaErrorCode::BadMessage
                | RDKafkaErrorCode::NotImplemented
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidMessage
        )
    )
}

/// Refuses unless `group` has no running member and has committed exactly
/// `at`'s offset on its partition.
fn check(consumer: &BaseConsumer, group: &str, at: &Coordinate, timeout: Duration) -> Result<()> {
    let groups = consumer
        .fetch_group_list(Some(group), timeout)
        .with_context(|| format!("describing group {group}"))?;
    let described = groups
        .groups()
        .iter()
        .find(|g| g.name() == group && g.state() != "Dead")
        .with_context(|| {
            format!("there is no consumer group {group}: check --group (the service's --group-id)")
        })?;
    let members = described.members().len();
    if members > 0 || described.state() != "Empty" {
        bail!(
            "group {group} has {members} running member(s) (state {}): stop them first \
             (scale the service to 0; a static member is gone after its session timeout), \
             as their next commit would undo the skip",
            described.state()
        );
    }
    let mut partition = TopicPartitionList::new();
    partition.add_partition(&at.topic, at.partition);
    let committed = consumer
        .committed_offsets(partition, timeout)
        .with_context(|| format!("reading group {group}'s offset"))?;
    let stands = committed
        .find_partition(&at.topic, at.partition)
        .map(|p| p.offset());
    match stands {
        Some(Offset::Offset(offset)) if offset == at.offset => Ok(()),
        Some(Offset::Offset(offset)) => bail!(
            "group {group} stands at offset {offset} of {}[{}], not {}: nothing skipped",
            at.topic,
            at.partition,
            at.offset
        ),
        _ => {
            // A group that never committed reads from the start: it stands
            // at the first record there is.
            let (low, _) = consumer
                .fetch_watermarks(&at.topic, at.partition, timeout)
                .with_context(|| format!("reading {}[{}]'s offsets", at.topic, at.partition))?;
            if low == at.offset {
                return Ok(());
            }
            bail!(
                "group {group} has committed no offset on {}[{}] and its first record is at {low}, not {}: nothing skipped",
                at.topic,
                at.partition,
                at.offset
            )
        }
    }
}
