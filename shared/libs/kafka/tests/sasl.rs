//! SASL/SCRAM settings reach librdkafka as given: through the broker's SCRAM
//! listener a service's settings produce, and with a wrong password the
//! service reports itself unready.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use clap::Parser;
use rdkafka::Message;
use rdkafka::producer::FutureRecord;
use sluice_config::KafkaArgs;
use sluice_kafka::{KafkaConfig, KafkaReadiness, idempotent_producer};
use sluice_telemetry::ReadinessCheck;
use sluice_testkit::{Stack, TestTopic, consume_exactly, unique_name};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,
}

/// A service's Kafka settings for the SCRAM listener, the password in a file.
fn scram_config(password: &str) -> KafkaConfig {
    let stack = Stack::get();
    let password_file = std::env::temp_dir().join(unique_name("scram-password"));
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let cli: Cli = sluice_config::parse_from([
        "svc",
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
    .unwrap();
    KafkaConfig::from_args(&cli.kafka).unwrap()
}

#[tokio::test]
async fn scram_credentials_from_settings_authenticate() {
    let topic = TestTopic::create("sasl", 1).await;
    let producer =
        idempotent_producer(&scram_config(&Stack::get().kafka_scram_credentials.1)).unwrap();
    producer
        .send(
            FutureRecord::to(&topic.name)
                .key("k")
                .payload("through SCRAM"),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let read = consume_exactly(&topic.name, 1, Duration::from_secs(30)).await;
    assert_eq!(read[0].payload(), Some(&b"through SCRAM"[..]));
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
