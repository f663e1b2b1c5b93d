//! TLS to Kafka with a service's settings: through the broker's SSL and
//! SASL_SSL listeners (the stack's throwaway CA, the broker's name checked),
//! and a CA that did not sign the broker's certificate leaves the service
//! unready.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{produce_and_read, secret_file, service_kafka};
use sluice_kafka::{KafkaConfig, KafkaReadiness};
use sluice_telemetry::ReadinessCheck;
use sluice_testkit::Stack;

/// A service's settings for `bootstrap` over TLS trusting `ca`, and `more`.
fn tls_config(bootstrap: &str, protocol: &str, ca: &Path, more: &[&str]) -> KafkaConfig {
    let protocol = format!("security.protocol={protocol}");
    let ca = format!("ssl.ca.location={}", ca.display());
    let args = ["--kafka-bootstrap", bootstrap]
        .into_iter()
        .chain(["--kafka-property", &protocol, "--kafka-property", &ca])
        .chain(more.iter().copied());
    service_kafka(args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_produces_through_the_ssl_listener() {
    let stack = Stack::get();
    let config = tls_config(&stack.kafka_ssl_bootstrap, "SSL", &stack.tls_ca, &[]);
    produce_and_read(&config, "through SSL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_produces_through_sasl_ssl_with_its_password_from_a_file() {
    let stack = Stack::get();
    let password = secret_file("sasl-ssl-password", &stack.kafka_scram_credentials.1);
    let more = [
        "--kafka-property",
        "sasl.mechanism=SCRAM-SHA-512",
        "--kafka-sasl-username",
        &stack.kafka_scram_credentials.0,
        "--kafka-sasl-password-file",
        password.to_str().unwrap(),
    ];
    let config = tls_config(
        &stack.kafka_sasl_ssl_bootstrap,
        "SASL_SSL",
        &stack.tls_ca,
        &more,
    );
    produce_and_read(&config, "through SASL_SSL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_from_another_ca_leaves_the_service_unready() {
    let stack = Stack::get();
    let wrong = tls_config(&stack.kafka_ssl_bootstrap, "SSL", &stack.wrong_ca, &[]);
    let readiness = KafkaReadiness::new(&wrong, Duration::from_secs(5)).unwrap();
    assert!(readiness.check().await.is_err());
    let right = tls_config(&stack.kafka_ssl_bootstrap, "SSL", &stack.tls_ca, &[]);
    let readiness = KafkaReadiness::new(&right, Duration::from_secs(5)).unwrap();
    readiness.check().await.unwrap();
}
