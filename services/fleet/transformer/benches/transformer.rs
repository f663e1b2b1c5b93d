//! `make bench`: transformer throughput on a preloaded topic against a plain
//! copy of the same topic by rdkafka, all in this run on this machine:
//!
//! - copy: consume and produce the same bytes (no Avro, no mapping), acks=all
//!   idempotent producer, no transactions;
//! - copy in transactions: the same copy through the transactional loop
//!   (batches of 500, outputs and offsets committed together);
//! - transformer: the transactional loop with the shipped rules (decode
//!   Avro, map, encode two commands per event);
//! - the mapping alone: the same rules on the same events read into memory,
//!   on one task, no Kafka on either side (what the mapping costs per event).
//!
//! Each run has its own consumer group and output topics and is timed until
//! its group has committed every input offset (the copy without
//! transactions: until every output is acknowledged).
//!
//! Then the transformer against a Kafka Streams application doing the same
//! mapping (`deploy/local/peers/kafka-streams`: the requests-sheet-status
//! rule, exactly_once_v2, two stream threads) on the same preloaded
//! `RequestStatusChanged` events, each timed from its group's first
//! committed offset to its last (so neither JVM start-up nor group joins
//! count); both outputs are read back `read_committed` and must hold the
//! same commands, once each. Needs the local stack; writes
//! `bench-results/transformer.md`.
// A benchmark program: any failure ends it with the panic's message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureRecord;
use serde_json::json;
use sluice_avro::{AvroCodec, EventInput, event_record};
use sluice_contracts::Catalog;
use sluice_contracts::types::SheetRowUpsert;
use sluice_dlq::DeadLetterPublisher;
use sluice_fleet::cost::Usage;
use sluice_kafka::{
    HandlerError, KafkaConfig, OutputRecord, TransactionalLoop, TransactionalSettings, Transformer,
    idempotent_producer,
};
use sluice_mapping::load_rules;
use sluice_resilience::{Classified, ErrorClass, RetryPolicy};
use sluice_testkit::{
    Stack, TestTopic, committed_total, consume_exactly, eventually, scaled, unique_name,
};
use sluice_transformer::{Mapper, OutputTopics};

/// The shipped rules with the OrderPlaced rules a deployment without the
/// saga adds: an Orders row and a sale order per event, the mapping
/// measured since the first run.
const WITHOUT_SAGA: &str = concat!(
    include_str!("../rules.toml"),
    include_str!("../examples/orders-placed.toml")
);

/// Events preloaded for each run (100 000 at full scale).
fn events() -> usize {
    scaled(100_000, 2_000)
}
const PARTITIONS: i32 = 6;
const WAIT: Duration = Duration::from_secs(600);

