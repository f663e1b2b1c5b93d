//! `make bench`: outbox-relay against the tool users would pick instead —
//! Debezium's PostgreSQL connector with its outbox EventRouter on Kafka
//! Connect (standalone, `deploy/local/connect.sh`, both from Maven Central) —
//! on the same Postgres, the same outbox rows, the same broker, measured the
//! same way from outside both:
//!
//! - throughput: a backlog of committed rows (transactions of 100) drained
//!   from a slot made before the rows, events/s from the first record on the
//!   topic to the last (the topic's watermarks, polled);
//! - latency: single-row transactions at a fixed rate while the tool
//!   streams; each row's `occurred_at` is `clock_timestamp()` at insert, and
//!   the topic stamps LogAppendTime, so insert → commit → Kafka append is
//!   read on the one clock of this machine, p50 / p99 over every row.
//!
//! Debezium runs twice: over TLS, as outbox-relay does (both take the TLS
//! the local Postgres offers, sslmode prefer), and on plain TCP, so that
//! the transport is not what the comparison rests on. The two do not do the same work per event: outbox-relay checks each row
//! against its Avro contract and writes the Confluent wire format through
//! the registry; the EventRouter writes the payload as a JSON string
//! (StringConverter), no registry. Needs the local stack; writes
//! `bench-results/outbox-relay-vs-debezium.md`.
// A benchmark program: any failure ends it with the panic's message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, Timestamp};
use rdkafka::{Offset, TopicPartitionList};
use sluice_testkit::{Stack, TestTopic, eventually, unique_name};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};

use crate::common::{
    RATE, ROWS_PER_TRANSACTION, RelayProcess, WAIT, backlog, drop_slot, insert, latency_run,
    outbox_table, slot_and_publication,
};

const PARTITIONS: i32 = 3;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tool {
    Relay,
    /// Debezium; over TLS (`database.sslmode=prefer`, as outbox-relay's
    /// default takes the TLS the local Postgres offers) or plain TCP.
    Debezium {
        tls: bool,
    },
}

impl Tool {
    /// The header each tool puts the row's id (the event id) in.
    fn id_header(self) -> &'static str {
        match self {
            Tool::Relay => "sluice.event_id",
            Tool::Debezium { .. } => "id",
        }
    }
}

/// A running relay or Connect worker.
enum Running {
    Relay(RelayProcess),
    Debezium(Child),
}

impl Running {
    fn stop(self) {
        match self {
            Running::Relay(relay) => relay.stop(),
            Running::Debezium(mut child) => {
                // The worker runs under `exec`: the pid is the JVM's.
                child.kill().unwrap();
                child.wait().unwrap();
            }
        }
    }
}

/// A topic for `tool`: the relay's needs the orders contract registered.
async fn topic_for(tool: Tool, prefix: &str) -> String {
    let topic = match tool {
        Tool::Relay => TestTopic::with_schema_of("orders.events.v1", prefix, PARTITIONS).await,
        Tool::Debezium { .. } => TestTopic::create(prefix, PARTITIONS).await,
    };
    topic.name
}

/// Makes the broker stamp each record as it appends it.
async fn log_append_time(topic: &str) {
    let admin: AdminClient<DefaultClientContext> = Stack::get().kafka_config().create().unwrap();
    let config = AlterConfig::new(ResourceSpecifier::Topic(topic))
        .set("message.timestamp.type", "LogAppendTime");
    for result in admin
        .alter_configs(&[config], &AdminOptions::new())
        .await
        .unwrap()
    {
        result.unwrap();
    }
}

