//! Two orchestrator replicas share the work (one consumer group, one
//! database); one is SIGKILLed mid-stream and started again. Every saga
//! finishes once: each step log entry and each outbox message exactly once,
//! one ERP record and one sheet row per order.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Fleet, orders_by};
use sluice_testkit::{eventually, message_count, metric};

async fn started(port: u16) -> f64 {
    let exposition = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .and_then(reqwest::Response::error_for_status);
    match exposition {
        Ok(response) => metric(
            &response.text().await.unwrap_or_default(),
            "sluice_saga_started_total",
            &[("saga", "order-fulfilment")],
        ),
        Err(_) => 0.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_replica_leaves_no_saga_unfinished_or_driven_twice() {
    let fleet = Fleet::new("replicas").await;
    let (first, first_port) = fleet.orchestrator("orchestrator-1", &[]).await;
    let (_second, second_port) = fleet.orchestrator("orchestrator-2", &[]).await;
    let relay = fleet.relay().await;
    // Slow enough for the kill to land mid-stream (about 30 commands/s).
    let _erp = fleet.erp_sink(100).await;
    let _sheets = fleet.sheets_sink().await;
    // Orders placed once both are in the group: a replica alone takes all
    // 600 starts (in batches) before the other has joined.
    eventually(
        "the second replica in the group",
        Duration::from_secs(60),
        || async {
            fleet
                .log("orchestrator-2")
                .contains("partitions assigned")
                .then_some(())
        },
    )
    .await;
    let orders = orders_by("order", 600, "Barbara Liskov");
    fleet.place(&orders).await;

    let (one, two) = eventually(
        "both replicas driving sagas",
        Duration::from_secs(60),
        || async {
            let (one, two) = (started(first_port).await, started(second_port).await);
            (one > 0.0 && two > 0.0).then_some((one, two))
        },
    )
    .await;
    eventually("100 sagas completed", Duration::from_secs(120), || async {
        (fleet.states().await.get("COMPLETED").copied().unwrap_or(0) >= 100).then_some(())
    })
    .await;
    let at_kill = fleet.states().await;
    drop(first); // SIGKILL
    println!("replicas had started {one} and {two} sagas; killed one at {at_kill:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_first_again, _) = fleet.orchestrator("orchestrator-1-again", &[]).await;

    let states = fleet.until_finished(600, Duration::from_secs(300)).await;
    assert_eq!(states.get("COMPLETED"), Some(&600), "{states:?}");
    let log = fleet.step_log().await;
    let repeated: Vec<_> = log.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "driven twice: {repeated:?}");
    let count = |event: &str| log.keys().filter(|(_, _, _, e)| e == event).count();
    assert_eq!(count("completed"), 600);
    // A reply held up by the kill may outlast its step's timeout: the
    // command is then sent again (and the sink deduplicates it). Every
    // send is in the log once and in the outbox once.
    let sends = count("command_sent") + count("completed");
    println!("{} commands sent again after a timeout", count("timed_out"));
    assert_eq!(fleet.outbox_rows().await, i64::try_from(sends).unwrap());
    let records = fleet.erp_records().await;
    let rows = fleet.sheet_rows().await;
    for (order, _) in &orders {
        assert_eq!(records.get(order).map(Vec::len), Some(1), "{order}");
        assert_eq!(
            rows.get(order),
            Some(&(1, "CONFIRMED".to_owned())),
            "{order}"
        );
    }
    assert_eq!(message_count(&fleet.topics.dlq_saga), 0);
    fleet.finish(relay).await;
}
