//! Lifecycle: a real service process (runtime + consumer loop) gets SIGTERM
//! mid-stream, finishes the messages in hand, commits exactly what it
//! handled, and exits 0 in bounded time.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use sluice_avro::AvroCodec;
use sluice_dlq::DeadLetterPublisher;
use sluice_kafka::{KafkaConfig, KafkaReadiness};
use sluice_testkit::{
    KillOnDrop, Stack, TestTopic, committed_offsets, eventually, producer, unique_name,
};

mod common;
use common::{
    child_loop, child_runtime, contiguous_counts, env_var, journal_reaches, produce_spread,
    read_journal,
};

const PARTITIONS: i32 = 3;

/// The service process: runs until SIGTERM. Run by the test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of sigterm_finishes_in_flight_work_commits_and_exits_zero"]
async fn service_child() {
    let stack = Stack::get();
    let kafka = KafkaConfig::new(&stack.kafka_bootstrap);
    let readiness = Arc::new(KafkaReadiness::new(&kafka, Duration::from_secs(5)).unwrap());
    let runtime = child_runtime("sigterm-child", vec![readiness]).await;
    let codec = Arc::new(AvroCodec::new(stack.registry_settings()));
    let publisher = DeadLetterPublisher::new(
        producer(),
        codec,
        env_var("DLQ_TOPIC"),
        "sigterm-child",
        "0.0.0",
    );
    child_loop(&kafka, publisher)
        .run(runtime.shutdown_requested())
        .await
        .unwrap();
    runtime.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_work_commits_and_exits_zero() {
    let input = TestTopic::create("sigterm-input", PARTITIONS).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "sigterm-dlq", 1).await;
    let group = unique_name("sigterm-group");
    let journal: PathBuf = std::env::temp_dir().join(unique_name("sigterm-journal"));
    let address_file: PathBuf = std::env::temp_dir().join(unique_name("sigterm-address"));
    produce_spread(&input.name, 300).await;

    let journal_path = journal.to_str().unwrap();
    let address_path = address_file.to_str().unwrap();
    let mut child = KillOnDrop::test_child(
        "service_child",
        &[
            ("TOPIC", &input.name),
            ("DLQ_TOPIC", &dlq.name),
            ("GROUP", &group),
            ("JOURNAL", journal_path),
            ("ADDRESS_FILE", address_path),
        ],
    );
    journal_reaches(&journal, 40).await;

    // While it runs, it is alive, ready and exporting metrics.
    let address = std::fs::read_to_string(&address_file).unwrap();
    let get = |path: &str| reqwest::get(format!("http://{address}{path}"));
    assert_eq!(get("/healthz").await.unwrap().status().as_u16(), 200);
    assert_eq!(
        get("/readyz").await.unwrap().text().await.unwrap(),
        "kafka: ok\n"
    );
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(&format!(
            "sluice_consumed_total{{topic=\"{}\"}}",
            input.name
        )),
        "{metrics}"
    );

    let terminated = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let status = eventually(
        "the service to exit after SIGTERM",
        Duration::from_secs(20),
        || {
            let status = child.0.try_wait().unwrap();
            async move { status }
        },
    )
    .await;
    assert!(status.success(), "exit status {status}");

    // What it handled is exactly what it committed, per partition, no gaps.
    let handled = read_journal(&journal);
    assert!(
        handled.len() < 300,
        "it finished everything before the signal; nothing was tested"
    );
    assert_eq!(
        committed_offsets(&group, &input.name, PARTITIONS),
        contiguous_counts(handled)
    );
    std::fs::remove_file(&journal).ok();
    std::fs::remove_file(&address_file).ok();
}
