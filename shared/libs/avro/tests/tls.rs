//! The registry over HTTPS with a service's settings: with its CA file the
//! codec writes and reads through it; trusting another CA, the service is
//! unready.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use clap::Parser;
use sluice_avro::{AvroCodec, RegistryReadiness, registry_settings};
use sluice_config::RegistryArgs;
use sluice_contracts::types::{OrderEvent, OrderPayload, OrderStatus, OrderStatusChanged};
use sluice_telemetry::ReadinessCheck;
use sluice_testkit::{Stack, TestTopic};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    registry: RegistryArgs,
}

fn https_settings(ca: &Path) -> RegistryArgs {
    let cli: Cli = sluice_config::parse_from([
        "svc",
        "--schema-registry-url",
        &Stack::get().schema_registry_tls_url,
        "--schema-registry-ca-file",
        ca.to_str().unwrap(),
    ])
    .unwrap();
    cli.registry
}

#[tokio::test]
async fn events_are_written_and_read_through_the_registry_over_https() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "registry-tls", 1).await;
    let codec = AvroCodec::from_args(&https_settings(&Stack::get().tls_ca)).unwrap();
    let event = OrderEvent {
        event_id: "0b7f4f1e-6a0e-4d55-9a8a-2f7c1d3e5b90".into(),
        event_type: "OrderStatusChanged".into(),
        occurred_at: 1_763_900_000_000,
        aggregate_id: "order-tls".into(),
        correlation_id: None,
        causation_id: None,
        payload: OrderPayload::OrderStatusChanged(OrderStatusChanged {
            from_status: OrderStatus::Confirmed,
            to_status: OrderStatus::Shipped,
            reason: None,
        }),
    };
    let bytes = codec.encode(&topic.name, &event).await.unwrap();
    assert_eq!(codec.decode::<OrderEvent>(&bytes).await.unwrap(), event);
}

#[tokio::test]
async fn a_registry_certificate_from_another_ca_leaves_the_service_unready() {
    let wrong = registry_settings(&https_settings(&Stack::get().wrong_ca)).unwrap();
    let err = RegistryReadiness::new(wrong).check().await.unwrap_err();
    // schema_registry_converter keeps reqwest's message but not its cause
    // (the refused certificate): the URL is what the error can name.
    assert!(
        err.contains(&format!(
            "error sending request for url ({}",
            Stack::get().schema_registry_tls_url
        )),
        "{err}"
    );
    let right = registry_settings(&https_settings(&Stack::get().tls_ca)).unwrap();
    RegistryReadiness::new(right).check().await.unwrap();
}

#[tokio::test]
async fn every_certificate_of_a_ca_bundle_is_trusted() {
    let stack = Stack::get();
    let bundle = std::env::temp_dir().join(sluice_testkit::unique_name("ca-bundle"));
    let pem = |path: &Path| std::fs::read_to_string(path).unwrap();
    // The CA that signed the registry's certificate second, not first.
    std::fs::write(&bundle, pem(&stack.wrong_ca) + &pem(&stack.tls_ca)).unwrap();
    let settings = registry_settings(&https_settings(&bundle)).unwrap();
    RegistryReadiness::new(settings).check().await.unwrap();
    std::fs::remove_file(&bundle).unwrap();
}

#[test]
fn a_ca_file_that_is_not_pem_is_refused_naming_the_setting() {
    let path = std::env::temp_dir().join(sluice_testkit::unique_name("not-a-ca"));
    std::fs::write(&path, "not a certificate").unwrap();
    let err = registry_settings(&https_settings(&path))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("setting schema-registry-ca-file: not a PEM certificate"),
        "{err}"
    );
}
