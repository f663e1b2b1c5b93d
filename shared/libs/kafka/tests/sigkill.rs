//! At-least-once under SIGKILL: a real child process consumes with the loop
//! and is killed mid-batch; the group's committed offsets never pass what it
//! had handled, and a restarted process handles the rest from there.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use sluice_avro::AvroCodec;
use sluice_dlq::DeadLetterPublisher;
use sluice_kafka::{ConsumerLoop, ConsumerSettings, KafkaConfig};
use sluice_testkit::{
    KillOnDrop, Stack, TestTopic, committed_offsets, eventually, producer, unique_name,
};

mod common;
use common::{FileJournal, env_var, no_retries, read_journal};

const PARTITIONS: i32 = 3;
const MESSAGES: i64 = 300;
const WAIT: Duration = Duration::from_secs(90);

/// The child process: consumes until it is killed. Run by the test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of sigkill_mid_batch_neither_loses_nor_commits_ahead"]
async fn journaling_consumer_child() {
    let stack = Stack::get();
    // Frequent commits, so the kill finds commits to check; a short session,
    // so the restarted process gets the partitions soon.
    let kafka = KafkaConfig::new(&stack.kafka_bootstrap)
        .with_property("auto.commit.interval.ms", "100")
        .with_property("session.timeout.ms", "6000")
        .with_property("heartbeat.interval.ms", "1000");
    let codec = Arc::new(AvroCodec::new(stack.registry_settings()));
    let publisher = DeadLetterPublisher::new(
        producer(),
        codec,
        env_var("DLQ_TOPIC"),
        "sigkill-child",
        "0.0.0",
    );
    let settings = ConsumerSettings {
        group_id: env_var("GROUP"),
        topics: vec![env_var("TOPIC")],
        partition_buffer: 16,
        max_concurrent: 3,
        max_batch: 1,
        batch_linger: Duration::ZERO,
        retry: no_retries(),
        pause_backoff: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(5),
        revoke_wait: Duration::from_secs(5),
        stall_after: Duration::from_secs(300),
    };
    // Slow enough that the kill lands in the middle of the stream.
    let journal = FileJournal::open(Path::new(&env_var("JOURNAL")), Duration::from_millis(15));
    ConsumerLoop::new(&kafka, settings, journal, publisher)
        .unwrap()
        .run(std::future::pending())
        .await
        .unwrap();
}

fn spawn_consumer(topic: &str, dlq: &str, group: &str, journal: &Path) -> KillOnDrop {
    let journal = journal.to_str().unwrap();
    KillOnDrop::test_child(
        "journaling_consumer_child",
        &[
            ("TOPIC", topic),
            ("DLQ_TOPIC", dlq),
            ("GROUP", group),
            ("JOURNAL", journal),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_batch_neither_loses_nor_commits_ahead() {
    let input = TestTopic::create("sigkill-input", PARTITIONS).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "sigkill-dlq", 1).await;
    let group = unique_name("sigkill-group");
    let journal: PathBuf = std::env::temp_dir().join(unique_name("sigkill-journal"));
    let producer = producer();
    let mut end_offsets: BTreeMap<i32, i64> = BTreeMap::new();
    for i in 0..MESSAGES {
        let key = format!("key-{}", i % 10);
        let delivery = producer
            .send(
                FutureRecord::to(&input.name).key(&key).payload("x"),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        let end = end_offsets.entry(delivery.partition).or_default();
        *end = (*end).max(delivery.offset + 1);
    }

    // Kill the first process once it has handled a good part, not all.
    let child = spawn_consumer(&input.name, &dlq.name, &group, &journal);
    eventually("the child to handle 60 messages", WAIT, || {
        let handled = read_journal(&journal).len();
        async move { (handled >= 60).then_some(()) }
    })
    .await;
    drop(child); // SIGKILL

    let handled_before_kill: BTreeSet<(i32, i64)> = read_journal(&journal).into_iter().collect();
    let committed_at_kill = committed_offsets(&group, &input.name, PARTITIONS);
    assert!(
        (handled_before_kill.len() as i64) < MESSAGES,
        "the kill came after everything was handled; nothing was tested"
    );
    assert!(
        !committed_at_kill.is_empty(),
        "no commit happened before the kill; nothing was tested"
    );
    for (partition, committed) in &committed_at_kill {
        for offset in 0..*committed {
            assert!(
                handled_before_kill.contains(&(*partition, offset)),
                "partition {partition}: offset {offset} committed (up to {committed}) but never handled"
            );
        }
    }

    // A new process takes over from the committed offsets and finishes.
    let child = spawn_consumer(&input.name, &dlq.name, &group, &journal);
    let expected: BTreeSet<(i32, i64)> = end_offsets
        .iter()
        .flat_map(|(p, end)| (0..*end).map(move |o| (*p, o)))
        .collect();
    eventually("every message handled", WAIT, || {
        let handled: BTreeSet<(i32, i64)> = read_journal(&journal).into_iter().collect();
        let complete = handled.is_superset(&expected);
        async move { complete.then_some(()) }
    })
    .await;
    drop(child); // SIGKILL

    // Handled twice only where the commit had not reached at the kill.
    let mut seen = BTreeSet::new();
    for (partition, offset) in read_journal(&journal) {
        if !seen.insert((partition, offset)) {
            let committed = committed_at_kill.get(&partition).copied().unwrap_or(0);
            assert!(
                offset >= committed,
                "partition {partition}: offset {offset} handled again though committed up to {committed}"
            );
        }
    }
    std::fs::remove_file(&journal).ok();
}