/// Copies a message's bytes to another topic.
struct CopyTo(String);

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Classified for Never {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

impl HandlerError for Never {}

impl Transformer for CopyTo {
    type Error = Never;

    async fn transform(&self, message: &OwnedMessage) -> Result<Vec<OutputRecord>, Never> {
        Ok(vec![OutputRecord {
            topic: self.0.clone(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers: Vec::new(),
        }])
    }
}

/// Preloads `events()` events of `aggregate_type` on `topic`; `event(n)` is
/// the n-th one's key, event type and payload.
async fn preload(
    topic: &str,
    aggregate_type: &str,
    event: impl Fn(usize) -> (String, &'static str, serde_json::Value),
) {
    produce(topic, &encode(topic, aggregate_type, event).await).await;
}

/// `events()` events of `aggregate_type` as keys and values for `topic`;
/// `event(n)` is the n-th one's key, event type and payload.
async fn encode(
    topic: &str,
    aggregate_type: &str,
    event: impl Fn(usize) -> (String, &'static str, serde_json::Value),
) -> Vec<(String, Vec<u8>)> {
    let catalog = Catalog::embedded().unwrap();
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let mut encoded = Vec::with_capacity(events());
    for n in 0..events() {
        let (key, event_type, payload) = event(n);
        let (contract, value) = event_record(
            &catalog,
            &EventInput {
                aggregate_type,
                aggregate_id: &key,
                event_type,
                event_id: &format!("a1000000-0000-4000-8000-{n:012}"),
                occurred_at_ms: 1_795_437_296_789,
                correlation_id: None,
                causation_id: None,
                payload: &payload,
            },
        )
        .unwrap();
        encoded.push((
            key,
            codec.encode_value(topic, contract, value).await.unwrap(),
        ));
    }
    encoded
}

/// Produces `encoded` to `topic`, 10 000 at a time.
async fn produce(topic: &str, encoded: &[(String, Vec<u8>)]) {
    let producer = idempotent_producer(&KafkaConfig::new(&Stack::get().kafka_bootstrap)).unwrap();
    for chunk in encoded.chunks(10_000) {
        let sends = chunk.iter().map(|(key, bytes)| {
            producer.send(
                FutureRecord::to(topic).key(key).payload(bytes),
                Duration::from_secs(60),
            )
        });
        for sent in futures::future::join_all(sends).await {
            sent.unwrap();
        }
    }
}

fn order_placed(n: usize) -> (String, &'static str, serde_json::Value) {
    let payload = json!({
        "customer": {"customer_id": "c-1", "name": "Grace Hopper", "email": "grace@example.org"},
        "lines": [{"sku": "S-1", "description": "tea", "quantity": 3, "unit_price_minor": 650}],
        "total_minor": 1950, "currency": "EUR", "shipping_country": "NL"
    });
    (format!("order-{}", n % 1000), "OrderPlaced", payload)
}

/// A request moving on: every one of these matches requests-sheet-status.
fn request_status_changed(n: usize) -> (String, &'static str, serde_json::Value) {
    let to = ["IN_PROGRESS", "RESOLVED", "CLOSED"][n % 3];
    let payload =
        json!({"from_status": "OPEN", "to_status": to, "changed_by": format!("agent-{}", n % 17)});
    (format!("req-{}", n % 1000), "RequestStatusChanged", payload)
}

fn settings(input: &str, group: &str) -> TransactionalSettings {
    TransactionalSettings {
        group_id: group.to_owned(),
        topics: vec![input.to_owned()],
        transactional_id: unique_name("bench-tx"),
        max_batch: sluice_transformer::DEFAULT_MAX_BATCH,
        batch_linger: Duration::from_millis(20),
        retry: RetryPolicy {
            max_retries: 0,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
            multiplier: 1.0,
            jitter: 0.0,
            max_elapsed: None,
        },
        abort_backoff: Duration::from_millis(200),
        transaction_timeout: Duration::from_secs(30),
        stall_after: Duration::from_secs(300),
    }
}

/// Events per second of one run: over its whole time, and from its group's
/// first committed offset to its last.
struct Rates {
    whole: f64,
    drained: f64,
    /// This process's CPU seconds per 100 000 events over the run: the
    /// loop, and the little polling of offsets the benchmark adds.
    cpu_per_100k: f64,
}

/// Polls `group`'s committed offsets on `input` until they cover every
/// event; events/s from the first commit seen to the last. A run so small
/// that its first commit is its last (a smoke run: one transaction) is
/// timed from `started` instead.
async fn drained(group: &str, input: &str, started: Instant) -> f64 {
    let (first_at, first) = eventually("a first commit", WAIT, || async {
        let committed = committed_total(group, input, PARTITIONS).await;
        (committed > 0).then(|| (Instant::now(), committed))
    })
    .await;
    if first >= events() as i64 {
        return events() as f64 / started.elapsed().as_secs_f64();
    }
    let last_at = eventually("every input offset committed", WAIT, || async {
        (committed_total(group, input, PARTITIONS).await >= events() as i64).then(Instant::now)
    })
    .await;
    (events() as i64 - first) as f64 / last_at.duration_since(first_at).as_secs_f64()
}

/// Runs a transactional loop until its group committed every input offset.
/// Events per second the shipped rules map on one task, read from
/// `input` first: what the transformer's CPU costs per event, without
/// Kafka on either side.
async fn mapping_alone(input: &str, outputs: OutputTopics) -> f64 {
    let messages = consume_exactly(input, events(), Duration::from_secs(120)).await;
    let mapper = shipped_mapper(input, "orders", outputs);
    // The first event looks the output schemas' ids up in the registry.
    mapper.transform(&messages[0]).await.unwrap();
    let started = Instant::now();
    let mut commands = 0;
    for message in &messages {
        commands += mapper.transform(message).await.unwrap().len();
    }
    let rate = messages.len() as f64 / started.elapsed().as_secs_f64();
    assert_eq!(commands, 2 * messages.len());
    rate
}

async fn transactional<T: Transformer>(input: &str, transformer: T, dlq: &str) -> Rates {
    let group = unique_name("bench-group");
    let replica = start(input, &group, transformer, dlq);
    let cpu = || Usage::of(std::process::id()).unwrap().cpu_secs;
    let cpu_before = cpu();
    let started = Instant::now();
    let drained = drained(&group, input, started).await;
    let whole = events() as f64 / started.elapsed().as_secs_f64();
    let cpu_per_100k = (cpu() - cpu_before) / events() as f64 * 100_000.0;
    replica.stop().await;
    Rates {
        whole,
        drained,
        cpu_per_100k,
    }
}

/// A transactional loop running on its task, as one replica.
struct Replica {
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<Result<(), sluice_kafka::ConsumerError>>,
}

impl Replica {
    /// Stops the loop; a loop that had already ended shows its own error.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.running.await.unwrap().unwrap();
    }
}

/// Starts a transactional loop of `transformer` on `input` in `group`, with
/// a transactional id of its own.
fn start<T: Transformer>(input: &str, group: &str, transformer: T, dlq: &str) -> Replica {
    let stack = Stack::get();
    let dead_letters = DeadLetterPublisher::new(
        idempotent_producer(&KafkaConfig::new(&stack.kafka_bootstrap)).unwrap(),
        Arc::new(AvroCodec::new(stack.registry_settings())),
        dlq,
        "bench",
        "0.0.0",
    );
    let run = TransactionalLoop::new(
        &KafkaConfig::new(&stack.kafka_bootstrap),
        settings(input, group),
        transformer,
        &dead_letters,
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(run.run(async { stopped.await.unwrap_or(()) }));
    Replica { stop, running }
}

/// How long replicas get to join their group before the events come: a
/// join is a rebalance, which a timed run must not hold. One replica waits
/// as long, so that both runs are timed alike.
const SETTLE: Duration = Duration::from_secs(10);

/// `replicas` transformers with the shipped rules in one group on a topic
/// of their own, each a loop with its own transactional id as a replica
/// process has (here all in this process: one runtime, the machine's two
/// cores), the events produced once the group has settled; events/s from
/// its first commit to its last.
async fn scaled_out(replicas: usize, dlq: &str) -> f64 {
    let input =
        TestTopic::with_schema_of("orders.events.v1", "bench-replicas-in", PARTITIONS).await;
    let sheets =
        TestTopic::with_schema_of("sheets.rows.v1", "bench-replicas-rows", PARTITIONS).await;
    let erp = TestTopic::with_schema_of("erp.commands.v1", "bench-replicas-erp", PARTITIONS).await;
    let encoded = encode(&input.name, "orders", order_placed).await;
    let group = unique_name("bench-replicas");
    let running: Vec<Replica> = (0..replicas)
        .map(|_| {
            let mapper = shipped_mapper(&input.name, "orders", outputs(&sheets, &erp));
            start(&input.name, &group, mapper, dlq)
        })
        .collect();
    tokio::time::sleep(SETTLE).await;
    let started = Instant::now();
    produce(&input.name, &encoded).await;
    let rate = drained(&group, &input.name, started).await;
    for replica in running {
        replica.stop().await;
    }
    rate
}

/// Commands to `sheets` and `erp`.
fn outputs(sheets: &TestTopic, erp: &TestTopic) -> OutputTopics {
    OutputTopics {
        sheets: sheets.name.clone(),
        erp: erp.name.clone(),
    }
}

/// The shipped rules (with the OrderPlaced ones) reading `aggregate` from
/// `input`.
fn shipped_mapper(input: &str, aggregate: &str, outputs: OutputTopics) -> Mapper {
    let rules = load_rules(WITHOUT_SAGA, &Catalog::embedded().unwrap()).unwrap();
    Mapper::new(
        rules,
        &HashMap::from([(aggregate.to_owned(), input.to_owned())]),
        AvroCodec::new(Stack::get().registry_settings()),
        outputs,
    )
}

/// The Kafka Streams peer on `input` until its group committed every
/// input offset; events/s from its first commit to its last.
async fn kafka_streams(input: &str, output: &str) -> f64 {
    let stack = Stack::get();
    let application = unique_name("bench-streams");
    let log = std::fs::File::create(stack.local_dir.join("bench-kafka-streams.log")).unwrap();
    let started = Instant::now();
    let mut child = std::process::Command::new("bash")
        .arg(stack.path("deploy/local/streams.sh"))
        .arg("run")
        .args([&stack.kafka_bootstrap, &stack.schema_registry_url])
        .args([input, output, &application])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let rate = drained(&application, input, started).await;
    // The JVM runs under `exec`: the pid is its own.
    child.kill().unwrap();
    child.wait().unwrap();
    rate
}

/// Every command on `topic`, read `read_committed`, by command id.
async fn commands(topic: &str) -> HashMap<String, (Vec<u8>, SheetRowUpsert)> {
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let mut by_id = HashMap::new();
    for message in consume_exactly(topic, events(), WAIT).await {
        let upsert: SheetRowUpsert = codec.decode(message.payload().unwrap()).await.unwrap();
        let key = message.key().unwrap().to_vec();
        let id = upsert.command_id.clone();
        assert!(
            by_id.insert(id, (key, upsert)).is_none(),
            "a command twice on {topic}"
        );
    }
    by_id
}

/// Both tools made the same commands, once each.
async fn same_commands(ours: &str, theirs: &str) {
    let events = events();
    let (ours, theirs) = (commands(ours).await, commands(theirs).await);
    let differing = ours
        .iter()
        .filter(|(id, command)| theirs.get(*id) != Some(command))
        .count();
    assert_eq!(
        differing, 0,
        "{differing} of {events} commands differ between the transformer and Kafka Streams"
    );
}

/// Consume and produce the same bytes, no transactions; events per second
/// until every output is acknowledged.
async fn plain_copy(input: &str, output: &str) -> f64 {
    let stack = Stack::get();
    let consumer: StreamConsumer = stack
        .kafka_config()
        .set("group.id", unique_name("bench-copy"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[input]).unwrap();
    let producer = idempotent_producer(&KafkaConfig::new(&stack.kafka_bootstrap)).unwrap();
    let started = Instant::now();
    let mut deliveries = futures::stream::FuturesUnordered::new();
    let mut stream = consumer.stream();
    for _ in 0..events() {
        let message = stream.next().await.unwrap().unwrap();
        let mut record = FutureRecord::to(output).payload(message.payload().unwrap_or_default());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((_, unsent)) => {
                    record = unsent;
                    // Queue full: let acknowledgements drain it.
                    if let Some(done) = deliveries.next().await {
                        done.unwrap().unwrap();
                    }
                }
            }
        }
    }
    while let Some(done) = deliveries.next().await {
        done.unwrap().unwrap();
    }
    events() as f64 / started.elapsed().as_secs_f64()
}

/// The Kafka release the stack (and the Streams peer) run.
fn kafka_version() -> String {
    std::fs::read_to_string(Stack::get().path("deploy/local/versions.env"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("KAFKA_VERSION="))
        .unwrap()
        .to_owned()
}

#[tokio::main]
async fn main() {
    let events = events();
    let input =
        TestTopic::with_schema_of("orders.events.v1", "bench-transformer-in", PARTITIONS).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "bench-transformer-dlq", 1).await;
    eprintln!("[bench] preloading {events} OrderPlaced events");
    preload(&input.name, "orders", order_placed).await;

    eprintln!("[bench] copy, no transactions");
    let copy_out = TestTopic::create("bench-copy-out", PARTITIONS).await;
    let copy = plain_copy(&input.name, &copy_out.name).await;
    eprintln!("[bench] copy in transactions");
    let tx_out = TestTopic::create("bench-copy-tx-out", PARTITIONS).await;
    let copy_tx = transactional(&input.name, CopyTo(tx_out.name.clone()), &dlq.name).await;
    eprintln!("[bench] transformer, shipped rules");
    let sheets = TestTopic::with_schema_of("sheets.rows.v1", "bench-sheets", PARTITIONS).await;
    let erp = TestTopic::with_schema_of("erp.commands.v1", "bench-erp", PARTITIONS).await;
    let mapper = shipped_mapper(&input.name, "orders", outputs(&sheets, &erp));
    let mapped = transactional(&input.name, mapper, &dlq.name).await;
    let (mapped, mapped_cpu) = (mapped.whole, mapped.cpu_per_100k);
    let copy_tx = copy_tx.whole;
    eprintln!("[bench] the mapping alone, on one task");
    let alone = mapping_alone(&input.name, outputs(&sheets, &erp)).await;
    eprintln!(
        "[bench] copy in transactions {copy_tx:.0}, transformer {mapped:.0}, mapping alone {alone:.0} events/s"
    );
    eprintln!("[bench] one replica, then two in one group");
    let one = scaled_out(1, &dlq.name).await;
    let two = scaled_out(2, &dlq.name).await;

    eprintln!("[bench] preloading {events} RequestStatusChanged events");
    let requests =
        TestTopic::with_schema_of("requests.events.v1", "bench-requests-in", PARTITIONS).await;
    preload(&requests.name, "requests", request_status_changed).await;
    eprintln!("[bench] transformer on them");
    let ours_out =
        TestTopic::with_schema_of("sheets.rows.v1", "bench-requests-rows", PARTITIONS).await;
    let mapper = shipped_mapper(&requests.name, "requests", outputs(&ours_out, &erp));
    let ours = transactional(&requests.name, mapper, &dlq.name)
        .await
        .drained;
    eprintln!("[bench] Kafka Streams on them");
    let theirs_out =
        TestTopic::with_schema_of("sheets.rows.v1", "bench-streams-rows", PARTITIONS).await;
    let theirs = kafka_streams(&requests.name, &theirs_out.name).await;
    same_commands(&ours_out.name, &theirs_out.name).await;

    let mut out = String::new();
    writeln!(out, "# transformer benchmark\n").unwrap();
    writeln!(
        out,
        "Measured {} on this machine ({} cores), local stack, release build: {events} OrderPlaced \
         events preloaded on {PARTITIONS} partitions; each run has its own group and outputs. \
         The transformer makes two commands per event (an Orders row and a sale order).\n",
        chrono::DateTime::from_timestamp_millis(sluice_contracts::now_millis())
            .map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default(),
        std::thread::available_parallelism().map_or(0, usize::from),
    )
    .unwrap();
    writeln!(out, "| run | events/s | transformer / run |").unwrap();
    writeln!(out, "|---|---|---|").unwrap();
    for (name, rate) in [
        ("copy, no transactions (rdkafka, no Avro, no mapping)", copy),
        (
            "copy in transactions (the transactional loop, no Avro, no mapping)",
            copy_tx,
        ),
        ("transformer (transactions, Avro, shipped rules)", mapped),
        (
            "the mapping alone: decode, map, encode, no Kafka (one task)",
            alone,
        ),
    ] {
        writeln!(out, "| {name} | {rate:.0} | {:.2} |", mapped / rate).unwrap();
    }
    writeln!(
        out,
        "\nCPU of the transformer with the shipped rules (this process, from /proc): {mapped_cpu:.2} s per 100 000 events, {:.0} events/s per busy core.",
        100_000.0 / mapped_cpu.max(0.01)
    )
    .unwrap();
    writeln!(
        out,
        "\nScaling out: the transformer with the shipped rules as one replica, then two in one \
         group (each its own loop and transactional id, both in this process), on {events} \
         OrderPlaced events produced to {PARTITIONS} partitions once the group has settled, timed \
         from its first committed offset to its last: one {one:.0} events/s, two {two:.0}, \
         **{:.2} ×**. On this machine's two cores, the broker and the registry beside them.",
        two / one
    )
    .unwrap();
    writeln!(
        out,
        "\nAgainst Kafka Streams {} (deploy/local/peers/kafka-streams: the requests-sheet-status \
         rule by hand, exactly_once_v2, 2 stream threads, Avro through the same registry) on \
         {events} preloaded RequestStatusChanged events, each timed from its group's first \
         committed offset to its last. Both outputs read back read_committed: {events} commands \
         each, the same command ids, keys and records.\n",
        kafka_version()
    )
    .unwrap();
    writeln!(out, "| run | events/s | transformer / run |").unwrap();
    writeln!(out, "|---|---|---|").unwrap();
    writeln!(
        out,
        "| Kafka Streams, exactly once | {theirs:.0} | {:.2} |",
        ours / theirs
    )
    .unwrap();
    writeln!(out, "| transformer, exactly once | {ours:.0} | 1.00 |").unwrap();
    let dir = sluice_testkit::bench_results_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("transformer.md");
    std::fs::write(&file, &out).unwrap();
    println!("{out}\nwritten to {}", file.display());
}
