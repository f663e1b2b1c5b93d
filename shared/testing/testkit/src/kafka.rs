//! Per-test topics, a producer, and reading a topic back.

use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use sluice_telemetry::liveness::{LivenessContext, WatchedProducer};

use schema_registry_converter::async_impl::schema_registry::post_schema;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use sluice_contracts::Catalog;

use crate::{Stack, unique_name};

/// A topic made for one test; its unique name keeps it apart from every other test's.
#[derive(Debug)]
pub struct TestTopic {
    /// The topic's name.
    pub name: String,
}

impl TestTopic {
    /// Creates `<prefix>-<unique>` with `partitions` partitions.
    pub async fn create(prefix: &str, partitions: i32) -> TestTopic {
        Self::create_named(unique_name(prefix), partitions, &[]).await
    }

    /// Like [`TestTopic::create`], with topic configs set.
    pub async fn create_configured(
        prefix: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> TestTopic {
        Self::create_named(unique_name(prefix), partitions, configs).await
    }

    /// Creates `name` (which the caller made unique) and registers the value
    /// schema of the contract topic `contract` under `<name>-value`: for
    /// topics that must be named like their kind (`dlq.<unique>.v1`).
    pub async fn with_schema_named(contract: &str, name: String, partitions: i32) -> TestTopic {
        let topic = Self::create_named(name, partitions, &[]).await;
        topic.register_schema_of(contract).await;
        topic
    }

    /// Like [`TestTopic::with_schema_of`], with topic configs set
    /// (`max.message.bytes`, say).
    pub async fn with_schema_configured(
        contract: &str,
        prefix: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> TestTopic {
        let topic = Self::create_named(unique_name(prefix), partitions, configs).await;
        topic.register_schema_of(contract).await;
        topic
    }

    async fn create_named(name: String, partitions: i32, configs: &[(&str, &str)]) -> TestTopic {
        let admin = admin();
        let topic = configs.iter().fold(
            NewTopic::new(&name, partitions, TopicReplication::Fixed(1)),
            |topic, (key, value)| topic.set(key, value),
        );
        let results = admin
            .create_topics(
                &[topic],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            )
            .await
            .expect("create_topics request");
        for result in results {
            result.unwrap_or_else(|(topic, code)| panic!("creating test topic {topic}: {code}"));
        }
        wait_until_led(&admin, &name, partitions).await;
        TestTopic { name }
    }

    /// Creates `<prefix>-<unique>` and registers the value schema of the
    /// contract topic `contract` (e.g. `dlq.sheets-sink.v1`) under
    /// `<name>-value`, so codecs can encode for it.
    pub async fn with_schema_of(contract: &str, prefix: &str, partitions: i32) -> TestTopic {
        let topic = Self::create(prefix, partitions).await;
        topic.register_schema_of(contract).await;
        topic
    }

    async fn register_schema_of(&self, contract: &str) {
        register_value_schema(contract, &self.name).await;
    }
}

/// Registers the value schema of the contract topic `contract` under
/// `<topic>-value`, whether or not `topic` exists.
pub async fn register_value_schema(contract: &str, topic: &str) {
    let catalog = Catalog::embedded().expect("embedded contracts");
    let schema = catalog
        .topic(contract)
        .unwrap_or_else(|| panic!("no contract topic {contract}"))
        .value_schema_json()
        .to_owned();
    post_schema(
        &Stack::get().registry_settings(),
        format!("{topic}-value"),
        SuppliedSchema::new(None, SchemaType::Avro, schema),
    )
    .await
    .expect("registering the test topic's schema");
}

/// Waits until the broker's metadata shows every partition of a topic just
/// created with a leader: CreateTopics answers once the controller has
/// committed it, and a client asking the broker a moment later can still be
/// told the topic does not exist.
async fn wait_until_led(admin: &AdminClient<DefaultClientContext>, name: &str, partitions: i32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let led = admin
            .inner()
            .fetch_metadata(Some(name), Duration::from_secs(5))
            .ok()
            .and_then(|metadata| {
                metadata.topics().first().map(|topic| {
                    topic.error().is_none()
                        && topic.partitions().len() == partitions as usize
                        && topic.partitions().iter().all(|p| p.leader() >= 0)
                })
            })
            .unwrap_or(false);
        if led {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "test topic {name} has no leader 30 s after it was created"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn admin() -> AdminClient<DefaultClientContext> {
    Stack::get().kafka_config().create().expect("admin client")
}

/// An idempotent producer with `acks=all`, as the services use; one per
/// test process, since starting a producer costs a metadata round trip.
pub fn producer() -> WatchedProducer {
    static PRODUCER: std::sync::OnceLock<WatchedProducer> = std::sync::OnceLock::new();
    PRODUCER
        .get_or_init(|| {
            Stack::get()
                .kafka_config()
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .create_with_context(LivenessContext)
                .expect("producer")
        })
        .clone()
}

/// Reads `count` messages from the start of `topic` with a fresh group, and
/// checks no further message arrives for a short while.
pub async fn consume_exactly(topic: &str, count: usize, within: Duration) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = Stack::get()
        .kafka_config()
        .set("group.id", unique_name("testkit"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut stream = consumer.stream();
    let mut messages = Vec::with_capacity(count);
    let read = tokio::time::timeout(within, async {
        while messages.len() < count {
            let message = stream
                .next()
                .await
                .expect("consumer stream ended")
                .expect("consume");
            messages.push(message.detach());
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "read {} of {count} messages from {topic} in {within:?}",
        messages.len()
    );
    let extra = tokio::time::timeout(Duration::from_millis(500), stream.next()).await;
    if let Ok(Some(Ok(message))) = extra {
        panic!(
            "{topic} holds more than {count} messages; next at offset {}",
            message.offset()
        );
    }
    messages
}

/// The offsets group `group` has committed on `topic`, by partition
/// (partitions without a commit are left out).
pub fn committed_offsets(
    group: &str,
    topic: &str,
    partitions: i32,
) -> std::collections::BTreeMap<i32, i64> {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::{Offset, TopicPartitionList};
    // read_uncommitted: librdkafka's default (read_committed) asks for
    // stable offsets, which the broker withholds while a transaction with
    // offsets of the group is open. A SIGKILLed transactional member's stays
    // open until its transaction.timeout.ms (60 s), so a read right after
    // the kill timed out (seen once in CI). The committed offsets are what
    // is asked here; pending ones are not among them either way.
    let consumer: BaseConsumer = Stack::get()
        .kafka_config()
        .set("group.id", group)
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    // A cluster's first group makes its offsets topic, and the coordinator
    // answers "not available" or "loading" meanwhile, as it does when it
    // moves: asked again until it answers (a benchmark's first read of a
    // fresh cluster panicked here once).
    let deadline = Instant::now() + Duration::from_secs(60);
    let answered = loop {
        let answer = consumer
            .committed_offsets(list.clone(), Duration::from_secs(10))
            .and_then(|answered| {
                let away = answered
                    .elements()
                    .iter()
                    .find_map(|e| e.error().err().filter(coordinator_away));
                away.map_or(Ok(answered), Err)
            });
        match answer {
            Err(err) if coordinator_away(&err) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            other => break other,
        }
    };
    answered
        .unwrap_or_else(|err| panic!("offsets {group} committed on {topic}: {err}"))
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some((e.partition(), offset)),
            _ => None,
        })
        .collect()
}

/// Whether `err` says the group's coordinator is being made, loaded or
/// moved: a moment's answer, not the group's.
fn coordinator_away(err: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::{
        CoordinatorLoadInProgress, CoordinatorNotAvailable, NotCoordinator, OperationTimedOut,
        WaitingForCoordinator,
    };
    matches!(
        err.rdkafka_error_code(),
        Some(
            CoordinatorLoadInProgress
                | CoordinatorNotAvailable
                | NotCoordinator
                | WaitingForCoordinator
                | OperationTimedOut
        )
    )
}

/// Waits until `group` has committed at least `count` offsets over
/// `topic`'s `partitions` partitions.
pub async fn until_committed(
    group: &str,
    topic: &str,
    partitions: i32,
    count: i64,
    within: Duration,
) {
    let what = format!("{count} offsets of {topic} committed by {group}");
    crate::eventually(&what, within, || async {
        (committed_total(group, topic, partitions).await >= count).then_some(())
    })
    .await;
}

/// The sum of the offsets group `group` has committed on `topic`, read on a
/// blocking thread: polled from a test's runtime, the blocking client call
/// would hold one of its few workers (and starve the servers and sinks the
/// test runs in-process).
pub async fn committed_total(group: &str, topic: &str, partitions: i32) -> i64 {
    let (group, topic) = (group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        committed_offsets(&group, &topic, partitions).values().sum()
    })
    .await
    .expect("reading committed offsets")
}

/// How many messages `topic` holds (the sum of its partitions' watermarks).
pub fn message_count(topic: &str) -> i64 {
    use rdkafka::consumer::BaseConsumer;
    let consumer: BaseConsumer = Stack::get().kafka_config().create().expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .expect("watermarks");
            high - low
        })
        .sum()
}

/// Every message of `topic` a read_committed reader sees (aborted
/// transactions left out), read from the start to the end of each partition.
pub async fn committed_messages(topic: &str) -> Vec<OwnedMessage> {
    use rdkafka::TopicPartitionList;
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = Stack::get()
            .kafka_config()
            .set("group.id", unique_name("testkit"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("metadata");
        let mut partitions = TopicPartitionList::new();
        for partition in metadata.topics()[0].partitions() {
            partitions
                .add_partition_offset(&topic, partition.id(), rdkafka::Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&partitions).expect("assign");
        let mut at_end = std::collections::HashSet::new();
        let mut messages = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while at_end.len() < partitions.count() {
            assert!(
                std::time::Instant::now() < deadline,
                "{topic}: not every partition read to its end in 30 s"
            );
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Ok(message)) => messages.push(message.detach()),
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    at_end.insert(partition);
                }
                Some(Err(err))
                    if err.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) => {}
                Some(Err(err)) => panic!("reading {topic}: {err}"),
            }
        }
        messages
    })
    .await
    .expect("reading committed messages")
}
