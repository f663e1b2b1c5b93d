//! The consumer loop against the real broker: retries, dead letters, per-key
//! order, offsets that follow handling (and what it owes Kafka), a restart
//! that handles nothing twice, and batches that shrink to single messages
//! around a bad one.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureRecord;
use sluice_avro::AvroCodec;
use sluice_contracts::types::{AuditAction, AuditRecord, DeadLetter, DeadLetterClass};
use sluice_dlq::DeadLetterPublisher;
use sluice_kafka::{
    AuditLog, ConsumerLoop, ConsumerSettings, Handler, KafkaConfig, Owed, ReplyPublisher,
};
use sluice_resilience::RetryPolicy;
use sluice_testkit::{
    Stack, TestTopic, committed_messages, committed_offsets, committed_total, confluent_produce,
    console_produce, consume_exactly, eventually, kcat_produce, message_count, producer,
    register_value_schema, unique_name, until_committed,
};
use tokio::sync::oneshot;

mod common;
use common::TestError;

const WAIT: Duration = Duration::from_secs(60);
const PARTITIONS: i32 = 3;

/// What the test handler was asked to do and did.
#[derive(Default)]
struct Journal {
    /// Successfully handled messages, in the order they were handled.
    done: Vec<(i32, i64, String)>,
    /// Calls per payload.
    calls: HashMap<String, u32>,
}

/// Payload prefixes decide the outcome: `ok` succeeds, `flaky` fails twice
/// with a retryable error, `hopeless` always does, `bad` fails permanently.
#[derive(Clone, Default)]
struct ScriptedHandler {
    journal: Arc<Mutex<Journal>>,
}

impl Handler for ScriptedHandler {
    type Error = TestError;

    async fn handle(&self, message: &OwnedMessage) -> Result<Owed, TestError> {
        let payload = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
        let mut journal = self.journal.lock().unwrap();
        let calls = {
            let calls = journal.calls.entry(payload.clone()).or_default();
            *calls += 1;
            *calls
        };
        let result = match payload.split('-').next().unwrap() {
            "flaky" if calls <= 2 => Err(TestError::retryable("HTTP 503 from the test target")),
            "hopeless" => Err(TestError::retryable("HTTP 503 from the test target")),
            "bad" => Err(
                TestError::permanent("field total_minor: must not be negative")
                    .dead_lettered_as(DeadLetterClass::Validation),
            ),
            _ => Ok(Owed::nothing()),
        };
        if result.is_ok() {
            journal
                .done
                .push((message.partition(), message.offset(), payload));
        }
        result
    }
}

fn settings(group: &str, topic: &str) -> ConsumerSettings {
    ConsumerSettings {
        group_id: group.to_owned(),
        topics: vec![topic.to_owned()],
        partition_buffer: 4,
        max_concurrent: 2,
        max_batch: 1,
        batch_linger: Duration::ZERO,
        retry: RetryPolicy {
            max_retries: 3,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            multiplier: 2.0,
            jitter: 0.0,
            max_elapsed: None,
        },
        pause_backoff: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(10),
        revoke_wait: Duration::from_secs(10),
        stall_after: Duration::from_secs(300),
    }
}

/// Starts a loop in the background; returns the handle that stops it.
fn start(
    group: &str,
    topic: &str,
    dlq: &str,
    handler: ScriptedHandler,
) -> impl FnOnce() -> tokio::task::JoinHandle<()> {
    start_with(settings(group, topic), dlq, handler)
}

fn start_with<H: Handler>(
    settings: ConsumerSettings,
    dlq: &str,
    handler: H,
) -> impl FnOnce() -> tokio::task::JoinHandle<()> {
    let kafka = KafkaConfig::new(&Stack::get().kafka_bootstrap);
    start_on(&kafka, settings, dlq, handler)
}

fn start_on<H: Handler>(
    kafka: &KafkaConfig,
    settings: ConsumerSettings,
    dlq: &str,
    handler: H,
) -> impl FnOnce() -> tokio::task::JoinHandle<()> + use<H> {
    let stack = Stack::get();
    let codec = Arc::new(AvroCodec::new(stack.registry_settings()));
    let publisher = DeadLetterPublisher::new(producer(), codec, dlq, "test-service", "0.0.0");
    let consumer = ConsumerLoop::new(kafka, settings, handler, publisher).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        consumer
            .run(async { stopped.await.unwrap_or(()) })
            .await
            .unwrap();
    });
    move || {
        stop.send(()).unwrap();
        running
    }
}

