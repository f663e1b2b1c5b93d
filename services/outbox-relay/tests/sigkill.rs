//! The relay killed with SIGKILL again and again while transactions commit
//! (and some roll back): afterwards every committed row is on Kafka, none
//! of the rolled-back ones, in commit order per aggregate; duplicates only
//! from rows after the last confirmed LSN.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use outbox_relay::{OutboxSource, Relay, ReplicationConnection};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use sluice_avro::AvroCodec;
use sluice_contracts::Catalog;
use sluice_contracts::types::OrderEvent;
use sluice_dlq::DeadLetterPublisher;
use sluice_testkit::{Stack, TestTopic, eventually, message_count, producer, unique_name};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};

const TRANSACTIONS: usize = 150;
const ROWS_PER_TRANSACTION: usize = 10;
const WAIT: Duration = Duration::from_secs(120);

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
}

fn relay(pool: PgPool, table: &str, topic: &str, dlq: &str) -> Relay {
    let stack = Stack::get();
    let url = url::Url::parse(&stack.database_url).unwrap();
    Relay {
        pool,
        source: OutboxSource {
            connection: ReplicationConnection {
                host: url.host_str().unwrap().to_owned(),
                port: url.port().unwrap(),
                user: url.username().to_owned(),
                password: url.password().unwrap().to_owned(),
                database: url.path().trim_start_matches('/').to_owned(),
            },
            table: table.to_owned(),
            slot: format!("{table}_slot"),
            publication: format!("{table}_pub"),
        },
        catalog: Catalog::embedded().unwrap(),
        routes: HashMap::from([("orders".to_owned(), topic.to_owned())]),
        codec: AvroCodec::new(stack.registry_settings()),
        producer: producer(),
        dead_letters: DeadLetterPublisher::new(
            producer(),
            Arc::new(AvroCodec::new(stack.registry_settings())),
            dlq,
            "outbox-relay",
            "0.0.0",
        ),
    }
}

/// The relay process. Run by the test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of sigkill_during_the_stream_loses_nothing"]
async fn relay_child() {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&Stack::get().database_url)
        .await
        .unwrap();
    relay(pool, &var("TABLE"), &var("TOPIC"), &var("DLQ_TOPIC"))
        .run(std::future::pending())
        .await
        .unwrap();
}

fn spawn_relay(table: &str, topic: &str, dlq: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .stdout(Stdio::null())
        .args(["--exact", "relay_child", "--ignored", "--nocapture"])
        .env("TABLE", table)
        .env("TOPIC", topic)
        .env("DLQ_TOPIC", dlq)
        .spawn()
        .unwrap()
}

/// Row `n` of the stream: its id encodes `n`, so order can be checked.
fn row_id(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_the_stream_loses_nothing() {
    let stack = Stack::get();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&stack.database_url)
        .await
        .unwrap();
    let table = unique_name("outbox_kill").replace('-', "_");
    let ddl = include_str!("../migrations/0001_outbox.sql").replace(
        "CREATE TABLE IF NOT EXISTS outbox",
        &format!("CREATE TABLE {table}"),
    );
    sqlx::raw_sql(AssertSqlSafe(ddl))
        .execute(&pool)
        .await
        .unwrap();
    let topic = TestTopic::with_schema_of("orders.events.v1", "relay-kill", 3).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "relay-kill-dlq", 1).await;
    relay(pool.clone(), &table, &topic.name, &dlq.name)
        .prepare()
        .await
        .unwrap();

    // The business side: transactions of 10 rows over 20 aggregates; every
    // 7th rolls back.
    let writer = {
        let pool = pool.clone();
        let table = table.clone();
        tokio::spawn(async move {
            let mut committed = Vec::new();
            for t in 0..TRANSACTIONS {
                let mut tx = pool.begin().await.unwrap();
                let rows: Vec<usize> = (0..ROWS_PER_TRANSACTION)
                    .map(|r| t * ROWS_PER_TRANSACTION + r)
                    .collect();
                for &n in &rows {
                    sqlx::query(AssertSqlSafe(format!(
                        "INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload) \
                         VALUES ($1::uuid, 'orders', $2, 'OrderCancelled', '{{\"reason\":\"r\",\"cancelled_by\":\"c\"}}')"
                    )))
                    .bind(row_id(n))
                    .bind(format!("order-{}", n % 20))
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                }
                if t % 7 == 3 {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                    committed.extend(rows);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            committed
        })
    };

    // Kill the relay three times while it streams.
    let mut kills = 0;
    for threshold in [100, 400, 700] {
        let mut child = spawn_relay(&table, &topic.name, &dlq.name);
        eventually(&format!("{threshold} events relayed"), WAIT, || {
            let count = message_count(&topic.name);
            async move { (count >= threshold).then_some(()) }
        })
        .await;
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    let committed = writer.await.unwrap();
    let expected: HashSet<String> = committed.iter().map(|&n| row_id(n)).collect();

    // A last relay finishes the stream.
    let mut child = spawn_relay(&table, &topic.name, &dlq.name);
    let consumer: StreamConsumer = stack
        .kafka_config()
        .set("group.id", unique_name("relay-kill-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic.name]).unwrap();
    let codec = AvroCodec::new(stack.registry_settings());
    let mut seen: Vec<(String, usize)> = Vec::new();
    let mut ids: HashSet<String> = HashSet::new();
    let mut stream = consumer.stream();
    let read = tokio::time::timeout(WAIT, async {
        while !ids.is_superset(&expected) {
            let message = stream.next().await.unwrap().unwrap();
            let event: OrderEvent = codec.decode(message.payload().unwrap()).await.unwrap();
            let n: usize = event.event_id.rsplit('-').next().unwrap().parse().unwrap();
            ids.insert(event.event_id.clone());
            seen.push((event.aggregate_id, n));
        }
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        read.is_ok(),
        "only {} of {} committed rows reached Kafka",
        ids.intersection(&expected).count(),
        expected.len()
    );

    assert_eq!(
        ids, expected,
        "no row of a rolled-back transaction, every committed row"
    );
    // Per aggregate, first arrivals follow commit order (row numbers grow).
    let mut last_new: BTreeMap<String, usize> = BTreeMap::new();
    let mut first_seen: HashSet<usize> = HashSet::new();
    let mut duplicates = 0;
    for (aggregate, n) in &seen {
        if !first_seen.insert(*n) {
            duplicates += 1;
            continue;
        }
        if let Some(previous) = last_new.insert(aggregate.clone(), *n) {
            assert!(
                previous < *n,
                "{aggregate}: row {n} arrived after row {previous}"
            );
        }
    }
    eprintln!(
        "relay SIGKILLed {kills} times: {} committed rows, {} messages, {duplicates} duplicates",
        expected.len(),
        seen.len()
    );
    assert_eq!(message_count(&dlq.name), 0);
    let slot = format!("{table}_slot");
    eventually("the slot to be dropped", WAIT, || {
        let pool = pool.clone();
        let slot = slot.clone();
        async move {
            sqlx::query("SELECT pg_drop_replication_slot($1)")
                .bind(&slot)
                .execute(&pool)
                .await
                .ok()
        }
    })
    .await;
}
