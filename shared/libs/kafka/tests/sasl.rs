//! SASL/SCRAM settings reach librdkafka as given: through the broker's SCRAM
//! listener a service's settings produce, and with a wrong password the
//! service reports itself unready.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{produce_and_read, secret_file, service_kafka};
use sluice_kafka::{KafkaConfig, KafkaReadiness};
use sluice_telemetry::ReadinessCheck;
use sluice_testkit::Stack;

/// A service's Kafka settings for the SCRAM listener, the password in a file.
fn scram_config(password: &str) -> KafkaConfig {
    let stack = Stack::get();
    let password_file = secret_file("scram-password", password);
    service_kafka([
        "--kafka-bootstrap",
        &stack.kafka_sasl_bootstrap,
        "--kafka-property",
        "security.protocol=SASL_PLAINTEXT",
        "--kafka-property",
        "sasl.mechanism=SCRAM-SHA-512",
        "--kafka-sasl-username",
        &stack.kafka_scram_credentials.0,
        "--kafka-sasl-password-file",
        password_file.to_str().unwrap(),
    ])
}

#[tokio::test]
async fn scram_credentials_from_settings_authenticate() {
    let config = scram_config(&Stack::get().kafka_scram_credentials.1);
    produce_and_read(&config, "through SCRAM").await;
}

#[tokio::test]
async fn a_wrong_scram_password_makes_the_service_unready() {
    let readiness =
        KafkaReadiness::new(&scram_config("not-the-password"), Duration::from_secs(5)).unwrap();
    // librdkafka reports the SASL failure in its log and the request as a
    // transport failure: what matters is that the service is not ready.
    assert!(readiness.check().await.is_err());
    let good = KafkaReadiness::new(
        &scram_config(&Stack::get().kafka_scram_credentials.1),
        Duration::from_secs(5),
    );
    good.unwrap().check().await.unwrap();
}