async fn produce(topic: &str, key: &str, payload: &str) {
    producer()
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_or_dead_lettered_and_commits_follow_handling() {
    let input = TestTopic::create("loop-input", PARTITIONS).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "loop-dlq", 1).await;
    let group = unique_name("loop-group");

    // 60 messages over 6 keys; the outcome is in the payload.
    let mut expected_done = Vec::new();
    let mut expected_dead = BTreeMap::new();
    for i in 0..60 {
        let payload = match i {
            _ if i % 13 == 5 => format!("hopeless-{i}"),
            _ if i % 10 == 3 => format!("bad-{i}"),
            _ if i % 7 == 1 => format!("flaky-{i}"),
            _ => format!("ok-{i}"),
        };
        // `bad` ones are dead-lettered at once, `hopeless` ones after 1 + 3 tries.
        match payload.split('-').next().unwrap() {
            "bad" => expected_dead.insert(payload.clone(), (DeadLetterClass::Validation, 1)),
            "hopeless" => {
                expected_dead.insert(payload.clone(), (DeadLetterClass::RetriesExhausted, 4))
            }
            _ => {
                expected_done.push(payload.clone());
                None
            }
        };
        produce(&input.name, &format!("key-{}", i % 6), &payload).await;
    }

    let handler = ScriptedHandler::default();
    let stop = start(&group, &input.name, &dlq.name, handler.clone());
    let journal = Arc::clone(&handler.journal);
    eventually("every good message handled", WAIT, || {
        let all_done = journal.lock().unwrap().done.len() == expected_done.len();
        async move { all_done.then_some(()) }
    })
    .await;
    let dead: Vec<DeadLetter> = {
        let codec = AvroCodec::new(Stack::get().registry_settings());
        let mut letters = Vec::new();
        for message in consume_exactly(&dlq.name, expected_dead.len(), WAIT).await {
            letters.push(
                codec
                    .decode::<DeadLetter>(message.payload().unwrap())
                    .await
                    .unwrap(),
            );
        }
        letters
    };
    stop().await.unwrap();

    let classes: BTreeMap<String, (DeadLetterClass, i32)> = dead
        .iter()
        .map(|d| {
            (
                String::from_utf8(d.original_value.clone().unwrap()).unwrap(),
                (d.error_class, d.attempts),
            )
        })
        .collect();
    assert_eq!(classes, expected_dead);
    assert!(
        dead.iter()
            .all(|d| d.original_topic == input.name && d.service == "test-service")
    );

    {
        let journal = journal.lock().unwrap();
        // Each good message handled once; flaky ones on their third call.
        let mut done: Vec<&str> = journal.done.iter().map(|(_, _, p)| p.as_str()).collect();
        done.sort_unstable();
        let mut expected = expected_done.iter().map(String::as_str).collect::<Vec<_>>();
        expected.sort_unstable();
        assert_eq!(done, expected);
        assert_eq!(journal.calls["flaky-1"], 3);
        // Per partition, messages were handled in offset order.
        for partition in 0..PARTITIONS {
            let offsets: Vec<i64> = journal
                .done
                .iter()
                .filter(|(p, ..)| *p == partition)
                .map(|(_, o, _)| *o)
                .collect();
            assert!(
                offsets.windows(2).all(|w| w[0] < w[1]),
                "partition {partition}: {offsets:?}"
            );
        }
    }

    // Everything settled is committed: the group's offsets are at the end.
    let committed = committed_offsets(&group, &input.name, PARTITIONS);
    assert_eq!(committed.values().sum::<i64>(), 60, "{committed:?}");

    // A restart from the committed offsets handles only what is new.
    let restarted = ScriptedHandler::default();
    let stop = start(&group, &input.name, &dlq.name, restarted.clone());
    produce(&input.name, "key-0", "ok-after-restart").await;
    let journal = Arc::clone(&restarted.journal);
    eventually("the new message handled", WAIT, || {
        let done = journal.lock().unwrap().done.len();
        async move { (done >= 1).then_some(()) }
    })
    .await;
    stop().await.unwrap();
    let handled: Vec<String> = journal
        .lock()
        .unwrap()
        .done
        .iter()
        .map(|(_, _, p)| p.clone())
        .collect();
    assert_eq!(handled, ["ok-after-restart"]);
}

#[tokio::test]
async fn a_property_that_would_break_at_least_once_is_refused() {
    let stack = Stack::get();
    let kafka =
        KafkaConfig::new(&stack.kafka_bootstrap).with_property("enable.auto.offset.store", "true");
    let codec = Arc::new(AvroCodec::new(stack.registry_settings()));
    let publisher = DeadLetterPublisher::new(producer(), codec, "unused", "test-service", "0.0.0");
    let err = ConsumerLoop::new(
        &kafka,
        settings("g", "t"),
        ScriptedHandler::default(),
        publisher,
    )
    .err()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "kafka property enable.auto.offset.store cannot be set for a consumer loop: \
         it stores and commits offsets itself, after handling"
    );
}

/// Answers "pause" (the dependency is down) while `outage` is set.
#[derive(Clone, Default)]
struct OutageHandler {
    outage: Arc<std::sync::atomic::AtomicBool>,
    calls: Arc<std::sync::atomic::AtomicUsize>,
    done: Arc<Mutex<Vec<i64>>>,
}

impl Handler for OutageHandler {
    type Error = TestError;

    async fn handle(&self, message: &OwnedMessage) -> Result<Owed, TestError> {
        use std::sync::atomic::Ordering::SeqCst;
        self.calls.fetch_add(1, SeqCst);
        if self.outage.load(SeqCst) {
            return Err(TestError::pause(
                "HTTP 429 Too Many Requests",
                Duration::from_millis(50),
            ));
        }
        self.done.lock().unwrap().push(message.offset());
        Ok(Owed::nothing())
    }
}

/// Starts a loop on `settings` through `handler`, its dependency down (the
/// handler answers "pause"), dead-lettering to `dlq`; returns the sender
/// that stops it and the loop's task.
fn start_held(
    kafka: &KafkaConfig,
    settings: ConsumerSettings,
    handler: &OutageHandler,
    dlq: &str,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), sluice_kafka::ConsumerError>>,
) {
    handler
        .outage
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let codec = Arc::new(AvroCodec::new(Stack::get().registry_settings()));
    let publisher = DeadLetterPublisher::new(producer(), codec, dlq, "test-service", "0.0.0");
    let consumer = ConsumerLoop::new(kafka, settings, handler.clone(), publisher).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(consumer.run(async { stopped.await.unwrap_or(()) }));
    (stop, running)
}

