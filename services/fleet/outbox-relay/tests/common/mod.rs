//! What the relay's tests share: an outbox table of their own, a relay on
//! it, a reader of the topic, the slot dropped afterwards.
// Helpers fail the test (or benchmark) by panicking, as assertions do; each
// binary uses its own part of this module.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use sluice_avro::AvroCodec;
use sluice_contracts::Catalog;
use sluice_dlq::DeadLetterPublisher;
use sluice_kafka::{KafkaConfig, TopicLimits};
use sluice_outbox_relay::{OutboxFormat, OutboxSource, Relay, ReplicationConnection};
use sluice_testkit::{Stack, eventually, producer, unique_name};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const WAIT: Duration = Duration::from_secs(120);

/// A pool on the stack's database.
pub async fn pool(connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(connections)
        .connect(&Stack::get().database_url)
        .await
        .unwrap()
}

/// An outbox table of its own, made from the shipped migration; its name
/// also names the slot (`<table>_slot`) and publication (`<table>_pub`).
pub async fn outbox_table(pool: &PgPool, prefix: &str) -> String {
    let name = unique_name(prefix).replace('-', "_");
    sqlx::raw_sql(AssertSqlSafe(outbox_ddl(&name)))
        .execute(pool)
        .await
        .unwrap();
    name
}

/// The shipped migration's outbox table, named `table`.
pub fn outbox_ddl(table: &str) -> String {
    include_str!("../../migrations/0001_outbox.sql").replace(
        "CREATE TABLE IF NOT EXISTS outbox",
        &format!("CREATE TABLE {table}"),
    )
}

pub fn connection() -> ReplicationConnection {
    ReplicationConnection::from_url(&Stack::get().database_url).unwrap()
}

/// A relay of `table`'s `orders` rows to `topic`.
pub fn relay(pool: PgPool, table: &str, topic: &str, dlq: &str) -> Relay {
    let stack = Stack::get();
    Relay {
        pool,
        source: OutboxSource {
            connection: connection(),
            table: table.to_owned(),
            format: OutboxFormat::Events,
            slot: format!("{table}_slot"),
            publication: format!("{table}_pub"),
            recreate_lost_slot: false,
            // Every relay on the database sees every message: tests running
            // side by side each own a prefix.
            message_prefix: Some(message_prefix(table)),
        },
        catalog: Catalog::embedded().unwrap(),
        routes: HashMap::from([("orders".to_owned(), topic.to_owned())]),
        allowed_topics: Default::default(),
        codec: AvroCodec::new(stack.registry_settings()),
        producer: producer(),
        dead_letters: DeadLetterPublisher::new(
            producer(),
            Arc::new(AvroCodec::new(stack.registry_settings())),
            dlq,
            "outbox-relay",
            "0.0.0",
        ),
        limits: TopicLimits::new(&KafkaConfig::new(&stack.kafka_bootstrap)).unwrap(),
    }
}

/// The logical-message prefix the relay of `table` owns in tests.
pub fn message_prefix(table: &str) -> String {
    format!("outbox_{table}")
}

/// A relay running in the background.
pub struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    /// Asks it to stop, and waits until it has.
    pub async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap();
    }
}

/// Runs `relay` in the background until it is stopped.
pub fn start(relay: Relay) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        relay
            .run(async { stopped.await.unwrap_or(()) })
            .await
            .unwrap();
    });
    Running { stop, task }
}

/// A reader of `topic` from its start, in a group of its own.
pub fn reader(topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = Stack::get()
        .kafka_config()
        .set("group.id", unique_name("relay-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// Waits until a relay streams from `slot`: rows committed before then
/// are not in its stream.
pub async fn streaming(pool: &PgPool, slot: &str) {
    eventually("the relay to stream from its slot", WAIT, || async move {
        sqlx::query_scalar::<_, bool>(
            "SELECT active FROM pg_replication_slots WHERE slot_name = $1 AND active",
        )
        .bind(slot)
        .fetch_optional(pool)
        .await
        .unwrap()
    })
    .await;
}

/// The slot's confirmed flush position, once no session holds it.
pub async fn confirmed_when_released(pool: &PgPool, slot: &str) -> String {
    eventually("the slot to be released", WAIT, || async move {
        sqlx::query_scalar::<_, String>(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots \
             WHERE slot_name = $1 AND NOT active",
        )
        .bind(slot)
        .fetch_optional(pool)
        .await
        .unwrap()
    })
    .await
}

/// Drops `table`'s slot once its last session has let go, so slots do not
/// pile up across runs.
pub async fn drop_slot(pool: &PgPool, table: &str) {
    let slot = format!("{table}_slot");
    eventually("the slot to be dropped", WAIT, || {
        let slot = slot.clone();
        async move {
            sqlx::query("SELECT pg_drop_replication_slot($1)")
                .bind(&slot)
                .execute(pool)
                .await
                .ok()
        }
    })
    .await;
}
