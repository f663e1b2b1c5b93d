//! The transformer binary with TLS everywhere: its transactional loop reads
//! and writes Kafka through the broker's SSL listener and the registry over
//! HTTPS, both checked against the stack's CA; an OrderCancelled becomes
//! the shipped rules' sheet row and ERP cancel, read back committed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Topics, decode, event_bytes, send, transactional_id};
use serde_json::json;
use sluice_contracts::types::{ErpCommand, ErpOperation, SheetRowUpsert};
use sluice_testkit::{KillOnDrop, Stack, consume_exactly, free_port, unique_name};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transformer_maps_events_over_tls() {
    let stack = Stack::get();
    let topics = Topics::new("transformer-tls", 1).await;
    let names = topics.names();
    let ca = stack.tls_ca.display().to_string();
    let _transformer = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_transformer"))
            .args([
                "--rules",
                concat!(env!("CARGO_MANIFEST_DIR"), "/rules.toml"),
            ])
            .args(["--transactional-id", &transactional_id()])
            .env_clear()
            .env("SLUICE_KAFKA_BOOTSTRAP", &stack.kafka_ssl_bootstrap)
            .env(
                "SLUICE_KAFKA_PROPERTIES",
                format!("security.protocol=SSL,ssl.ca.location={ca}"),
            )
            .env("SLUICE_SCHEMA_REGISTRY_URL", &stack.schema_registry_tls_url)
            .env("SLUICE_SCHEMA_REGISTRY_CA_FILE", &ca)
            .env(
                "SLUICE_ROUTES",
                format!("orders={},requests={}", names.orders, names.requests),
            )
            .env("SLUICE_SHEETS_TOPIC", &names.sheets)
            .env("SLUICE_ERP_TOPIC", &names.erp)
            .env("SLUICE_DLQ_TOPIC", &names.dlq)
            .env("SLUICE_GROUP_ID", unique_name("transformer-tls"))
            .env("SLUICE_HTTP_LISTEN", format!("127.0.0.1:{}", free_port()))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let cancelled = json!({"reason": "changed mind", "cancelled_by": "customer"});
    let id = uuid::Uuid::new_v4().to_string();
    let bytes = event_bytes(
        &names.orders,
        "orders",
        &id,
        "order-tls",
        "OrderCancelled",
        sluice_contracts::now_millis(),
        &cancelled,
    )
    .await;
    send(&names.orders, "order-tls", &bytes).await;

    let rows = consume_exactly(&names.sheets, 1, WAIT).await;
    let row: SheetRowUpsert = decode(&rows[0]).await;
    assert_eq!(row.source_event_id, id, "{row:?}");
    assert_eq!(row.row_key, "order-tls", "{row:?}");
    let commands = consume_exactly(&names.erp, 1, WAIT).await;
    let command: ErpCommand = decode(&commands[0]).await;
    assert_eq!(command.operation, ErpOperation::Cancel, "{command:?}");
}
