//! Another team evolves the order events from outside: Confluent's Python
//! client registers v2 (one more optional envelope field) and then v3 (one
//! more) of the fleet's order subject and produces an OrderPlaced with each.
//! The orchestrator, erp-sink and sheets-sink are restarted after the
//! evolution, as any deploy restarts them; every order — v2, v3 and one
//! Sluice writes with its own v1 after the restarts — completes its saga,
//! and nothing is dead-lettered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Fleet, orders_by};
use serde_json::{Value, json};
use sluice_testkit::{confluent_produce, evolved_schema, message_count};

/// An OrderPlaced as the other team's service writes it, with `extra`.
fn placed(order: &str, event_id: &str, extra: Value) -> Value {
    let mut event = json!({
        "event_id": event_id,
        "event_type": "OrderPlaced",
        "occurred_at": 1_795_437_296_789_i64,
        "aggregate_id": order,
        "correlation_id": null,
        "causation_id": null,
        "payload": {
            "-type": "dev.sluice.orders.OrderPlaced",
            "customer": {"customer_id": "c-9", "name": "Radia Perlman", "email": "rp@example.test"},
            "lines": [{"sku": "SKU-1", "description": "Widget", "quantity": 1, "unit_price_minor": 4200}],
            "total_minor": 4200,
            "currency": "EUR",
            "shipping_country": "US"
        }
    });
    event
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({ "key": order, "value": event })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_written_with_schemas_evolved_from_outside_complete_after_restarts() {
    let fleet = Fleet::new("outside-evolution").await;
    let (orchestrator, _) = fleet.orchestrator("orchestrator", &[]).await;
    let relay = fleet.relay().await;
    let erp = fleet.erp_sink(500).await;
    let sheets = fleet.sheets_sink().await;

    let v2 = evolved_schema("orders.events.v1", &["tenant"]);
    let v3 = evolved_schema("orders.events.v1", &["tenant", "channel"]);
    let v2_id = confluent_produce(
        &fleet.topics.orders,
        Some(&v2),
        &[placed(
            "order-v2",
            "6a000000-0000-4000-8000-000000000002",
            json!({"tenant": "acme"}),
        )],
    )
    .unwrap();
    let v3_id = confluent_produce(
        &fleet.topics.orders,
        Some(&v3),
        &[placed(
            "order-v3",
            "6a000000-0000-4000-8000-000000000003",
            json!({"tenant": "acme", "channel": "web"}),
        )],
    )
    .unwrap();
    assert_ne!(v2_id, v3_id, "two new versions registered");

    // Every consumer of the orders and of their commands starts again.
    drop((orchestrator, erp, sheets));
    let (_orchestrator, _) = fleet.orchestrator("orchestrator-restarted", &[]).await;
    let _erp = fleet.erp_sink(500).await;
    let _sheets = fleet.sheets_sink().await;
    fleet
        .place(&orders_by("order-v1", 1, "Barbara Liskov"))
        .await;

    let states = fleet.until_finished(3, Duration::from_secs(120)).await;
    assert_eq!(states.get("COMPLETED"), Some(&3), "{states:?}");
    let records = fleet.erp_records().await;
    for order in ["order-v2", "order-v3"] {
        assert_eq!(
            records.get(order).map(Vec::len),
            Some(1),
            "{order}: {records:?}"
        );
    }
    assert_eq!(
        message_count(&fleet.topics.dlq_saga),
        0,
        "nothing dead-lettered"
    );
    std::fs::remove_file(v2).unwrap();
    std::fs::remove_file(v3).unwrap();
    fleet.finish(relay).await;
}
