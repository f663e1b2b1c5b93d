//! Exactly-once consume → transform → produce under SIGKILL: a child process
//! runs the transactional loop and is killed mid-stream; after a restart a
//! read_committed reader sees each output, and each dead letter, exactly once,
//! each key's outputs in its inputs' order.
//! A static member fenced by another with its instance id ends the loop.
//! A dependency that is away is asked about a batch once a task, not once a
//! message.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::producer::FutureRecord;
use sluice_avro::AvroCodec;
use sluice_contracts::types::DeadLetter;
use sluice_dlq::DeadLetterPublisher;
use sluice_kafka::{
    KafkaConfig, OutputRecord, TransactionalLoop, TransactionalSettings, Transformer,
};
mod common;
use common::{TestError, env_var, no_retries};
use sluice_testkit::{
    KillOnDrop, Stack, TestTopic, committed_offsets, consume_exactly, eventually, message_count,
    producer, unique_name,
};

const PARTITIONS: i32 = 3;
const MESSAGES: usize = 300;
const WAIT: Duration = Duration::from_secs(90);

/// `n` becomes `out-n` on the output topic, tagged with where it came from;
/// `poison-n` cannot be transformed.
struct Tagger {
    output: String,
}

impl Transformer for Tagger {
    type Error = TestError;

    async fn transform(&self, message: &OwnedMessage) -> Result<Vec<OutputRecord>, TestError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let payload = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
        if payload.starts_with("poison") {
            return Err(TestError::permanent("payload is poison"));
        }
        Ok(vec![OutputRecord {
            topic: self.output.clone(),
            key: message.key().map(<[u8]>::to_vec),
            payload: format!("out-{payload}").into_bytes(),
            headers: vec![(
                "source".into(),
                format!("{}:{}", message.partition(), message.offset()).into_bytes(),
            )],
        }])
    }
}

/// The child process: transforms until it is killed. Run by the test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of sigkill_mid_stream_leaves_each_output_exactly_once"]
async fn transforming_child() {
    tagging_loop(
        &env_var("GROUP"),
        &env_var("TOPIC"),
        &env_var("TRANSACTIONAL_ID"),
        &env_var("OUTPUT_TOPIC"),
        &env_var("DLQ_TOPIC"),
    )
    .run(std::future::pending())
    .await
    .unwrap();
}

/// A loop tagging `input` into `output` in group `group`.
fn tagging_loop(
    group: &str,
    input: &str,
    transactional_id: &str,
    output: &str,
    dlq: &str,
) -> TransactionalLoop<Tagger> {
    let tagger = Tagger {
        output: output.to_owned(),
    };
    transactional_loop(group, input, transactional_id, dlq, tagger)
}

/// A loop running `transformer` on `input` in group `group`, in batches of
/// up to 20.
fn transactional_loop<T: Transformer>(
    group: &str,
    input: &str,
    transactional_id: &str,
    dlq: &str,
    transformer: T,
) -> TransactionalLoop<T> {
    let stack = Stack::get();
    let kafka = KafkaConfig::new(&stack.kafka_bootstrap)
        .with_property("session.timeout.ms", "6000")
        .with_property("heartbeat.interval.ms", "1000");
    let codec = Arc::new(AvroCodec::new(stack.registry_settings()));
    let dead_letters = DeadLetterPublisher::new(producer(), codec, dlq, "tx-test", "0.0.0");
    let settings = TransactionalSettings {
        group_id: group.to_owned(),
        topics: vec![input.to_owned()],
        transactional_id: transactional_id.to_owned(),
        max_batch: 20,
        batch_linger: Duration::from_millis(20),
        retry: no_retries(),
        abort_backoff: Duration::from_millis(200),
        transaction_timeout: Duration::from_secs(30),
        stall_after: Duration::from_secs(300),
    };
    TransactionalLoop::new(&kafka, settings, transformer, &dead_letters).unwrap()
}

struct Topics {
    input: TestTopic,
    output: TestTopic,
    dlq: TestTopic,
    group: String,
    transactional_id: String,
}