/// Kafka Connect with Debezium's connector on `table`, routing every outbox
/// row to `topic` with the EventRouter; its replication stream over TLS or
/// plain TCP.
fn start_debezium(table: &str, topic: &str, tls: bool) -> Child {
    let stack = Stack::get();
    let dir: PathBuf = stack.local_dir.join("bench").join(table);
    std::fs::create_dir_all(&dir).unwrap();
    let database = url::Url::parse(&stack.database_url).unwrap();
    let port = sluice_testkit::free_port();
    // The producer as outbox-relay's: acks=all, idempotent, lz4, linger 5 ms.
    let worker = format!(
        "bootstrap.servers={bootstrap}\n\
         key.converter=org.apache.kafka.connect.storage.StringConverter\n\
         value.converter=org.apache.kafka.connect.storage.StringConverter\n\
         offset.storage.file.filename={dir}/offsets\n\
         offset.flush.interval.ms=1000\n\
         listeners=http://127.0.0.1:{port}\n\
         producer.acks=all\n\
         producer.enable.idempotence=true\n\
         producer.compression.type=lz4\n\
         producer.linger.ms=5\n",
        bootstrap = stack.kafka_bootstrap,
        dir = dir.display(),
    );
    let connector = format!(
        "name={table}\n\
         connector.class=io.debezium.connector.postgresql.PostgresConnector\n\
         tasks.max=1\n\
         plugin.name=pgoutput\n\
         database.hostname={host}\n\
         database.port={db_port}\n\
         database.user={user}\n\
         database.password={password}\n\
         database.dbname={dbname}\n\
         topic.prefix={table}\n\
         table.include.list=public.{table}\n\
         publication.name={table}_pub\n\
         publication.autocreate.mode=disabled\n\
         slot.name={table}_slot\n\
         snapshot.mode=no_data\n\
         poll.interval.ms=10\n\
         database.sslmode={sslmode}\n\
         transforms=outbox\n\
         transforms.outbox.type=io.debezium.transforms.outbox.EventRouter\n\
         transforms.outbox.table.field.event.id=id\n\
         transforms.outbox.table.field.event.key=aggregate_id\n\
         transforms.outbox.table.field.event.payload=payload\n\
         transforms.outbox.route.by.field=aggregate_type\n\
         transforms.outbox.route.topic.replacement={topic}\n\
         transforms.outbox.table.fields.additional.placement=event_type:header:sluice.event_type\n",
        host = database.host_str().unwrap(),
        db_port = database.port().unwrap(),
        user = database.username(),
        password = database.password().unwrap(),
        dbname = database.path().trim_start_matches('/'),
        sslmode = if tls { "prefer" } else { "disable" },
    );
    std::fs::write(dir.join("worker.properties"), worker).unwrap();
    std::fs::write(dir.join("connector.properties"), connector).unwrap();
    let log = std::fs::File::create(dir.join("connect.log")).unwrap();
    Command::new("bash")
        .arg(stack.path("deploy/local/connect.sh"))
        .arg("run")
        .arg(dir.join("worker.properties"))
        .arg(dir.join("connector.properties"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

fn start(tool: Tool, table: &str, topic: &str, dlq: &str) -> Running {
    match tool {
        Tool::Relay => Running::Relay(RelayProcess::start(table, topic, dlq)),
        Tool::Debezium { tls } => Running::Debezium(start_debezium(table, topic, tls)),
    }
}

/// Records on `topic` so far: the sum of its high watermarks.
async fn records_on(topic: &str) -> i64 {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || sluice_testkit::message_count(&topic))
        .await
        .unwrap()
}

/// Drains a committed backlog; events/s from the first record to the last.
async fn throughput(pool: &PgPool, tool: Tool, name: &str) -> f64 {
    let table = outbox_table(pool, &format!("bench_{name}_backlog")).await;
    let topic = topic_for(tool, &format!("bench-{name}-backlog")).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "bench-dlq", 1).await;
    slot_and_publication(pool, &table).await;
    for _ in 0..backlog() / ROWS_PER_TRANSACTION {
        insert(pool, &table, ROWS_PER_TRANSACTION).await;
    }
    let running = start(tool, &table, &topic, &dlq.name);
    let (first_at, first) = eventually("the first record", WAIT, || async {
        let count = records_on(&topic).await;
        (count > 0).then(|| (Instant::now(), count))
    })
    .await;
    let last_at = eventually("the backlog on the topic", WAIT, || async {
        (records_on(&topic).await >= backlog() as i64).then(Instant::now)
    })
    .await;
    running.stop();
    drop_slot(pool, &table).await;
    (backlog() as i64 - first) as f64 / last_at.duration_since(first_at).as_secs_f64()
}

/// Inserts one row with `occurred_at` stamped as it is written.
async fn insert_stamped(pool: &PgPool, table: &str) {
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload, occurred_at) \
         VALUES (gen_random_uuid(), 'orders', 'order-' || (random() * 500)::int, 'OrderCancelled', \
                 '{{\"reason\":\"customer asked\",\"cancelled_by\":\"support\"}}', clock_timestamp())"
    )))
    .execute(pool)
    .await
    .unwrap();
}

/// Every record of `topic`: its id header and the broker's append time (ms).
fn appended(topic: &str, id_header: &str, expected: usize) -> HashMap<String, i64> {
    let consumer: BaseConsumer = Stack::get()
        .kafka_config()
        .set("group.id", unique_name("bench-read"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut stamps = HashMap::new();
    let deadline = Instant::now() + WAIT;
    while stamps.len() < expected && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_secs(1)) else {
            continue;
        };
        let message = message.unwrap();
        let Timestamp::LogAppendTime(at) = message.timestamp() else {
            panic!("{topic} is not stamped at append");
        };
        let id = message
            .headers()
            .and_then(|headers| {
                headers
                    .iter()
                    .find(|header| header.key == id_header)
                    .and_then(|header| header.value)
                    .map(|value| String::from_utf8_lossy(value).trim_matches('"').to_owned())
            })
            .unwrap_or_else(|| panic!("a record of {topic} without a {id_header} header"));
        stamps.insert(id, at);
    }
    stamps
}

struct Latency {
    p50_ms: f64,
    p99_ms: f64,
}

