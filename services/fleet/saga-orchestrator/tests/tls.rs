//! The fleet as a deployment with TLS everywhere runs it: ingest, the saga,
//! its outbox-relay, erp-sink and sheets-sink reach Kafka through the
//! broker's SSL listener, the registry over HTTPS and Postgres with
//! `sslmode=verify-full`, all checked against the stack's CA; orders taken
//! in over HTTP end completed, each once in the ERP and the sheet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Fleet;

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
    for order in orders {
        fleet.take_in(&api, TOKEN, order, &[]).await;
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
