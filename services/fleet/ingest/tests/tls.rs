//! ingest as a deployment with TLS everywhere runs it: Kafka through the
//! broker's SSL listener, Postgres with `sslmode=verify-full` and the
//! registry over HTTPS, all checked against the stack's CA; with a CA that did not sign the broker's
//! certificate it stays unready and its log says why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{accepted, ingest_command};
use sluice_testkit::{
    KillOnDrop, Stack, TestTopic, consume_exactly, free_port, logged, readiness_status, unique_name,
};

/// ingest on the TLS listeners, trusting `kafka_ca` for Kafka; its health
/// port and log file.
fn ingest_over_tls(
    api: u16,
    topic: &str,
    kafka_ca: &std::path::Path,
) -> (KillOnDrop, u16, std::path::PathBuf) {
    let stack = Stack::get();
    let health = free_port();
    let log = std::env::temp_dir().join(unique_name("ingest-tls.log"));
    let mut command = ingest_command(api, topic);
    command
        .env("SLUICE_KAFKA_BOOTSTRAP", &stack.kafka_ssl_bootstrap)
        .env(
            "SLUICE_KAFKA_PROPERTIES",
            format!(
                "security.protocol=SSL,ssl.ca.location={}",
                kafka_ca.display()
            ),
        )
        .env(
            "SLUICE_DATABASE_URL",
            stack.database_url_verified_by(&stack.tls_ca),
        )
        .env("SLUICE_SCHEMA_REGISTRY_URL", &stack.schema_registry_tls_url)
        .env("SLUICE_SCHEMA_REGISTRY_CA_FILE", &stack.tls_ca)
        .env("SLUICE_HTTP_LISTEN", format!("127.0.0.1:{health}"))
        .env("SLUICE_LOG", "info")
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    (KillOnDrop(command.spawn().unwrap()), health, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_accepts_events_over_tls_to_kafka_postgres_and_the_registry() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-tls", 1).await;
    let api = free_port();
    let (mut ingest, _, _) = ingest_over_tls(api, &topic.name, &Stack::get().tls_ca);
    let key = format!("tls-{}", uuid::Uuid::new_v4());
    accepted(
        &format!("http://127.0.0.1:{api}"),
        &[("Idempotency-Key", &key)],
        Duration::from_secs(60),
    )
    .await;
    consume_exactly(&topic.name, 1, Duration::from_secs(30)).await;
    ingest.assert_running("after the request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_trusting_another_ca_is_unready_and_says_why() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-tls-wrong", 1).await;
    let (mut ingest, health, log) =
        ingest_over_tls(free_port(), &topic.name, &Stack::get().wrong_ca);
    let said = logged(&log, "certificate verify failed").await;
    let status = readiness_status(health).await;
    assert_eq!(
        status, 503,
        "not ready with a broker it cannot trust:\n{said}"
    );
    ingest.assert_running("while the broker is not trusted");
}
