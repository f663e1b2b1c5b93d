//! Helpers shared by this crate's integration tests.
// Each test file uses a part of them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use sluice_contracts::types::DeadLetterClass;
use sluice_kafka::{Handler, HandlerError, Owed};
use sluice_resilience::{Classified, ErrorClass, RetryPolicy};

/// An error of a chosen class, as a real handler's would be.
#[derive(Debug, Clone)]
pub struct TestError {
    message: &'static str,
    class: ErrorClass,
    retry_after: Option<Duration>,
    dead_letter: DeadLetterClass,
}

impl TestError {
    /// Refused for good (dead-lettered as PERMANENT).
    pub fn permanent(message: &'static str) -> Self {
        Self {
            message,
            class: ErrorClass::Permanent,
            retry_after: None,
            dead_letter: DeadLetterClass::Permanent,
        }
    }

    /// Worth retrying.
    pub fn retryable(message: &'static str) -> Self {
        Self {
            class: ErrorClass::Retryable,
            ..Self::permanent(message)
        }
    }

    /// The dependency is unavailable; try again after `retry_after`.
    pub fn pause(message: &'static str, retry_after: Duration) -> Self {
        Self {
            class: ErrorClass::Pause,
            retry_after: Some(retry_after),
            ..Self::permanent(message)
        }
    }

    /// The same, dead-lettered with `class` when permanent.
    pub fn dead_lettered_as(self, class: DeadLetterClass) -> Self {
        Self {
            dead_letter: class,
            ..self
        }
    }
}

impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message)
    }
}

impl Classified for TestError {
    fn class(&self) -> ErrorClass {
        self.class
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl HandlerError for TestError {
    fn dead_letter_class(&self) -> DeadLetterClass {
        self.dead_letter
    }
}

/// Appends `partition offset` of every handled message to a file, synced
/// before the handler returns: the file is what was handled, whatever happens
/// to the process afterwards.
pub struct FileJournal {
    file: Mutex<std::fs::File>,
    delay: Duration,
}

impl FileJournal {
    /// A journal appending to `path`, taking `delay` per message.
    pub fn open(path: &Path, delay: Duration) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        Self {
            file: Mutex::new(file),
            delay,
        }
    }
}

impl Handler for FileJournal {
    type Error = TestError;

    async fn handle(&self, message: &OwnedMessage) -> Result<Owed, TestError> {
        tokio::time::sleep(self.delay).await;
        let mut file = self.file.lock().unwrap();
        writeln!(file, "{} {}", message.partition(), message.offset()).unwrap();
        file.sync_data().unwrap();
        Ok(Owed::nothing())
    }
}

/// The `(partition, offset)` lines of a journal, in the order written.
pub fn read_journal(path: &Path) -> Vec<(i32, i64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (partition, offset) = line.split_once(' ')?;
            Some((partition.parse().ok()?, offset.parse().ok()?))
        })
        .collect()
}

/// How many messages of each partition a journal holds, asserting they are
/// its first offsets, in order, with no gap: what a group that committed
/// exactly what it handled has committed.
pub fn contiguous_counts(handled: Vec<(i32, i64)>) -> BTreeMap<i32, i64> {
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (partition, offset) in handled {
        by_partition.entry(partition).or_default().push(offset);
    }
    by_partition
        .into_iter()
        .map(|(partition, offsets)| {
            assert!(
                offsets.iter().copied().eq(0..offsets.len() as i64),
                "partition {partition}: {offsets:?}"
            );
            (partition, offsets.len() as i64)
        })
        .collect()
}

/// A child service's runtime, its health address written to the file the
/// parent named in `ADDRESS_FILE`.
pub async fn child_runtime(
    name: &str,
    checks: Vec<std::sync::Arc<dyn sluice_telemetry::ReadinessCheck>>,
) -> sluice_runtime::ServiceRuntime {
    let args = sluice_runtime::RuntimeArgs::loopback("json", "info");
    let runtime = sluice_runtime::ServiceRuntime::start(name, &args, checks)
        .await
        .unwrap();
    std::fs::write(env_var("ADDRESS_FILE"), runtime.http_address().to_string()).unwrap();
    runtime
}

/// A child service's loop: it journals every message of `TOPIC` (20 ms
/// each) to `JOURNAL`, in group `GROUP`, three partitions at once.
pub fn child_loop(
    kafka: &sluice_kafka::KafkaConfig,
    dead_letters: sluice_dlq::DeadLetterPublisher,
) -> sluice_kafka::ConsumerLoop<FileJournal> {
    let journal = FileJournal::open(Path::new(&env_var("JOURNAL")), Duration::from_millis(20));
    let settings = sluice_kafka::ConsumerSettings {
        group_id: env_var("GROUP"),
        topics: vec![env_var("TOPIC")],
        partition_buffer: 8,
        max_concurrent: 3,
        max_batch: 1,
        batch_linger: Duration::ZERO,
        retry: no_retries(),
        pause_backoff: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(10),
        revoke_wait: Duration::from_secs(5),
        stall_after: Duration::from_secs(300),
    };
    sluice_kafka::ConsumerLoop::new(kafka, settings, journal, dead_letters).unwrap()
}

/// Writes `count` one-byte messages to `topic`, over ten keys.
pub async fn produce_spread(topic: &str, count: usize) {
    for i in 0..count {
        sluice_testkit::producer()
            .send(
                rdkafka::producer::FutureRecord::to(topic)
                    .key(&format!("key-{}", i % 10))
                    .payload("x"),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
    }
}

/// Waits until the journal at `path` holds `count` messages.
pub async fn journal_reaches(path: &Path, count: usize) {
    sluice_testkit::eventually(
        &format!("the service to handle {count} messages"),
        Duration::from_secs(60),
        || {
            let handled = read_journal(path).len();
            async move { (handled >= count).then_some(()) }
        },
    )
    .await;
}

/// Runs the ignored test `test` of this test binary as a child process with
/// `env`. Its libtest output is discarded, so only the parent's results count.
/// The value of an environment variable the parent test set.
pub fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
}

/// A policy that never retries: failures are judged at once.
pub fn no_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 0,
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(10),
        multiplier: 1.0,
        jitter: 0.0,
        max_elapsed: None,
    }
}

/// A service's Kafka settings from `args` (after the program name), as
/// its command line and environment would give them.
pub fn service_kafka<'a>(args: impl IntoIterator<Item = &'a str>) -> sluice_kafka::KafkaConfig {
    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: sluice_config::KafkaArgs,
    }
    let cli: Cli = sluice_config::parse_from(std::iter::once("svc").chain(args)).unwrap();
    sluice_kafka::KafkaConfig::from_args(&cli.kafka).unwrap()
}

/// A file holding `secret` with a trailing newline, as a mounted Secret.
pub fn secret_file(name: &str, secret: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(sluice_testkit::unique_name(name));
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path
}

/// Produces `what` through `config` to a topic of its own and reads it back
/// (over the stack's plain listener).
pub async fn produce_and_read(config: &sluice_kafka::KafkaConfig, what: &str) {
    use rdkafka::producer::FutureRecord;
    let topic = sluice_testkit::TestTopic::create("through", 1).await;
    sluice_kafka::idempotent_producer(config)
        .unwrap()
        .send(
            FutureRecord::to(&topic.name).key("k").payload(what),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let read = sluice_testkit::consume_exactly(&topic.name, 1, Duration::from_secs(30)).await;
    assert_eq!(read[0].payload(), Some(what.as_bytes()));
}
