//! dlq-replayer as an operator runs it against a cluster with TLS
//! everywhere: Kafka through the broker's SSL listener, the registry over
//! HTTPS and the replay log in Postgres with `sslmode=verify-full`, all
//! checked against the stack's CA. It lists and replays; trusting another
//! CA it fails, saying so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{dead_letters, dlq_topic, end_offset, run_with};
use sluice_testkit::{Stack, TestTopic};

/// The CLI's environment for the TLS listeners, Kafka's trusting `kafka_ca`.
fn tls_env(kafka_ca: &std::path::Path) -> Vec<(&'static str, String)> {
    let stack = Stack::get();
    let ca = stack.tls_ca.display();
    vec![
        ("SLUICE_KAFKA_BOOTSTRAP", stack.kafka_ssl_bootstrap.clone()),
        (
            "SLUICE_KAFKA_PROPERTIES",
            format!(
                "security.protocol=SSL,ssl.ca.location={}",
                kafka_ca.display()
            ),
        ),
        (
            "SLUICE_SCHEMA_REGISTRY_URL",
            stack.schema_registry_tls_url.clone(),
        ),
        ("SLUICE_SCHEMA_REGISTRY_CA_FILE", ca.to_string()),
        (
            "SLUICE_DATABASE_URL",
            stack.database_url_verified_by(&stack.tls_ca),
        ),
    ]
}

async fn run_over_tls(args: &[&str], kafka_ca: &std::path::Path) -> common::Run {
    let env = tls_env(kafka_ca);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_with(args, &env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed_over_tls() {
    let source = TestTopic::create("replayer-tls-source", 1).await;
    let dlq = dlq_topic("replayer-tls").await;
    dead_letters(&source.name, &dlq.name, 2).await;
    let ca = &Stack::get().tls_ca;

    let listed = run_over_tls(&["--output", "json", "list", "--topic", &dlq.name], ca).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(listed.json_lines().len(), 2, "{}", listed.stdout);

    let before = end_offset(&source.name);
    let replay = ["replay", "--topic", &dlq.name, "--actor", "tls-operator"];
    let replayed = run_over_tls(&replay, ca).await;
    assert_eq!(replayed.code, 0, "{}", replayed.stderr);
    assert_eq!(end_offset(&source.name), before + 2, "both replayed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusting_another_ca_fails_and_says_so() {
    let dlq = dlq_topic("replayer-tls-wrong").await;
    // Long enough for the broker's first TLS handshakes on a busy machine:
    // with 5 s, CI's cold broker had not answered before the CLI gave up,
    // so there was no refused certificate to report yet.
    let args = ["--timeout-secs", "15", "list", "--topic", &dlq.name];
    let refused = run_over_tls(&args, &Stack::get().wrong_ca).await;
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("certificate verify failed"),
        "{}",
        refused.stderr
    );
}