/// Single-row transactions at `RATE` while the tool streams.
async fn latency(pool: &PgPool, tool: Tool, name: &str) -> Latency {
    let table = outbox_table(pool, &format!("bench_{name}_latency")).await;
    let topic = topic_for(tool, &format!("bench-{name}-latency")).await;
    log_append_time(&topic).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "bench-dlq", 1).await;
    slot_and_publication(pool, &table).await;
    let running = start(tool, &table, &topic, &dlq.name);
    // Streaming once a row goes through; those rows count like the rest.
    eventually("the tool to stream", WAIT, || async {
        insert_stamped(pool, &table).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        (records_on(&topic).await > 0).then_some(())
    })
    .await;
    let per_tick = RATE / 100;
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let started = Instant::now();
    while started.elapsed() < latency_run() {
        ticker.tick().await;
        futures::future::join_all((0..per_tick).map(|_| insert_stamped(pool, &table))).await;
    }
    let written: Vec<(String, f64)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT id::text, extract(epoch FROM occurred_at)::float8 * 1000 FROM {table}"
    )))
    .fetch_all(pool)
    .await
    .unwrap();
    let stamps = {
        let topic = topic.clone();
        let expected = written.len();
        tokio::task::spawn_blocking(move || appended(&topic, tool.id_header(), expected))
            .await
            .unwrap()
    };
    running.stop();
    drop_slot(pool, &table).await;
    let mut latencies: Vec<f64> = written
        .iter()
        .map(|(id, at)| {
            let appended = stamps
                .get(id)
                .unwrap_or_else(|| panic!("row {id} never reached {topic}"));
            *appended as f64 - at
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Latency {
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
    }
}

/// (events/s, latency) of a run.
type Measured = (f64, Latency);

fn report(relay: &Measured, tls: &Measured, plain: &Measured) -> String {
    let versions = std::fs::read_to_string(Stack::get().path("deploy/local/versions.env")).unwrap();
    let version = |key: &str| {
        versions
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
            .unwrap_or("?")
            .to_owned()
    };
    let mut out = String::new();
    writeln!(out, "# outbox-relay vs Debezium\n").unwrap();
    writeln!(
        out,
        "Measured {} on this machine ({} cores), local stack, release build, against \
         Debezium {} (PostgreSQL connector, pgoutput, outbox EventRouter) on Kafka Connect {} \
         standalone, same Postgres, same broker, same rows, same producer settings (acks=all, \
         idempotent, lz4, linger 5 ms); Debezium tuned for latency (poll.interval.ms 10, its \
         default 500). outbox-relay also validates each row against its Avro \
         contract and writes the Confluent wire format; the EventRouter writes the JSON payload \
         as a string. The local Postgres offers TLS and both take it by default \
         (sslmode prefer); Debezium also runs on plain TCP (sslmode disable), so its \
         transport is not what the comparison rests on.\n",
        chrono::DateTime::from_timestamp_millis(sluice_contracts::now_millis())
            .map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default(),
        std::thread::available_parallelism().map_or(0, usize::from),
        version("DEBEZIUM_VERSION"),
        version("KAFKA_VERSION"),
    )
    .unwrap();
    writeln!(
        out,
        "| measure | outbox-relay (TLS) | Debezium (TLS) | relay / Debezium (TLS) | Debezium (plain TCP) | relay / Debezium (plain TCP) |\n|---|---:|---:|---:|---:|---:|"
    )
    .unwrap();
    writeln!(
        out,
        "| throughput, {} committed rows in transactions of {ROWS_PER_TRANSACTION} (events/s) | {:.0} | {:.0} | {:.2} | {:.0} | {:.2} |",
        backlog(),
        relay.0,
        tls.0,
        relay.0 / tls.0,
        plain.0,
        relay.0 / plain.0
    )
    .unwrap();
    for (name, pick) in [
        ("p50", (|l: &Latency| l.p50_ms) as fn(&Latency) -> f64),
        ("p99", |l: &Latency| l.p99_ms),
    ] {
        let (ours, theirs, plain) = (pick(&relay.1), pick(&tls.1), pick(&plain.1));
        writeln!(
            out,
            "| latency {name} at {RATE} rows/s, insert → Kafka append (ms) | {ours:.1} | {theirs:.1} | {:.3} | {plain:.1} | {:.2} |",
            ours / theirs.max(0.1),
            ours / plain.max(0.1)
        )
        .unwrap();
    }
    out
}

#[tokio::main]
async fn main() {
    let stack = Stack::get();
    let status = Command::new("bash")
        .arg(stack.path("deploy/local/connect.sh"))
        .arg("fetch")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "fetching Kafka Connect and Debezium failed"
    );
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(RATE / 100).unwrap())
        .connect(&stack.database_url)
        .await
        .unwrap();
    let mut results = Vec::new();
    for (tool, name) in [
        (Tool::Relay, "relay"),
        (Tool::Debezium { tls: true }, "debezium"),
        (Tool::Debezium { tls: false }, "debezium_plain"),
    ] {
        eprintln!(
            "[bench] {name}: latency at {RATE} rows/s for {:?}",
            latency_run()
        );
        let latency = latency(&pool, tool, name).await;
        eprintln!("[bench] {name}: throughput, {} rows", backlog());
        let throughput = throughput(&pool, tool, name).await;
        results.push((throughput, latency));
    }
    let text = report(&results[0], &results[1], &results[2]);
    let dir = sluice_testkit::bench_results_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("outbox-relay-vs-debezium.md");
    std::fs::write(&file, &text).unwrap();
    println!("{text}\nwritten to {}", file.display());
}