impl OutageHandler {
    /// Waits until the handler was called `calls` times.
    async fn called(&self, calls: usize) {
        let counted = Arc::clone(&self.calls);
        eventually("the handler to be called through the outage", WAIT, || {
            let tried = counted.load(std::sync::atomic::Ordering::SeqCst) >= calls;
            async move { tried.then_some(()) }
        })
        .await;
    }

    /// Ends the outage and waits until `messages` were handled.
    async fn recovered(&self, messages: usize) {
        self.outage
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let done = Arc::clone(&self.done);
        eventually("every message handled after the outage", WAIT, || {
            let all = done.lock().unwrap().len() >= messages;
            async move { all.then_some(()) }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_holds_the_partition_instead_of_dead_lettering() {
    let input = TestTopic::create("outage-input", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "outage-dlq", 1).await;
    let group = unique_name("outage-group");
    for i in 0..30 {
        produce(&input.name, "order-1", &format!("event-{i}")).await;
    }
    let handler = OutageHandler::default();
    let kafka = KafkaConfig::new(&Stack::get().kafka_bootstrap);
    let settings = settings(&group, &input.name);
    let (stop, running) = start_held(&kafka, settings, &handler, &dlq.name);

    // The first message is tried again and again (every Retry-After), never given up on.
    handler.called(10).await;
    assert!(handler.done.lock().unwrap().is_empty());
    assert!(
        committed_offsets(&group, &input.name, 1).is_empty(),
        "nothing is committed during the outage"
    );

    handler.recovered(30).await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();

    assert_eq!(
        *handler.done.lock().unwrap(),
        (0..30).collect::<Vec<i64>>(),
        "in order, each once"
    );
    assert_eq!(committed_offsets(&group, &input.name, 1).get(&0), Some(&30));
    assert_eq!(
        message_count(&dlq.name),
        0,
        "an outage is not a poison message"
    );
}

/// What the loop has taken from Kafka of `topic` (`sluice_consumed_total`).
fn consumed(metrics: &str, topic: &str) -> u64 {
    let series = format!("sluice_consumed_total{{topic=\"{topic}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series)?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_partition_takes_one_fetch_then_is_paused_and_loses_nothing() {
    const MESSAGES: usize = 200;
    const FETCH_BYTES: usize = 10_000;
    let metrics = sluice_telemetry::prometheus_handle().unwrap();
    let input = TestTopic::create("held-input", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "held-dlq", 1).await;
    let group = unique_name("held-group");
    // 1 000-byte payloads and a 7-byte key: about nine make a fetch.
    for i in 0..MESSAGES {
        produce(&input.name, "order-1", &format!("{i:0>1000}")).await;
    }
    let handler = OutageHandler::default();
    let kafka = KafkaConfig::new(&Stack::get().kafka_bootstrap)
        .with_property("max.partition.fetch.bytes", FETCH_BYTES.to_string());
    let settings = settings(&group, &input.name);
    let queued = settings.partition_buffer;
    let (stop, running) = start_held(&kafka, settings, &handler, &dlq.name);

    // The first message is tried every 50 ms: 40 tries are two seconds in
    // which an unpaused partition would have been read to its end.
    handler.called(40).await;
    // The queue full, perhaps one more in hand (if the task took it before
    // the queue filled), and a backlog of the next messages up to a
    // fetch's bytes: not paused at the first full queue, not read on.
    let taken = consumed(&metrics.render(), &input.name);
    // A backlog counts a message's payload, key, topic and struct.
    let message = 1_007 + input.name.len() + std::mem::size_of::<OwnedMessage>();
    let held = (queued + FETCH_BYTES.div_ceil(message)) as u64;
    assert!(
        (held..=held + 1).contains(&taken),
        "{taken} messages taken from Kafka while the partition is held, not {held} or one more"
    );

    handler.recovered(MESSAGES).await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let expected: Vec<i64> = (0..MESSAGES as i64).collect();
    assert_eq!(
        *handler.done.lock().unwrap(),
        expected,
        "in order, each once"
    );
    assert_eq!(
        committed_offsets(&group, &input.name, 1).get(&0),
        Some(&(MESSAGES as i64))
    );
    assert_eq!(
        consumed(&metrics.render(), &input.name),
        MESSAGES as u64,
        "each taken once after resuming"
    );
}

/// Applies a batch all or nothing, as one API request would: a `bad` payload
/// refuses the whole batch (permanently), and the first batch holding a
/// `flaky` one fails once (retryably).
#[derive(Clone, Default)]
struct BatchHandler {
    applied: Arc<Mutex<Vec<(i32, i64, String)>>>,
    batch_sizes: Arc<Mutex<Vec<usize>>>,
    flaky_failed: Arc<std::sync::atomic::AtomicBool>,
}

fn payload(message: &OwnedMessage) -> String {
    String::from_utf8(message.payload().unwrap().to_vec()).unwrap()
}

impl Handler for BatchHandler {
    type Error = TestError;

    async fn handle(&self, message: &OwnedMessage) -> Result<Owed, TestError> {
        self.handle_batch(std::slice::from_ref(message)).await
    }

    async fn handle_batch(&self, messages: &[OwnedMessage]) -> Result<Owed, TestError> {
        self.batch_sizes.lock().unwrap().push(messages.len());
        let payloads: Vec<String> = messages.iter().map(payload).collect();
        if payloads.iter().any(|p| p.starts_with("bad")) {
            return Err(TestError::permanent("row 3: unknown column"));
        }
        if payloads.iter().any(|p| p.starts_with("flaky"))
            && !self
                .flaky_failed
                .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(TestError::retryable("HTTP 500 from the test target"));
        }
        let mut applied = self.applied.lock().unwrap();
        for (message, payload) in messages.iter().zip(payloads) {
            applied.push((message.partition(), message.offset(), payload));
        }
        Ok(Owed::nothing())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_applied_whole_and_a_bad_message_is_dead_lettered_alone() {
    let input = TestTopic::create("batch-input", PARTITIONS).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "batch-dlq", 1).await;
    let group = unique_name("batch-group");
    let total: usize = 300;
    let bad = [17, 150, 151, 299];
    for i in 0..total {
        let payload = match i {
            _ if bad.contains(&i) => format!("bad-{i}"),
            40 => format!("flaky-{i}"),
            _ => format!("ok-{i}"),
        };
        produce(&input.name, &format!("key-{}", i % 9), &payload).await;
    }

    let handler = BatchHandler::default();
    let mut settings = settings(&group, &input.name);
    settings.partition_buffer = 64;
    settings.max_batch = 50;
    settings.batch_linger = Duration::from_millis(20);
    let stop = start_with(settings, &dlq.name, handler.clone());
    let applied = Arc::clone(&handler.applied);
    let good = total - bad.len();
    eventually("every good message applied", WAIT, || {
        let all = applied.lock().unwrap().len() >= good;
        async move { all.then_some(()) }
    })
    .await;
    let dead = consume_exactly(&dlq.name, bad.len(), WAIT).await;
    stop().await.unwrap();

    let codec = AvroCodec::new(Stack::get().registry_settings());
    let mut dead_payloads = Vec::new();
    for message in dead {
        let letter: DeadLetter = codec.decode(message.payload().unwrap()).await.unwrap();
        assert!(
            letter.error_message.contains("unknown column"),
            "{letter:?}"
        );
        dead_payloads.push(String::from_utf8(letter.original_value.unwrap()).unwrap());
    }
    dead_payloads.sort();
    let mut expected_dead: Vec<String> = bad.iter().map(|i| format!("bad-{i}")).collect();
    expected_dead.sort();
    assert_eq!(dead_payloads, expected_dead, "exactly the bad ones");

    let applied = applied.lock().unwrap();
    let mut payloads: Vec<&str> = applied.iter().map(|(_, _, p)| p.as_str()).collect();
    payloads.sort_unstable();
    let before = payloads.len();
    payloads.dedup();
    assert_eq!(before, payloads.len(), "each applied once");
    assert_eq!(payloads.len(), good);
    for partition in 0..PARTITIONS {
        let offsets: Vec<i64> = applied
            .iter()
            .filter(|(p, ..)| *p == partition)
            .map(|(_, o, _)| *o)
            .collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "partition {partition} in order: {offsets:?}"
        );
    }
    let sizes = handler.batch_sizes.lock().unwrap();
    let largest = sizes.iter().copied().max().unwrap_or(0);
    assert!(
        (2..=50).contains(&largest),
        "batches formed and stayed within max_batch: {sizes:?}"
    );
    assert!(
        handler
            .flaky_failed
            .load(std::sync::atomic::Ordering::SeqCst)
    );
    let committed = committed_offsets(&group, &input.name, PARTITIONS);
    assert_eq!(
        committed.values().sum::<i64>(),
        total as i64,
        "{committed:?}"
    );
}

/// A user's client may compress with any codec Kafka has. Confluent's
/// Python client writes one record with each, in this order, on one
/// partition: the loop handles every one, in order, the record after the
/// zstd one included (librdkafka without zstd stopped at it for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_every_compression_codec_are_handled_in_order() {
    let input = TestTopic::create("loop-codecs", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "loop-codecs-dlq", 1).await;
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd", "gzip"];
    let records: Vec<serde_json::Value> = codecs
        .iter()
        .enumerate()
        .map(|(n, codec)| {
            // librdkafka sends a batch uncompressed when compressing does
            // not make it smaller: the value must be compressible.
            let value = format!("ok-{n}-{codec}-{}", "sluice ".repeat(300));
            serde_json::json!({ "key": "key-1", "value": value, "compression": codec })
        })
        .collect();
    confluent_produce(&input.name, None, &records);

    let handler = ScriptedHandler::default();
    let group = unique_name("loop-codecs");
    let stop = start(&group, &input.name, &dlq.name, handler.clone());
    let journal = Arc::clone(&handler.journal);
    eventually("a record of every codec handled", WAIT, || {
        let done = journal.lock().unwrap().done.len();
        async move { (done >= codecs.len()).then_some(()) }
    })
    .await;
    stop().await.unwrap();
    let handled: Vec<String> = journal
        .lock()
        .unwrap()
        .done
        .iter()
        .map(|d| d.2.clone())
        .collect();
    let expected: Vec<String> = records
        .iter()
        .map(|r| r["value"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(handled, expected);
}

/// Records users' clients write that are not events: a tombstone (Kafka's
/// console producer) is passed over without reaching the handler, and
/// header names that are not UTF-8 (kcat; rdkafka panicked reading them)
/// are read as Java's client reads them — on a record handled and on one
/// dead-lettered. Batches are on, so the tombstone sits in one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_and_header_names_that_are_not_utf8_do_not_stop_a_partition() {
    let input = TestTopic::create("loop-users", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "loop-users-dlq", 1).await;
    let not_utf8: &[u8] = b"\xff\xfename";
    confluent_produce(
        &input.name,
        None,
        &[serde_json::json!({ "key": "k", "value": "ok-1" })],
    );
    console_produce(
        &input.name,
        &["parse.key=true", "null.marker=NULL"],
        &["k\tNULL"],
    );
    kcat_produce(&input.name, "k", &[(not_utf8, b"v")], b"ok-2");
    kcat_produce(&input.name, "k", &[(not_utf8, b"v")], b"bad-3");
    confluent_produce(
        &input.name,
        None,
        &[serde_json::json!({ "key": "k", "value": "ok-4" })],
    );

    let handler = ScriptedHandler::default();
    let group = unique_name("loop-users");
    let settings = ConsumerSettings {
        max_batch: 10,
        batch_linger: Duration::from_millis(50),
        ..settings(&group, &input.name)
    };
    let stop = start_with(settings, &dlq.name, handler.clone());
    let letters = consume_exactly(&dlq.name, 1, WAIT).await;
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let letter: DeadLetter = codec.decode(letters[0].payload().unwrap()).await.unwrap();
    eventually("every record settled", WAIT, || {
        let committed = committed_offsets(&group, &input.name, 1);
        async move { (committed.get(&0) == Some(&5)).then_some(()) }
    })
    .await;
    stop().await.unwrap();

    let handled: Vec<String> = handler
        .journal
        .lock()
        .unwrap()
        .done
        .iter()
        .map(|(_, _, payload)| payload.clone())
        .collect();
    assert_eq!(handled, ["ok-1", "ok-2", "ok-4"]);
    assert_eq!(letter.original_offset, 3);
    let names: Vec<&str> = letter
        .original_headers
        .iter()
        .map(|h| h.key.as_str())
        .collect();
    assert_eq!(names, ["\u{fffd}\u{fffd}name"]);
}

/// A record larger than librdkafka's first fetch of a partition
/// (`fetch.message.max.bytes`, 1 MB) on a topic that takes it: the loop
/// reads it (librdkafka grows its fetch to the record) and handles it in
/// order between its neighbours, not stuck at it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_larger_than_the_fetch_size_is_handled_in_order() {
    const LIMIT: &str = "4000000";
    let input =
        TestTopic::create_configured("loop-large", 1, &[("max.message.bytes", LIMIT)]).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "loop-large-dlq", 1).await;
    let large = format!("ok-large-{}", "x".repeat(3_000_000));
    let writer = sluice_kafka::idempotent_producer(
        &KafkaConfig::new(&Stack::get().kafka_bootstrap).with_property("message.max.bytes", LIMIT),
    )
    .unwrap();
    for payload in ["ok-1", large.as_str(), "ok-3"] {
        writer
            .send(
                FutureRecord::to(&input.name).key("k").payload(payload),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
    }

    let handler = ScriptedHandler::default();
    let group = unique_name("loop-large");
    let stop = start(&group, &input.name, &dlq.name, handler.clone());
    let journal = Arc::clone(&handler.journal);
    eventually("all three handled", WAIT, || {
        let done = journal.lock().unwrap().done.len();
        async move { (done >= 3).then_some(()) }
    })
    .await;
    stop().await.unwrap();
    let handled: Vec<(i64, usize)> = journal
        .lock()
        .unwrap()
        .done
        .iter()
        .map(|(_, offset, payload)| (*offset, payload.len()))
        .collect();
    assert_eq!(handled, [(0, 4), (1, large.len()), (2, 4)]);
    assert_eq!(message_count(&dlq.name), 0);
}

/// Sluice's own producers can use every codec too: a zstd-compressed
/// record written by the idempotent producer is read back.
#[tokio::test]
async fn sluice_producers_write_with_every_codec() {
    let topic = TestTopic::create("producer-codecs", 1).await;
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let kafka = KafkaConfig::new(&Stack::get().kafka_bootstrap)
            .with_property("compression.type", codec);
        let producer = sluice_kafka::idempotent_producer(&kafka)
            .unwrap_or_else(|err| panic!("a producer with compression.type={codec}: {err}"));
        producer
            .send(
                FutureRecord::to(&topic.name).key("k").payload(codec),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(err, _)| panic!("writing with {codec}: {err}"));
    }
    let read: Vec<String> = consume_exactly(&topic.name, 5, WAIT)
        .await
        .iter()
        .map(|m| String::from_utf8(m.payload().unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(read, ["none", "gzip", "snappy", "lz4", "zstd"]);
}

/// A partition: topic and number.
type Partition = (String, i32);

/// Records every assignment the loop tells it of.
#[derive(Clone, Default)]
struct AssignmentLog {
    assigned: Arc<Mutex<Vec<Vec<Partition>>>>,
}

impl Handler for AssignmentLog {
    type Error = TestError;

    async fn handle(&self, _message: &OwnedMessage) -> Result<Owed, TestError> {
        Ok(Owed::nothing())
    }

    fn assigned(&self, partitions: &[Partition]) {
        let mut partitions = partitions.to_vec();
        partitions.sort();
        self.assigned.lock().unwrap().push(partitions);
    }
}

impl AssignmentLog {
    /// Waits until the latest assignment told satisfies `done`; returns it.
    async fn until(&self, what: &str, done: impl Fn(&[Partition]) -> bool) -> Vec<Partition> {
        eventually(what, WAIT, || {
            let latest = self.assigned.lock().unwrap().last().cloned();
            let latest = latest.filter(|latest| done(latest));
            async move { latest }
        })
        .await
    }
}

/// A handler hears of every partition it is given, also of one that comes
/// back from another member (sheets-sink forgets its cached row index
/// then: the other replica may have appended keys meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_is_told_of_each_assignment_also_of_partitions_coming_back() {
    let topic = TestTopic::create("assigned", 2).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "assigned-dlq", 1).await;
    let group = unique_name("assigned-group");
    let first = AssignmentLog::default();
    let stop_first = start_with(settings(&group, &topic.name), &dlq.name, first.clone());
    let both = vec![(topic.name.clone(), 0), (topic.name.clone(), 1)];
    first.until("both partitions told", |p| p == both).await;

    // A second member takes one partition; when it leaves, the partition
    // comes back and the first member is told.
    let stop_second = start_with(
        settings(&group, &topic.name),
        &dlq.name,
        AssignmentLog::default(),
    );
    let kept = first.until("one partition kept", |p| p.len() == 1).await;
    let taken = both.iter().find(|p| !kept.contains(p)).unwrap().clone();
    stop_second().await.unwrap();
    first
        .until("the partition coming back told", |p| p.contains(&taken))
        .await;
    assert_eq!(first.assigned.lock().unwrap().first(), Some(&both));
    stop_first().await.unwrap();
}

/// Where each message's handling began: (member, partition, offset).
type Begun = Arc<Mutex<Vec<(&'static str, i32, i64)>>>;

/// Takes `slow-*` messages 6 s to handle (a slow upstream call; longer than
/// a member takes to join), others at once; notes every start and every
/// assignment.
#[derive(Clone)]
struct SlowHandler {
    member: &'static str,
    begun: Begun,
    log: AssignmentLog,
}

impl Handler for SlowHandler {
    type Error = TestError;

    async fn handle(&self, message: &OwnedMessage) -> Result<Owed, TestError> {
        self.begun
            .lock()
            .unwrap()
            .push((self.member, message.partition(), message.offset()));
        // Long enough for the second member's join to revoke it while in
        // hand; within the revoke's wait (10 s here).
        if payload(message).starts_with("slow") {
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
        Ok(Owed::nothing())
    }

    fn assigned(&self, partitions: &[Partition]) {
        self.log.assigned(partitions);
    }
}

/// A member that joins while another is applying a message takes that
/// partition only once the message is settled: the message is applied once.
/// (Before, the revoked member kept applying it while the new owner started
/// it again from the last commit: the chart-run's two erp-sink replicas
/// created one sale order twice.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_in_hand_at_a_revoke_is_applied_by_one_member_only() {
    let topic = TestTopic::create("in-hand", 2).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "in-hand-dlq", 1).await;
    let group = unique_name("in-hand-group");
    let begun = Begun::default();
    let member = |member| SlowHandler {
        member,
        begun: Arc::clone(&begun),
        log: AssignmentLog::default(),
    };
    let first = member("first");
    let stop_first = start_with(settings(&group, &topic.name), &dlq.name, first.clone());
    let both = vec![(topic.name.clone(), 0), (topic.name.clone(), 1)];
    first
        .log
        .until("both partitions assigned", |p| p == both)
        .await;
    let send = |partition: i32, payload: &'static str| {
        let topic = topic.name.clone();
        async move {
            producer()
                .send(
                    FutureRecord::<str, str>::to(&topic)
                        .partition(partition)
                        .payload(payload),
                    Duration::from_secs(30),
                )
                .await
                .unwrap();
        }
    };
    send(0, "slow-0").await;
    send(1, "slow-1").await;
    eventually("both slow messages in hand", WAIT, || {
        let n = begun.lock().unwrap().len();
        async move { (n == 2).then_some(()) }
    })
    .await;

    // The second member joins while both are in hand.
    let second = member("second");
    let stop_second = start_with(settings(&group, &topic.name), &dlq.name, second.clone());
    second
        .log
        .until("a partition taken", |p| p.len() == 1)
        .await;
    // A marker behind each slow message: once both are handled, anything
    // that was going to handle a slow message again has begun it.
    send(0, "marker-0").await;
    send(1, "marker-1").await;
    eventually("both markers handled", WAIT, || {
        let n = begun
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, o)| *o == 1)
            .count();
        async move { (n >= 2).then_some(()) }
    })
    .await;
    let begun = begun.lock().unwrap().clone();
    let mut times = BTreeMap::<(i32, i64), Vec<&str>>::new();
    for (member, partition, offset) in &begun {
        times.entry((*partition, *offset)).or_default().push(member);
    }
    let twice: Vec<_> = times.iter().filter(|(_, by)| by.len() > 1).collect();
    assert!(twice.is_empty(), "applied more than once: {twice:?}");
    stop_second().await.unwrap();
    stop_first().await.unwrap();
}

