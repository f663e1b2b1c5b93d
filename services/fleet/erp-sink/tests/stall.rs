//! A partition the ERP holds, through the real erp-sink process: with a
//! short --partition-stall-after it exports `sluice_partition_stalled` at
//! the held command's offset (reason handler), a real Prometheus evaluating
//! the shipped alert rules fires SluicePartitionStalled naming it, and both
//! clear once the ERP answers again and the partition moves on.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Topics, command, faults, results, sandbox, send};
use serde_json::{Value, json};
use sluice_contracts::types::{ErpOperation, ErpOutcome};
use sluice_testkit::{KillOnDrop, Prometheus, Stack, eventually, free_port, unique_name};

const STALLED: &str = "sluice_partition_stalled";

/// erp-sink on the sandbox's Odoo, calling a partition stalled after 2 s,
/// its /metrics on `port`. Its log goes to the temporary folder.
fn erp_sink(base: &str, topics: &Topics, port: u16) -> KillOnDrop {
    let stack = Stack::get();
    let log = std::env::temp_dir().join(format!("{}.log", unique_name("erp-stall")));
    eprintln!("erp-sink's log: {}", log.display());
    let child = Command::new(env!("CARGO_BIN_EXE_erp-sink"))
        .args(["--odoo-url", base])
        .args(["--odoo-database", common::DATABASE])
        .args(["--odoo-login", common::LOGIN])
        .args(["--odoo-password", common::PASSWORD])
        .args(["--topic", &topics.commands.name])
        .args(["--results-topic", &topics.results.name])
        .args(["--dlq-topic", &topics.dlq.name])
        .args(["--audit-topic", &topics.audit.name])
        .args(["--group-id", &unique_name("erp-stall")])
        // The breaker opens before a command's retries run out, so the
        // partition is held, not dead-lettered.
        .args(["--max-retries", "2", "--retry-initial-ms", "20"])
        .args(["--breaker-failures", "2", "--breaker-open-secs", "1"])
        .env_clear()
        .env("SLUICE_KAFKA_BOOTSTRAP", &stack.kafka_bootstrap)
        .env("SLUICE_SCHEMA_REGISTRY_URL", &stack.schema_registry_url)
        .env("SLUICE_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .env("SLUICE_PARTITION_STALL_AFTER", "2s")
        .env("SLUICE_LOG", "info,rdkafka=warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

/// The value of the stall series of `topic` partition 0 with `reason`, if
/// exported.
async fn stalled(port: u16, topic: &str, reason: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let labels = [
        format!("topic=\"{topic}\""),
        "partition=\"0\"".to_owned(),
        format!("reason=\"{reason}\""),
    ];
    text.lines()
        .filter(|line| line.starts_with(&format!("{STALLED}{{")))
        .find(|line| labels.iter().all(|label| line.contains(label.as_str())))
        .and_then(|line| line.rsplit_once(' ')?.1.parse().ok())
}

/// The SluicePartitionStalled alert of `topic`, if pending or firing.
fn stall_alert<'a>(alerts: &'a [Value], topic: &str) -> Option<&'a Value> {
    alerts.iter().find(|alert| {
        alert["labels"]["alertname"] == "SluicePartitionStalled"
            && alert["labels"]["topic"] == topic
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_partition_is_exported_and_alerted_until_it_moves_again() {
    let base = sandbox().await;
    let topics = Topics::create("erp-stall", 1).await;
    let topic = topics.commands.name.clone();
    let port = free_port();
    let mut sink = erp_sink(&base, &topics, port);
    // Up, assigned and caught up: command 0 is applied.
    send(
        &topic,
        &[command(0, ErpOperation::Create, "so-0", 1.0, "c")],
    )
    .await;
    results(&topics.results.name, 1).await;
    let prometheus = Prometheus::start(
        "deploy/prometheus/alerts.yml",
        &[format!("127.0.0.1:{port}")],
    )
    .await;

    // Every ERP call fails: command 1 (offset 1) is held, 2 to 4 wait behind it.
    faults(&base, json!({"error_rates": {"500": 1.0}})).await;
    let held_at = Instant::now();
    let commands: Vec<_> = (1..5)
        .map(|n| command(n, ErpOperation::Create, &format!("so-{n}"), 1.0, "c"))
        .collect();
    send(&topic, &commands).await;
    let offset = eventually("the stall exported", Duration::from_secs(30), || {
        stalled(port, &topic, "handler")
    })
    .await;
    let exported_after = held_at.elapsed();
    assert_eq!(offset, 1.0, "stuck at the held command's offset");
    assert!(
        exported_after >= Duration::from_secs(2),
        "exported after {exported_after:?}, before the stall time"
    );

    let alert = eventually(
        "SluicePartitionStalled firing",
        Duration::from_secs(30),
        || async {
            let alerts = prometheus.alerts().await.unwrap();
            stall_alert(&alerts, &topic)
                .filter(|alert| alert["state"] == "firing")
                .cloned()
        },
    )
    .await;
    let fired_after = held_at.elapsed();
    assert_eq!(alert["labels"]["partition"], "0", "{alert}");
    assert_eq!(alert["labels"]["reason"], "handler", "{alert}");
    let summary = alert["annotations"]["summary"].as_str().unwrap_or_default();
    assert_eq!(
        summary,
        format!("{topic} partition 0 stuck at offset 1 (handler)"),
        "{alert}"
    );
    eprintln!(
        "held at offset 1: exported after {exported_after:?}, alert firing after {fired_after:?}"
    );

    // The ERP answers again: the partition moves on and the stall clears.
    faults(&base, json!({})).await;
    let applied = results(&topics.results.name, 5).await;
    assert!(
        applied.iter().all(|r| r.outcome == ErpOutcome::Applied),
        "{applied:?}"
    );
    eventually("the stall cleared", Duration::from_secs(30), || async {
        (stalled(port, &topic, "handler").await == Some(-1.0)).then_some(())
    })
    .await;
    eventually("the alert resolved", Duration::from_secs(30), || async {
        stall_alert(&prometheus.alerts().await.unwrap(), &topic)
            .is_none()
            .then_some(())
    })
    .await;
    sink.assert_running("after the stall");
}
