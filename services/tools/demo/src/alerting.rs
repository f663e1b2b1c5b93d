//! The shipped alerts and dashboards against a real Prometheus scraping the
//! chart's fleet once its stream is reconciled: every dashboard query
//! evaluates and returns series (but for the ones that only show trouble),
//! while three real failures each make their alert's expression hold — a
//! sink stalled behind an ERP outage (SluicePartitionStalled, which fires at
//! once: erp-sink runs with --partition-stall-after 5s here), a dead-letter
//! queue filling (SluiceDeadLetters), and the outbox's relays stopped, seen
//! by Postgres itself (SluiceReplicationSlotInactive). The last two are
//! pending as soon as their expression holds; that they fire after their
//! `for` is what `promtool test rules` (deploy/prometheus/alerts.test.yml)
//! shows, without waiting five minutes here.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use sluice_fleet::load::{Driver, Ledger, Plan};
use sluice_fleet::prometheus::Watch;
use sluice_fleet::{Finished, Fleet, Harness};

/// Longest wait for an alert's expression to hold after its failure.
const WITHIN: Duration = Duration::from_secs(120);

/// Runs the checks on a reconciled chart-run.
pub async fn check(finished: &Finished, harness: &Harness) -> Result<()> {
    let prometheus = Watch::start(
        &finished.fleet,
        &harness.place,
        Path::new("deploy/prometheus/alerts.yml"),
        &harness.database_url,
    )
    .await?;
    println!(
        "[alerts] Prometheus scrapes the fleet and Postgres at {}",
        prometheus.prometheus.base
    );

    finished
        .sandbox
        .set("odoo", &json!({"outage_secs": 600}))
        .await?;
    finished
        .sandbox
        .set("sheets", &json!({"burst_429": 3, "retry_after_secs": 1}))
        .await?;
    stream(finished, harness).await?;
    let state = prometheus
        .until_active(
            "SluicePartitionStalled",
            ("topic", "erp.commands.v1"),
            WITHIN,
        )
        .await?;
    println!("[alerts] ERP outage: SluicePartitionStalled {state}");

    poison(&harness.kafka_bootstrap, "requests.events.v1", 40).await?;
    let state = prometheus
        .until_active("SluiceDeadLetters", ("class", "DECODE"), WITHIN)
        .await?;
    println!("[alerts] 40 values that are not Avro: SluiceDeadLetters {state}");
    // Now that retries, deferrals and breaker transitions happened too.
    dashboards(&prometheus).await?;

    for relay in finished.fleet.replicas("outbox-relay") {
        Fleet::halt(relay).await;
    }

    let state = prometheus
        .until_active(
            "SluiceReplicationSlotInactive",
            ("slot_name", "sluice_outbox"),
            WITHIN,
        )
        .await?;
    println!("[alerts] every outbox-relay stopped: SluiceReplicationSlotInactive {state}");
    Ok(())
}

/// Every query of every dashboard evaluates; each returns series unless it
/// filters for trouble (a comparison), which a healthy fleet does not have.
async fn dashboards(prometheus: &Watch) -> Result<()> {
    let mut queries = Vec::new();
    for entry in std::fs::read_dir("deploy/grafana/dashboards").context("the dashboards")? {
        let path = entry?.path();
        let dashboard: Value = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("reading {}", path.display()))?;
        expressions(&dashboard, &mut queries);
    }
    let mut empty = Vec::new();
    for query in &queries {
        let series = prometheus.query(query).await?;
        let shows_trouble_only = [">=", "> ", "< ", "=="].iter().any(|op| query.contains(op));
        if series.is_empty() && !shows_trouble_only {
            empty.push(query.as_str());
        }
    }
    ensure!(
        empty.is_empty(),
        "dashboard queries without series: {empty:#?}"
    );
    println!(
        "[alerts] {} dashboard queries evaluated, each with series",
        queries.len()
    );
    Ok(())
}

fn expressions(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => into.push(expr.clone()),
                    _ => expressions(value, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| expressions(item, into)),
        _ => {}
    }
}

/// A few orders (for erp-sink to fail on) and requests (for sheets-sink to
/// be told to wait) through the outbox and ingest.
async fn stream(finished: &Finished, harness: &Harness) -> Result<()> {
    let plan = Plan {
        run: format!("a{}", chrono::Utc::now().format("%H%M%S")),
        requests: 2,
        orders: 6,
        refuse_every: 0,
    };
    let pool = sqlx::PgPool::connect(&harness.database_url).await?;
    let ledger = Ledger::default();
    Driver {
        plan: &plan,
        pool: &pool,
        ingest: &finished.ingest,
        token: &finished.token,
        rate: 20.0,
        ledger: &ledger,
    }
    .run()
    .await
}

/// `count` values that are not Avro on `topic`.
async fn poison(bootstrap: &str, topic: &str, count: usize) -> Result<()> {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    for i in 0..count {
        let key = format!("alerting-{i}");
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload("not avro"),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(error, _)| error)?;
    }
    Ok(())
}