/// Owes two audit entries for every message it handles: one on a topic
/// Kafka may refuse, one on a topic it takes. The first message's write is
/// slow, so the next is queued when it is done.
#[derive(Clone)]
struct OwingHandler {
    refused: Arc<AuditLog>,
    taken: Arc<AuditLog>,
    handled: Arc<Mutex<Vec<i64>>>,
}

impl Handler for OwingHandler {
    type Error = TestError;

    async fn handle(&self, message: &OwnedMessage) -> Result<Owed, TestError> {
        if message.offset() == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.handled.lock().unwrap().push(message.offset());
        let entry = self.refused.entry(
            AuditAction::ErpWrite,
            format!("offset/{}", message.offset()),
            "APPLIED",
        );
        let (refused, taken) = tokio::try_join!(
            self.refused.owe(&entry, Some(message)),
            self.taken.owe(&entry, Some(message)),
        )
        .map_err(|_| TestError::retryable("an audit record not encoded"))?;
        Ok(taken.and(refused))
    }
}

/// The subjects of the audit records on `topic`, sorted.
async fn audited_subjects(topic: &str) -> Vec<String> {
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let mut subjects = Vec::new();
    for message in committed_messages(topic).await {
        let record: AuditRecord = codec.decode(message.payload().unwrap()).await.unwrap();
        subjects.push(record.subject);
    }
    subjects.sort();
    subjects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_waits_for_what_its_handling_owes_kafka_and_only_that_is_sent_again() {
    const MESSAGES: i64 = 12;
    let input = TestTopic::create("owing-input", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "owing-dlq", 1).await;
    let group = unique_name("owing-group");
    let taken = TestTopic::with_schema_of("audit.v1", "owing-taken", 1).await;
    // This topic is not there yet: Kafka refuses its records (after a
    // second, their delivery timeout) until it is.
    let refused = unique_name("owing-refused");
    register_value_schema("audit.v1", &refused).await;
    for i in 0..MESSAGES {
        produce(&input.name, "key", &format!("ok-{i}")).await;
    }
    let stack = Stack::get();
    let codec = Arc::new(AvroCodec::new(stack.registry_settings()));
    let kafka = KafkaConfig::new(&stack.kafka_bootstrap);
    let log = |kafka: &KafkaConfig, topic: &str| {
        let publisher = ReplyPublisher::new(kafka, Arc::clone(&codec), topic).unwrap();
        Arc::new(AuditLog::new(publisher, "test-service", "tester".into()))
    };
    let handler = OwingHandler {
        refused: log(
            &kafka.clone().with_property("message.timeout.ms", "1000"),
            &refused,
        ),
        taken: log(&kafka, &taken.name),
        handled: Arc::default(),
    };
    // Commits within a fifth of a second of a store: a store too early
    // shows at once.
    let looping = kafka
        .clone()
        .with_property("auto.commit.interval.ms", "200");
    let stop = start_on(
        &looping,
        settings(&group, &input.name),
        &dlq.name,
        handler.clone(),
    );

    // The next messages are handled while the first's records are owed
    // (those waiting in the partition's queue when one is done) ...
    let handled = || handler.handled.lock().unwrap().clone();
    eventually("the second message handled", WAIT, || {
        let pipelined = handled().len() >= 2;
        async move { pipelined.then_some(()) }
    })
    .await;
    // ... but, for three delivery timeouts, no more than eight batches
    // owed and the ninth, in order, and no offset is stored.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let owed = handled();
    assert!(owed.len() <= 9, "{owed:?}");
    assert_eq!(owed, (0..owed.len() as i64).collect::<Vec<_>>());
    assert_eq!(committed_total(&group, &input.name, 1).await, 0);

    TestTopic::with_schema_named("audit.v1", refused.clone(), 1).await;
    until_committed(&group, &input.name, 1, MESSAGES, WAIT).await;
    stop().await.unwrap();
    // Each message handled once, its record Kafka took written once: only
    // the refused one was sent again.
    assert_eq!(handled(), (0..MESSAGES).collect::<Vec<_>>());
    let mut subjects: Vec<String> = (0..MESSAGES).map(|i| format!("offset/{i}")).collect();
    // In the order audited_subjects gives them: sorted as text.
    subjects.sort();
    assert_eq!(audited_subjects(&taken.name).await, subjects);
    let mut refused_subjects = audited_subjects(&refused).await;
    // At least once: a try that timed out may have landed too.
    refused_subjects.dedup();
    assert_eq!(refused_subjects, subjects);
}

/// Handles each message in 20 ms, counting how many are handled at once;
/// a `held` message answers "pause" while `outage` is set.
#[derive(Clone, Default)]
struct KeyedHandler {
    active: Arc<std::sync::atomic::AtomicUsize>,
    most: Arc<std::sync::atomic::AtomicUsize>,
    outage: Arc<std::sync::atomic::AtomicBool>,
    /// (key, offset) of each message handled, in the order handled.
    done: Arc<Mutex<Vec<(String, i64)>>>,
}

impl Handler for KeyedHandler {
    type Error = TestError;

    const ORDER: sluice_kafka::Order = sluice_kafka::Order::Key;

    async fn handle(&self, message: &OwnedMessage) -> Result<Owed, TestError> {
        use std::sync::atomic::Ordering::SeqCst;
        if payload(message).starts_with("held") && self.outage.load(SeqCst) {
            return Err(TestError::pause("HTTP 503", Duration::from_millis(50)));
        }
        let active = self.active.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(active, SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.active.fetch_sub(1, SeqCst);
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        self.done.lock().unwrap().push((key, message.offset()));
        Ok(Owed::nothing())
    }
}

impl KeyedHandler {
    /// The offsets handled of each key, in the order handled.
    fn by_key(&self) -> BTreeMap<String, Vec<i64>> {
        let mut keys: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (key, offset) in self.done.lock().unwrap().iter() {
            keys.entry(key.clone()).or_default().push(*offset);
        }
        keys
    }
}

fn keyed_settings(group: &str, topic: &str) -> ConsumerSettings {
    ConsumerSettings {
        partition_buffer: 64,
        max_batch: 40,
        max_concurrent: 3,
        batch_linger: Duration::from_millis(20),
        ..settings(group, topic)
    }
}

/// A handler that needs order only per key (erp-sink) has one partition's
/// keys handled at once, up to `max_concurrent`, each key's in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_of_one_partition_are_handled_at_once_each_in_order() {
    const MESSAGES: i64 = 40;
    let input = TestTopic::create("keyed-input", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "keyed-dlq", 1).await;
    let group = unique_name("keyed-group");
    for i in 0..MESSAGES {
        produce(&input.name, &format!("key-{}", i % 5), &format!("ok-{i}")).await;
    }
    let handler = KeyedHandler::default();
    let stop = start_with(
        keyed_settings(&group, &input.name),
        &dlq.name,
        handler.clone(),
    );
    until_committed(&group, &input.name, 1, MESSAGES, WAIT).await;
    stop().await.unwrap();

    let keys = handler.by_key();
    for key in 0..5 {
        let expected: Vec<i64> = (0..MESSAGES).filter(|i| i % 5 == key).collect();
        assert_eq!(
            keys[&format!("key-{key}")],
            expected,
            "key-{key} in order, each once"
        );
    }
    let most = handler.most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (2..=3).contains(&most),
        "{most} handled at once of one partition (at most 3)"
    );
}

