//! Postgres restarted under a running relay: it reconnects, resumes from the
//! slot, and the rows committed after the restart arrive too. In a test
//! binary of its own, as it restarts the shared Postgres (and the registry,
//! whose storage it is).
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::process::Command;
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

const WAIT: Duration = Duration::from_secs(90);

async fn insert(pool: &PgPool, table: &str, n: usize) -> Result<(), sqlx::Error> {
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload) \
         VALUES ($1::uuid, 'orders', 'order-1', 'OrderCancelled', '{{\"reason\":\"r\",\"cancelled_by\":\"c\"}}')"
    )))
    .bind(format!("00000000-0000-4000-8000-{n:012}"))
    .execute(pool)
    .await
    .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_resumes_after_postgres_restarts() {
    let stack = Stack::get();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&stack.database_url)
        .await
        .unwrap();
    let table = unique_name("outbox_restart").replace('-', "_");
    let ddl = include_str!("../migrations/0001_outbox.sql").replace(
        "CREATE TABLE IF NOT EXISTS outbox",
        &format!("CREATE TABLE {table}"),
    );
    sqlx::raw_sql(AssertSqlSafe(ddl))
        .execute(&pool)
        .await
        .unwrap();
    let topic = TestTopic::with_schema_of("orders.events.v1", "relay-restart", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "relay-restart-dlq", 1).await;
    let url = url::Url::parse(&stack.database_url).unwrap();
    let relay = Arc::new(Relay {
        pool: pool.clone(),
        source: OutboxSource {
            connection: ReplicationConnection {
                host: url.host_str().unwrap().to_owned(),
                port: url.port().unwrap(),
                user: url.username().to_owned(),
                password: url.password().unwrap().to_owned(),
                database: url.path().trim_start_matches('/').to_owned(),
            },
            table: table.clone(),
            slot: format!("{table}_slot"),
            publication: format!("{table}_pub"),
        },
        catalog: Catalog::embedded().unwrap(),
        routes: HashMap::from([("orders".to_owned(), topic.name.clone())]),
        codec: AvroCodec::new(stack.registry_settings()),
        producer: producer(),
        dead_letters: DeadLetterPublisher::new(
            producer(),
            Arc::new(AvroCodec::new(stack.registry_settings())),
            &dlq.name,
            "outbox-relay",
            "0.0.0",
        ),
    });
    relay.prepare().await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let relay = Arc::clone(&relay);
        tokio::spawn(async move { relay.run(async { stopped.await.unwrap_or(()) }).await })
    };

    for n in 0..5 {
        insert(&pool, &table, n).await.unwrap();
    }
    eventually("the first rows relayed", WAIT, || {
        let count = message_count(&topic.name);
        async move { (count >= 5).then_some(()) }
    })
    .await;

    let restart = |script: &str| {
        let status = Command::new("bash")
            .arg(stack.path(script))
            .arg("restart")
            .status()
            .unwrap();
        assert!(status.success(), "{script} restart");
    };
    restart("deploy/local/postgres.sh");
    // The registry keeps its schemas in this Postgres; its pooled connections
    // died with the restart, so it gets fresh ones before later tests use it.
    restart("deploy/local/registry.sh");
    for n in 5..10 {
        eventually("postgres to take writes again", WAIT, || {
            let pool = pool.clone();
            let table = table.clone();
            async move { insert(&pool, &table, n).await.ok() }
        })
        .await;
    }

    // Rows after the last confirmed LSN may come twice; each must come.
    let codec = AvroCodec::new(stack.registry_settings());
    let consumer: StreamConsumer = stack
        .kafka_config()
        .set("group.id", unique_name("relay-restart-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic.name]).unwrap();
    let mut stream = consumer.stream();
    let mut ids = HashSet::new();
    let read = tokio::time::timeout(WAIT, async {
        while ids.len() < 10 {
            let message = stream.next().await.unwrap().unwrap();
            let event: OrderEvent = codec.decode(message.payload().unwrap()).await.unwrap();
            ids.insert(event.event_id);
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "only {} of 10 rows relayed across the restart",
        ids.len()
    );

    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
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
