//! The orchestrator's outbox is pruned by age: with a 2 s retention, the
//! rows of 20 finished sagas are deleted, while everything they held reached
//! Kafka (the relay streams the WAL, not the table).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Fleet, orders_by};
use sluice_testkit::{consume_exactly, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbox_rows_past_their_retention_are_pruned_after_being_relayed() {
    let fleet = Fleet::new("retention").await;
    let (_orchestrator, _) = fleet
        .orchestrator("orchestrator", &["--outbox-retention", "2s"])
        .await;
    let relay = fleet.relay().await;
    let _erp = fleet.erp_sink(500).await;
    let _sheets = fleet.sheets_sink().await;
    let orders = orders_by("order", 20, "Frances Allen");
    fleet.place(&orders).await;
    let states = fleet.until_finished(20, Duration::from_secs(120)).await;
    assert_eq!(states.get("COMPLETED"), Some(&20), "{states:?}");
    eventually("the outbox pruned", Duration::from_secs(30), || async {
        (fleet.outbox_rows().await == 0).then_some(())
    })
    .await;
    // All 60 messages the outbox held are on Kafka.
    assert_eq!(fleet.erp_records().await.len(), 20);
    assert_eq!(fleet.sheet_rows().await.len(), 20);
    let events = consume_exactly(&fleet.topics.orders, 40, Duration::from_secs(30)).await;
    let confirmed = common::confirmed(&events);
    assert_eq!(confirmed, 20);
    fleet.finish(relay).await;
}
