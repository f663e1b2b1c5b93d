//! ingest started while its Postgres is down, as when both restart at once:
//! it waits for the database (its idempotency table) instead of exiting,
//! and once Postgres is back it accepts events onto Kafka. In a test binary
//! of its own, as it stops the shared Postgres (and restarts the registry,
//! whose storage it is).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{accepted, ingest_process};
use rdkafka::Message;
use sluice_avro::AvroCodec;
use sluice_contracts::types::OrderEvent;
use sluice_testkit::{PostgresOutage, Stack, TestTopic, consume_exactly, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_started_before_postgres_waits_for_it() {
    let stack = Stack::get();
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-pg-away", 1).await;
    let api = free_port();
    let outage = PostgresOutage::begin();
    let started = Instant::now();
    let mut ingest = ingest_process(api, &topic.name, &[]);
    // Beyond a connection attempt's 30 s timeout (sqlx's default), which
    // used to end it.
    while started.elapsed() < Duration::from_secs(35) {
        ingest.assert_running("while Postgres was down");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    outage.end();
    accepted(
        &format!("http://127.0.0.1:{api}"),
        &[],
        Duration::from_secs(60),
    )
    .await;
    let message = consume_exactly(&topic.name, 1, Duration::from_secs(30))
        .await
        .remove(0);
    let codec = AvroCodec::new(stack.registry_settings());
    let event: OrderEvent = codec.decode(message.payload().unwrap()).await.unwrap();
    assert_eq!(event.event_id, "1b4e28ba-2fa1-41d2-883f-0016d3cca427");
    // The process that waited is the one that did the work.
    ingest.assert_running("after Postgres came back");
}
