//! Lifecycle: a real service process (runtime + consumer loop) gets SIGTERM
//! mid-stream, finishes the messages in hand, commits exactly what it
//! handled, and exits 0 in bounded time.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use sluice_avro::AvroCodec;
use sluice_dlq::DeadLetterPublisher;
use sluice_kafka::{ConsumerLoop, ConsumerSettings, KafkaConfig, KafkaReadiness};
use sluice_runtime::{RuntimeArgs, ServiceRuntime};
use sluice_testkit::{Stack, TestTopic, committed_offsets, eventually, producer, unique_name};

mod common;
use common::{FileJournal, env_var, no_retries, read_journal, spawn_child};

const PARTITIONS: i32 = 3;
const WAIT: Duration = Duration::from_secs(60);

/// The service process: runs until SIGTERM. Run by the test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of sigterm_finishes_in_flight_work_commits_and_exits_zero"]
async fn service_child() {
    let stack = Stack::get();
    let kafka = KafkaConfig::new(&stack.kafka_bootstrap);
    let args = RuntimeArgs {
        log_format: "json".into(),
        log_filter: "info".into(),
        otlp_endpoint: None,
        otlp_traces_endpoint: None,
        http_listen: "127.0.0.1:0".parse().unwrap(),
    };
    let readiness = Arc::new(KafkaReadiness::new(&kafka, Duration::from_secs(5)).unwrap());
    let runtime = ServiceRuntime::start("sigterm-child", &args, vec![readiness])
        .await
        .unwrap();
    std::fs::write(env_var("ADDRESS_FILE"), runtime.http_address().to_string()).unwrap();

    let codec = Arc::new(AvroCodec::new(stack.registry_settings()));
    let publisher = DeadLetterPublisher::new(
        producer(),
        codec,
        env_var("DLQ_TOPIC"),
        "sigterm-child",
        "0.0.0",
    );
    let journal = FileJournal::open(Path::new(&env_var("JOURNAL")), Duration::from_millis(20));
    let settings = ConsumerSettings {
        group_id: env_var("GROUP"),
        topics: vec![env_var("TOPIC")],
        partition_buffer: 8,
        max_concurrent: 3,
        max_batch: 1,
        batch_linger: Duration::ZERO,
        retry: no_retries(),
        pause_backoff: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(10),
        stall_after: Duration::from_secs(300),
    };
    ConsumerLoop::new(&kafka, settings, journal, publisher)
        .unwrap()
        .run(runtime.shutdown_requested())
        .await
        .unwrap();
    runtime.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_work_commits_and_exits_zero() {
    let input = TestTopic::create("sigterm-input", PARTITIONS).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "sigterm-dlq", 1).await;
    let group = unique_name("sigterm-group");
    let journal: PathBuf = std::env::temp_dir().join(unique_name("sigterm-journal"));
    let address_file: PathBuf = std::env::temp_dir().join(unique_name("sigterm-address"));
    for i in 0..300 {
        producer()
            .send(
                FutureRecord::to(&input.name)
                    .key(&format!("key-{}", i % 10))
                    .payload("x"),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
    }

    let journal_path = journal.to_str().unwrap();
    let address_path = address_file.to_str().unwrap();
    let mut child = spawn_child(
        "service_child",
        &[
            ("TOPIC", &input.name),
            ("DLQ_TOPIC", &dlq.name),
            ("GROUP", &group),
            ("JOURNAL", journal_path),
            ("ADDRESS_FILE", address_path),
        ],
    );
    eventually("the service to handle 40 messages", WAIT, || {
        let handled = read_journal(&journal).len();
        async move { (handled >= 40).then_some(()) }
    })
    .await;

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
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let status = eventually(
        "the service to exit after SIGTERM",
        Duration::from_secs(20),
        || {
            let status = child.try_wait().unwrap();
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
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (partition, offset) in handled {
        by_partition.entry(partition).or_default().push(offset);
    }
    let expected: BTreeMap<i32, i64> = by_partition
        .iter()
        .map(|(partition, offsets)| {
            assert!(
                offsets.iter().copied().eq(0..offsets.len() as i64),
                "partition {partition}: {offsets:?}"
            );
            (*partition, offsets.len() as i64)
        })
        .collect();
    assert_eq!(committed_offsets(&group, &input.name, PARTITIONS), expected);
    std::fs::remove_file(&journal).ok();
    std::fs::remove_file(&address_file).ok();
}
