//! Two `outbox-relay` processes on one slot: one streams, the other stands
//! by; when the streaming one is SIGKILLed the standby takes over, says so
//! in its log, and the rows committed after the kill arrive. Both export
//! whether they stream and the slot's lag on /metrics.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{WAIT, drop_slot, outbox_table, pool, reader, relay};
use futures::StreamExt;
use rdkafka::Message;
use rdkafka::message::Headers;
use sluice_testkit::{KillOnDrop, Stack, TestTopic, eventually, free_port, logged, unique_name};
use sqlx::{AssertSqlSafe, PgPool};

struct Replica {
    /// Killed when dropped, so a failing test leaves no relay streaming.
    child: KillOnDrop,
    metrics_url: String,
}

/// The real binary, configured as a user would, its log in `log`.
fn replica(table: &str, topic: &str, dlq: &str, log: &Path) -> Replica {
    let stack = Stack::get();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
        .env("SLUICE_DATABASE_URL", &stack.database_url)
        .env("SLUICE_KAFKA_BOOTSTRAP", &stack.kafka_bootstrap)
        .env("SLUICE_SCHEMA_REGISTRY_URL", &stack.schema_registry_url)
        .env("SLUICE_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .env("SLUICE_LOG", "info")
        .args(["--outbox-table", table])
        .args(["--outbox-slot", &format!("{table}_slot")])
        .args(["--outbox-publication", &format!("{table}_pub")])
        .args(["--route", &format!("orders={topic}")])
        .args(["--dlq-topic", dlq])
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .spawn()
        .unwrap();
    Replica {
        child: KillOnDrop(child),
        metrics_url: format!("http://127.0.0.1:{port}/metrics"),
    }
}

/// The value of `metric` for `slot` on the replica's /metrics, if exported.
async fn metric(replica: &Replica, metric: &str, slot: &str) -> Option<f64> {
    let text = reqwest::get(&replica.metrics_url)
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|line| line.starts_with(&format!("{metric}{{")) && line.contains(slot))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

async fn wait_for(replica: &Replica, name: &str, slot: &str, value: f64) {
    eventually(&format!("{name} = {value}"), WAIT, || async move {
        (metric(replica, name, slot).await == Some(value)).then_some(())
    })
    .await;
}

async fn insert(pool: &PgPool, table: &str, from: i32, to: i32) {
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload) \
         SELECT gen_random_uuid(), 'orders', 'order-' || s, 'OrderCancelled', \
                '{{\"reason\":\"r\",\"cancelled_by\":\"c\"}}' \
         FROM generate_series($1, $2) AS s"
    )))
    .bind(from)
    .bind(to)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replica_takes_over_when_the_streaming_one_dies() {
    let pool = pool(2).await;
    let table = outbox_table(&pool, "outbox_standby").await;
    let slot = format!("{table}_slot");
    let topic = TestTopic::with_schema_of("orders.events.v1", "relay-standby", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "relay-standby-dlq", 1).await;
    relay(pool.clone(), &table, &topic.name, &dlq.name)
        .prepare()
        .await
        .unwrap();
    let logs = std::env::temp_dir().join(unique_name("relay-standby"));
    std::fs::create_dir_all(&logs).unwrap();
    let streaming = "sluice_outbox_streaming";

    let mut first = replica(&table, &topic.name, &dlq.name, &logs.join("first.log"));
    wait_for(&first, streaming, &slot, 1.0).await;
    let second_log = logs.join("second.log");
    let mut second = replica(&table, &topic.name, &dlq.name, &second_log);
    // Standing by, not merely started: its gauge reads 0 before its first
    // attempt too, and a second replica slow to start (CI, 2 cores) found
    // the slot already free after the kill, so it never stood by.
    logged(&second_log, "standing by").await;
    wait_for(&second, streaming, &slot, 0.0).await;
    // Standing by is the normal state of every replica but one: nothing an
    // operator's alert on error logs would page for (the chart-run's
    // standby logged one ERROR per second, its replication attempt's).
    let log = std::fs::read_to_string(&second_log).unwrap();
    assert!(
        !log.contains("ERROR"),
        "the standby logged an error:\n{log}"
    );

    insert(&pool, &table, 1, 5).await;
    let consumer = reader(&topic.name);
    let mut messages = consumer.stream();
    let mut ids = HashSet::new();
    let mut read_until = async |count: usize| {
        while ids.len() < count {
            let message = messages.next().await.unwrap().unwrap();
            let id = message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "sluice.event_id"))
                .and_then(|h| h.value)
                .map(<[u8]>::to_vec)
                .unwrap();
            ids.insert(id);
        }
    };
    tokio::time::timeout(WAIT, read_until(5)).await.unwrap();

    first.child.0.kill().unwrap();
    first.child.0.wait().unwrap();
    insert(&pool, &table, 6, 10).await;
    wait_for(&second, streaming, &slot, 1.0).await;
    tokio::time::timeout(WAIT, read_until(10))
        .await
        .expect("the rows committed after the kill, relayed by the standby");

    let log = std::fs::read_to_string(&second_log).unwrap();
    assert!(log.contains("standing by"), "standby logged:\n{log}");
    assert!(
        !log.contains("ERROR"),
        "the standby logged an error:\n{log}"
    );
    assert!(
        log.contains("took over the slot"),
        "take-over logged:\n{log}"
    );
    let lag = eventually("the slot lag exported", WAIT, || {
        let second = &second;
        let slot = &slot;
        async move { metric(second, "sluice_outbox_slot_lag_bytes", slot).await }
    })
    .await;
    assert!(lag >= 0.0, "slot lag {lag}");

    second.child.0.kill().unwrap();
    second.child.0.wait().unwrap();
    std::fs::remove_dir_all(&logs).unwrap();
    drop_slot(&pool, &table).await;
}
