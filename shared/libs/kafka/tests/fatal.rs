//! A fatal Kafka error ends the service: a real service process (runtime +
//! consumer loop + dead-letter producer) whose producer librdkafka gives up
//! on answers 503 on /healthz with the reason, stops taking messages,
//! commits exactly what it handled, and exits non-zero so its supervisor
//! starts a new one. Before, it kept consuming with a producer that could
//! never send a dead letter again, and /healthz said "ok".
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::Producer;
use sluice_avro::AvroCodec;
use sluice_dlq::DeadLetterPublisher;
use sluice_kafka::{KafkaConfig, idempotent_producer};
use sluice_testkit::{
    KillOnDrop, Stack, TestTopic, committed_offsets, eventually, raise_fatal_error, unique_name,
};

mod common;
use common::{
    child_loop, child_runtime, contiguous_counts, env_var, journal_reaches, produce_spread,
    read_journal,
};

const PARTITIONS: i32 = 3;
const WAIT: Duration = Duration::from_secs(60);

/// The service process: runs until its producer's fatal error stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of a_fatal_producer_error_fails_healthz_and_ends_the_service"]
async fn fatal_child() {
    let stack = Stack::get();
    let kafka = KafkaConfig::new(&stack.kafka_bootstrap);
    let runtime = child_runtime("fatal-child", vec![]).await;
    let dead_letters = idempotent_producer(&kafka).unwrap();
    let doomed = dead_letters.clone();
    let trigger = PathBuf::from(env_var("TRIGGER"));
    tokio::spawn(async move {
        wait_for_file(&trigger).await;
        // librdkafka refusing the fault is the child's failure: exit 4.
        if !raise_fatal_error(doomed.client(), c"injected by the test") {
            std::process::exit(4);
        }
    });
    let publisher = DeadLetterPublisher::new(
        dead_letters,
        Arc::new(AvroCodec::new(stack.registry_settings())),
        env_var("DLQ_TOPIC"),
        "fatal-child",
        "0.0.0",
    );
    child_loop(&kafka, publisher)
        .run(runtime.shutdown_requested())
        .await
        .unwrap();
    // The parent reads /healthz while the loop has stopped but the process
    // has not; then it lets the process end.
    wait_for_file(Path::new(&env_var("SEEN"))).await;
    let stopped = runtime.stop().await;
    std::fs::write(env_var("RESULT"), format!("{stopped:?}")).unwrap();
    std::process::exit(i32::from(stopped.is_err()) * 3);
}

async fn wait_for_file(path: &Path) {
    eventually("the parent's signal", WAIT, || {
        let there = path.exists();
        async move { there.then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_producer_error_fails_healthz_and_ends_the_service() {
    let input = TestTopic::create("fatal-input", PARTITIONS).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "fatal-dlq", 1).await;
    let group = unique_name("fatal-group");
    let file = |what: &str| std::env::temp_dir().join(unique_name(what));
    let (journal, address_file) = (file("fatal-journal"), file("fatal-address"));
    let (trigger, seen, result) = (
        file("fatal-trigger"),
        file("fatal-seen"),
        file("fatal-result"),
    );
    produce_spread(&input.name, 300).await;

    let path = |path: &PathBuf| path.to_str().unwrap().to_owned();
    let mut child = KillOnDrop::test_child(
        "fatal_child",
        &[
            ("TOPIC", &input.name),
            ("DLQ_TOPIC", &dlq.name),
            ("GROUP", &group),
            ("JOURNAL", &path(&journal)),
            ("ADDRESS_FILE", &path(&address_file)),
            ("TRIGGER", &path(&trigger)),
            ("SEEN", &path(&seen)),
            ("RESULT", &path(&result)),
        ],
    );
    journal_reaches(&journal, 40).await;
    let address = std::fs::read_to_string(&address_file).unwrap();
    let healthz = || async {
        let response = reqwest::get(format!("http://{address}/healthz"))
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(healthz().await, (200, "ok\n".to_owned()));

    std::fs::write(&trigger, "").unwrap();
    let (status, body) = eventually("/healthz to fail", WAIT, || async {
        let answer = healthz().await;
        (answer.0 != 200).then_some(answer)
    })
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("dead: the Kafka producer hit a fatal error")
            && body.contains("injected by the test"),
        "{body}"
    );
    std::fs::write(&seen, "").unwrap();
    let status = eventually("the service to exit", WAIT, || {
        let status = child.0.try_wait().unwrap();
        async move { status }
    })
    .await;
    assert_eq!(status.code(), Some(3), "exit status {status}");
    let stopped = std::fs::read_to_string(&result).unwrap();
    assert!(
        stopped.contains("Died") && stopped.contains("injected by the test"),
        "{stopped}"
    );

    // It stopped taking messages, and committed exactly what it handled.
    let handled = read_journal(&journal);
    assert!(
        handled.len() < 300,
        "it finished everything before the fault"
    );
    assert_eq!(
        committed_offsets(&group, &input.name, PARTITIONS),
        contiguous_counts(handled)
    );
    for file in [journal, address_file, trigger, seen, result] {
        std::fs::remove_file(file).ok();
    }
}