/// A key that holds through an outage keeps the partition's offsets after
/// it from being committed, though other keys' messages after it are done:
/// stopped then, the next owner handles those again; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_key_keeps_the_offsets_after_it_until_it_is_settled() {
    let input = TestTopic::create("keyed-held-input", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "keyed-held-dlq", 1).await;
    let group = unique_name("keyed-held-group");
    produce(&input.name, "key-a", "ok-0").await;
    produce(&input.name, "key-b", "held-1").await;
    for i in 2..6 {
        produce(&input.name, "key-a", &format!("ok-{i}")).await;
    }
    let handler = KeyedHandler::default();
    handler
        .outage
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let looping = KafkaConfig::new(&Stack::get().kafka_bootstrap)
        .with_property("auto.commit.interval.ms", "200");
    // Every message in the first batch, however slowly they are queued:
    // key-a's past offset 1 are handled only if they are in its batch.
    let settings = ConsumerSettings {
        batch_linger: Duration::from_secs(1),
        ..keyed_settings(&group, &input.name)
    };
    let stop = start_on(&looping, settings, &dlq.name, handler.clone());
    eventually("key-a's messages handled past the held one", WAIT, || {
        let past = handler.by_key().get("key-a").map_or(0, Vec::len) == 5;
        async move { past.then_some(()) }
    })
    .await;
    // What was stored is committed at the stop: offset 1 holds it.
    stop().await.unwrap();
    let committed = committed_total(&group, &input.name, 1).await;
    assert!(
        committed <= 1,
        "committed up to {committed}, past the held offset 1"
    );

    handler
        .outage
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let stop = start_on(
        &looping,
        keyed_settings(&group, &input.name),
        &dlq.name,
        handler.clone(),
    );
    until_committed(&group, &input.name, 1, 6, WAIT).await;
    stop().await.unwrap();
    let keys = handler.by_key();
    assert_eq!(
        keys["key-b"],
        vec![1],
        "the held one handled once, after the outage"
    );
    let again = &keys["key-a"][5..];
    assert!(
        again.iter().all(|offset| *offset >= committed),
        "only what was not committed is handled again: {again:?}"
    );
    assert_eq!(message_count(&dlq.name), 0);
}