fn spawn_transformer(topics: &Topics) -> KillOnDrop {
    KillOnDrop::test_child(
        "transforming_child",
        &[
            ("TOPIC", &topics.input.name),
            ("OUTPUT_TOPIC", &topics.output.name),
            ("DLQ_TOPIC", &topics.dlq.name),
            ("GROUP", &topics.group),
            ("TRANSACTIONAL_ID", &topics.transactional_id),
        ],
    )
}

async fn wait_for_committed(topics: &Topics, at_least: i64) {
    eventually(&format!("{at_least} inputs committed"), WAIT, || {
        let committed: i64 = committed_offsets(&topics.group, &topics.input.name, PARTITIONS)
            .values()
            .sum();
        async move { (committed >= at_least).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_leaves_each_output_exactly_once() {
    let topics = Topics {
        input: TestTopic::create("tx-input", PARTITIONS).await,
        output: TestTopic::create("tx-output", PARTITIONS).await,
        dlq: TestTopic::with_schema_of("dlq.transformer.v1", "tx-dlq", 1).await,
        group: unique_name("tx-group"),
        transactional_id: unique_name("tx-id"),
    };
    let mut poison = BTreeSet::new();
    for i in 0..MESSAGES {
        let payload = if i % 50 == 7 {
            format!("poison-{i}")
        } else {
            i.to_string()
        };
        let delivery = producer()
            .send(
                FutureRecord::to(&topics.input.name)
                    .key(&format!("key-{}", i % 10))
                    .payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        if payload.starts_with("poison") {
            poison.insert((delivery.partition, delivery.offset));
        }
    }

    let child = spawn_transformer(&topics);
    wait_for_committed(&topics, 80).await;
    drop(child); // SIGKILL
    let committed_at_kill: i64 = committed_offsets(&topics.group, &topics.input.name, PARTITIONS)
        .values()
        .sum();
    assert!(
        committed_at_kill < MESSAGES as i64,
        "the kill came after the end; nothing was tested"
    );

    let child = spawn_transformer(&topics);
    wait_for_committed(&topics, MESSAGES as i64).await;
    drop(child); // SIGKILL

    // Each input that is not poison has exactly one committed output.
    let outputs = consume_exactly(&topics.output.name, MESSAGES - poison.len(), WAIT).await;
    let sources: Vec<String> = outputs
        .iter()
        .map(|m| {
            let header = m
                .headers()
                .unwrap()
                .iter()
                .find(|h| h.key == "source")
                .unwrap();
            String::from_utf8(header.value.unwrap().to_vec()).unwrap()
        })
        .collect();
    let unique: BTreeSet<&String> = sources.iter().collect();
    assert_eq!(unique.len(), sources.len(), "an output was committed twice");
    // Each key's outputs in its inputs' order: a batch is mapped on several
    // tasks, and still produced in turn.
    let mut last_offset: HashMap<Vec<u8>, i64> = HashMap::new();
    for (output, source) in outputs.iter().zip(&sources) {
        let offset: i64 = source.split_once(':').unwrap().1.parse().unwrap();
        let key = output.key().unwrap().to_vec();
        if let Some(before) = last_offset.insert(key, offset) {
            assert!(
                before < offset,
                "{source} came after offset {before} of its key"
            );
        }
    }
    for (partition, offset) in &poison {
        assert!(
            !unique.contains(&format!("{partition}:{offset}")),
            "poison produced an output"
        );
    }

    // Each poison input has exactly one committed dead letter.
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let mut dead = BTreeSet::new();
    for message in consume_exactly(&topics.dlq.name, poison.len(), WAIT).await {
        let letter: DeadLetter = codec.decode(message.payload().unwrap()).await.unwrap();
        assert_eq!(letter.error_message, "payload is poison");
        dead.insert((letter.original_partition, letter.original_offset));
    }
    assert_eq!(dead, poison);
}

/// Another member joining with the loop's `group.instance.id` fences it for
/// good, as a broker restart that lost a restarted instance's join does. The
/// loop ends with an error, for a supervisor to start a process that joins
/// afresh, instead of aborting and retrying the same batch forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_static_member_ends_the_loop() {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use sluice_kafka::ConsumerError;

    let input = TestTopic::create("fenced-input", 1).await;
    let output = TestTopic::create("fenced-output", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "fenced-dlq", 1).await;
    let (group, transactional_id) = (unique_name("fenced-group"), unique_name("fenced-id"));
    let running = tokio::spawn(
        tagging_loop(
            &group,
            &input.name,
            &transactional_id,
            &output.name,
            &dlq.name,
        )
        .run(std::future::pending()),
    );
    let send = |payload: &'static str| {
        let topic = input.name.clone();
        async move {
            producer()
                .send(
                    FutureRecord::to(&topic).key("k").payload(payload),
                    Duration::from_secs(30),
                )
                .await
                .unwrap();
        }
    };
    send("1").await;
    consume_exactly(&output.name, 1, WAIT).await;

    // The intruder: same group, same instance id.
    let intruder: StreamConsumer = Stack::get()
        .kafka_config()
        .set("group.id", &group)
        .set("group.instance.id", &transactional_id)
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    intruder.subscribe(&[&input.name]).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), intruder.recv()).await;
    send("2").await;

    let ended = tokio::time::timeout(WAIT, running)
        .await
        .expect("the fenced loop still runs")
        .unwrap();
    assert!(
        matches!(
            ended,
            Err(ConsumerError::Fatal { .. } | ConsumerError::Transaction(_))
        ),
        "{ended:?}"
    );
    // librdkafka's fatal error marked the process dead: a service's
    // /healthz now fails and its runtime stops it.
    let dead = sluice_telemetry::liveness::dead().expect("the process marked dead");
    assert!(dead.contains("fatal error"), "{dead}");
}

/// Fails every message as a dependency that is away would, noting which
/// offsets it was asked about.
struct Away {
    asked: Arc<Mutex<Vec<i64>>>,
}

impl Transformer for Away {
    type Error = TestError;

    async fn transform(&self, message: &OwnedMessage) -> Result<Vec<OutputRecord>, TestError> {
        self.asked.lock().unwrap().push(message.offset());
        Err(TestError::pause(
            "the registry is away",
            Duration::from_millis(100),
        ))
    }
}

/// A batch's messages get their first try on several tasks; with a
/// dependency away, each task stops at its first failure, and the loop
/// holds the batch at its first message: a dependency that answers only
/// after its timeout is waited on once a task, not once a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_away_is_asked_once_a_task_for_a_batch() {
    let input = TestTopic::create("away-input", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "away-dlq", 1).await;
    for n in 0..20 {
        producer()
            .send(
                FutureRecord::to(&input.name)
                    .key("k")
                    .payload(&n.to_string()),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
    }
    let asked = Arc::new(Mutex::new(Vec::new()));
    let away = Away {
        asked: Arc::clone(&asked),
    };
    let (group, transactional_id) = (unique_name("away-group"), unique_name("away-id"));
    let running = tokio::spawn(
        transactional_loop(&group, &input.name, &transactional_id, &dlq.name, away)
            .run(std::future::pending()),
    );
    // Three tries of the batch at least (each aborted, then tried again).
    eventually("the batch tried three times", WAIT, || {
        let calls = asked.lock().unwrap().len();
        async move { (calls >= 9).then_some(()) }
    })
    .await;
    running.abort();
    let asked = asked.lock().unwrap().clone();
    let distinct: BTreeSet<i64> = asked.iter().copied().collect();
    // One first try for each of the two tasks' first messages, and the
    // walk's try of the batch's first: never its other messages.
    assert!(
        distinct.len() <= 2 && distinct.contains(&0),
        "offsets asked about: {asked:?}"
    );
    assert_eq!(message_count(&dlq.name), 0, "nothing dead-lettered");
}
