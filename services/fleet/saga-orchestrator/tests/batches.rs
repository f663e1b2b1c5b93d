//! Orders that queued before the orchestrator started are taken in batches,
//! a transaction each, with every order placed twice: each saga still
//! starts once, moves once per reply, and sends each of its messages once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Fleet, assert_each_once, orders_by};
use rdkafka::Message;
use rdkafka::message::Headers;
use sluice_testkit::{consume_exactly, eventually, message_count};

const ORDERS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_queued_before_the_orchestrator_run_in_batches_once_each() {
    let fleet = Fleet::new("batches").await;
    let orders = orders_by("order", ORDERS, "Grace Hopper");
    // Each order twice, the second a redelivery of the first.
    fleet.place(&orders).await;
    fleet.place(&orders).await;
    let (_orchestrator, _) = fleet.orchestrator("orchestrator", &[]).await;
    let relay = fleet.relay().await;
    let _erp = fleet.erp_sink(500).await;
    let _sheets = fleet.sheets_sink().await;

    let states = fleet
        .until_finished(ORDERS as i64, Duration::from_secs(180))
        .await;
    assert_eq!(
        states.get("COMPLETED"),
        Some(&(ORDERS as i64)),
        "{states:?}"
    );
    assert_eq!(states.values().sum::<i64>(), ORDERS as i64, "{states:?}");
    let records = fleet.erp_records().await;
    assert_eq!(records.len(), ORDERS);
    assert!(records.values().all(|found| found.len() == 1));
    assert_each_once(&fleet.step_log().await);
    // An ERP command, a sheet row and OrderConfirmed per saga, each once,
    // at versions 1, 2 and 3 (a start and two replies).
    let versions: Vec<Vec<i32>> = sqlx::query_scalar(
        "SELECT array_agg(DISTINCT version ORDER BY version) FROM saga.saga_steps GROUP BY saga_id",
    )
    .fetch_all(&fleet.pool)
    .await
    .unwrap();
    assert_eq!(versions.len(), ORDERS);
    assert!(
        versions.iter().all(|each| each == &[1, 2, 3]),
        "{versions:?}"
    );
    assert_eq!(fleet.outbox_rows().await, 3 * ORDERS as i64);

    // The starts came in batches: the orchestrator's debug line per start
    // is in its message's span, within its batch's, which names the size.
    let largest = fleet
        .log("orchestrator")
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "OrderPlaced")
        .flat_map(|line| line["spans"].as_array().cloned().unwrap_or_default())
        .filter_map(|span| span["batch_size"].as_u64())
        .max();
    assert!(
        largest.is_some_and(|size| size > 1),
        "no start handled in a batch of more than one: {largest:?}"
    );
    fleet.finish(relay).await;
}

/// A value Postgres refuses (a NUL in the customer's name: jsonb takes
/// none) fails however often it is tried. Its message is dead-lettered at
/// once as VALIDATION, not after the retries (about 50 s, twice over in a
/// batch), and the orders batched with it start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_postgres_refuses_is_dead_lettered_at_once_and_its_batch_starts() {
    let fleet = Fleet::new("refused").await;
    let mut orders = orders_by("order", 20, "Grace Hopper");
    orders.insert(10, ("order-nul".into(), "Grace\u{0}Hopper".into()));
    fleet.place(&orders).await;
    let (_orchestrator, _) = fleet.orchestrator("orchestrator", &[]).await;
    let relay = fleet.relay().await;

    eventually("the dead letter", Duration::from_secs(30), || async {
        (message_count(&fleet.topics.dlq_saga) == 1).then_some(())
    })
    .await;
    let letters = consume_exactly(&fleet.topics.dlq_saga, 1, Duration::from_secs(30)).await;
    let header = |name: &str| {
        letters[0]
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == name))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(
        header("sluice.dlq.error-class").as_deref(),
        Some("VALIDATION")
    );
    assert_eq!(letters[0].key(), Some(b"order-nul".as_slice()));
    let started: Vec<String> = eventually("the other 20 started", Duration::from_secs(30), || {
        let pool = fleet.pool.clone();
        async move {
            let keys: Vec<String> = sqlx::query_scalar("SELECT business_key FROM saga.sagas")
                .fetch_all(&pool)
                .await
                .ok()?;
            (keys.len() >= 20).then_some(keys)
        }
    })
    .await;
    assert_eq!(started.len(), 20, "{started:?}");
    assert!(!started.iter().any(|key| key == "order-nul"));
    fleet.finish(relay).await;
}
