//! The fleet as a deployment with TLS everywhere runs it: ingest, the saga,
//! its outbox-relay, erp-sink and sheets-sink reach Kafka through the
//! broker's SSL listener, the registry over HTTPS and Postgres with
//! `sslmode=verify-full`, all checked against the stack's CA; orders taken
//! in over HTTP end completed, each once in the ERP and the sheet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Fleet;
use serde_json::json;
use sluice_testkit::eventually;

const TOKEN: &str = "tls-token-0c4f";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_complete_through_a_fleet_on_tls_only() {
    let fleet = Fleet::over_tls("tls").await;
    let (_orchestrator, _) = fleet.orchestrator("orchestrator", &[]).await;
    let relay = fleet.relay().await;
    let _erp = fleet.erp_sink(100).await;
    let _sheets = fleet.sheets_sink().await;
    let (_ingest, api) = fleet.ingest(TOKEN).await;

    let orders = ["order-tls-1", "order-tls-2", "order-tls-3"];
    let client = reqwest::Client::new();
    for order in orders {
        let body = json!({
            "aggregate_type": "orders",
            "aggregate_id": order,
            "event_type": "OrderPlaced",
            "payload": {
                "customer": {"customer_id": "c-tls", "name": "Whitfield Diffie", "email": "wd@example.test"},
                "lines": [{"sku": "SKU-1", "description": "Widget", "quantity": 1, "unit_price_minor": 1250}],
                "total_minor": 1250,
                "currency": "EUR",
                "shipping_country": "DE"
            }
        });
        eventually(
            "ingest to accept the order",
            Duration::from_secs(60),
            || async {
                let response = client
                    .post(format!("{api}/v1/events"))
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .ok()?;
                (response.status().as_u16() == 202).then_some(())
            },
        )
        .await;
    }
    let states = fleet.until_finished(3, Duration::from_secs(90)).await;
    assert_eq!(states.get("COMPLETED"), Some(&3), "{states:?}");
    let records = fleet.erp_records().await;
    let rows = fleet.sheet_rows().await;
    for order in orders {
        assert_eq!(
            records.get(order).map(Vec::len),
            Some(1),
            "{order} in the ERP: {records:?}"
        );
        assert_eq!(
            rows.get(order).map(|row| row.0),
            Some(1),
            "{order} in the sheet: {rows:?}"
        );
    }
    fleet.finish(relay).await;
}