/// A stop (a revoke, a shutdown) starts no other message of a batch's keys:
/// the revoke that waits for the batch waits for the messages in hand, not
/// for every key's rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_starts_no_other_message_of_a_batchs_keys() {
    const MESSAGES: i64 = 31;
    let input = TestTopic::create("keyed-stop-input", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "keyed-stop-dlq", 1).await;
    let group = unique_name("keyed-stop-group");
    produce(&input.name, "key-a", "held-0").await;
    for i in 1..MESSAGES {
        produce(&input.name, "key-b", &format!("ok-{i}")).await;
    }
    let handler = KeyedHandler::default();
    handler
        .outage
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let settings = ConsumerSettings {
        batch_linger: Duration::from_secs(1),
        ..keyed_settings(&group, &input.name)
    };
    let stop = start_with(settings, &dlq.name, handler.clone());
    let handled = || handler.by_key().get("key-b").map_or(0, Vec::len);
    eventually("key-b's first messages handled", WAIT, || {
        let begun = handled() >= 2;
        async move { begun.then_some(()) }
    })
    .await;
    let at_stop = handled();
    stop().await.unwrap();
    // The one in hand at the stop may finish, and one more may have begun
    // between the count and the stop.
    let after = handled();
    assert!(
        after <= at_stop + 2,
        "{after} of key-b's {} handled, {at_stop} when stopped",
        MESSAGES - 1
    );
    assert_eq!(committed_total(&group, &input.name, 1).await, 0);
}
