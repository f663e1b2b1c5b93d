//! 1 000 orders through the whole fleet: each saga reserves the order in
//! the sandbox ERP (through erp-sink), records it in the Orders sheet
//! (through sheets-sink), and announces OrderConfirmed — every command and
//! event leaving through the orchestrator's outbox and outbox-relay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Fleet, assert_each_once, orders_by, trace_id, trace_of};
use rdkafka::Message;
use serde_json::json;
use sluice_testkit::{consume_exactly, eventually, message_count, metric};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_orders_are_confirmed_with_one_erp_record_and_one_row_each() {
    let fleet = Fleet::new("thousand").await;
    let (_orchestrator, port) = fleet.orchestrator("orchestrator", &[]).await;
    let relay = fleet.relay().await;
    let _erp = fleet.erp_sink(500).await;
    let _sheets = fleet.sheets_sink().await;
    let orders = orders_by("order", 1_000, "Ada Lovelace");

    let started = Instant::now();
    fleet.place(&orders).await;
    let states = fleet.until_finished(1_000, Duration::from_secs(300)).await;
    println!(
        "1000 sagas finished in {:.1} s: {states:?}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(states.get("COMPLETED"), Some(&1_000), "{states:?}");

    let records = fleet.erp_records().await;
    let rows = fleet.sheet_rows().await;
    for (order, _) in &orders {
        let found = records.get(order).map_or(0, Vec::len);
        assert_eq!(found, 1, "ERP records of {order}");
        // A quotation confirmed by action_confirm, for its customer, with
        // its line.
        let record = &records[order][0];
        assert_eq!(record.get("state"), Some(&json!("sale")), "{order}");
        assert!(record["partner_id"].is_i64(), "{order}: {record:?}");
        assert_eq!(
            record["order_line"].as_array().map(Vec::len),
            Some(1),
            "{order}"
        );
        assert_eq!(
            record["amount_total"],
            json!(25.0),
            "{order}: 2 × SKU-1 at 12.50"
        );
        assert_eq!(
            rows.get(order),
            Some(&(1, "CONFIRMED".to_owned())),
            "row of {order}"
        );
    }
    assert_eq!(records.len(), 1_000);
    assert_eq!(rows.len(), 1_000);

    // 1 000 OrderPlaced in, 1 000 OrderConfirmed out, nothing else.
    let events = consume_exactly(&fleet.topics.orders, 2_000, Duration::from_secs(60)).await;
    let confirmed = common::confirmed(&events);
    assert_eq!(confirmed, 1_000);

    // Every message of a saga carries its order's trace: the commands (the
    // sheet row's sent while handling the ERP's reply, which erp-sink passes
    // on) and the OrderConfirmed, as the OrderPlaced did.
    let erp_commands =
        consume_exactly(&fleet.topics.erp_commands, 1_000, Duration::from_secs(60)).await;
    let sheet_rows =
        consume_exactly(&fleet.topics.sheet_rows, 1_000, Duration::from_secs(60)).await;
    for message in erp_commands.iter().chain(&sheet_rows).chain(&events) {
        let key = String::from_utf8_lossy(message.key().unwrap()).into_owned();
        let order = key.rsplit('/').next().unwrap();
        assert_eq!(
            trace_of(message),
            Some(trace_id(order)),
            "{key} on {}",
            message.topic()
        );
    }

    // Each step ran once per saga: sent once, succeeded once.
    let log = fleet.step_log().await;
    assert_each_once(&log);
    assert_eq!(
        log.len(),
        5 * 1_000,
        "command_sent + succeeded per step, completed"
    );
    assert_eq!(fleet.outbox_rows().await, 3 * 1_000);
    assert_eq!(message_count(&fleet.topics.dlq_saga), 0);

    // What the metrics say of it.
    let labels = [("saga", "order-fulfilment")];
    let exposition = Fleet::metrics(port).await;
    assert_eq!(
        metric(&exposition, "sluice_saga_started_total", &labels),
        1_000.0
    );
    let finished = [("saga", "order-fulfilment"), ("state", "COMPLETED")];
    assert_eq!(
        metric(&exposition, "sluice_saga_finished_total", &finished),
        1_000.0
    );
    for step in ["reserve-in-erp", "record-in-sheet"] {
        let succeeded = [("step", step), ("outcome", "succeeded")];
        assert_eq!(
            metric(&exposition, "sluice_saga_step_seconds_count", &succeeded),
            1_000.0,
            "{step}"
        );
    }
    eventually("the census", Duration::from_secs(15), || async {
        let exposition = Fleet::metrics(port).await;
        (metric(&exposition, "sluice_saga_instances", &finished) == 1_000.0
            && metric(&exposition, "sluice_saga_stuck", &labels) == 0.0)
            .then_some(())
    })
    .await;
    fleet.finish(relay).await;
}
