//! Postgres restarted under a running relay: it reconnects, resumes from the
//! slot, and the rows committed after the restart arrive too. In a test
//! binary of its own, as it restarts the shared Postgres (and the registry,
//! whose storage it is).
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::process::Command;

use common::{WAIT, drop_slot, outbox_table, pool, reader, relay, start};
use futures::StreamExt;
use rdkafka::Message;
use sluice_avro::AvroCodec;
use sluice_contracts::types::OrderEvent;
use sluice_testkit::{Stack, TestTopic, eventually, message_count};
use sqlx::{AssertSqlSafe, PgPool};

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
    let pool = pool(2).await;
    let table = outbox_table(&pool, "outbox_restart").await;
    let topic = TestTopic::with_schema_of("orders.events.v1", "relay-restart", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "relay-restart-dlq", 1).await;
    let relay = relay(pool.clone(), &table, &topic.name, &dlq.name);
    relay.prepare().await.unwrap();
    let running = start(relay);

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
    let consumer = reader(&topic.name);
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

    running.stop().await;
    drop_slot(&pool, &table).await;
}
