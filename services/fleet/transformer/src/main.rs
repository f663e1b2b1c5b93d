//! `transformer`: maps domain events to sink commands by the rules file,
//! each batch's commands, dead letters and input offsets in one Kafka
//! transaction.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use sluice_avro::{AvroCodec, RegistryReadiness, registry_settings};
use sluice_config::{KafkaArgs, RegistryArgs, RouteArgs};
use sluice_contracts::Catalog;
use sluice_dlq::DeadLetterPublisher;
use sluice_kafka::{
    KafkaConfig, KafkaReadiness, TransactionalLoop, TransactionalSettings, idempotent_producer,
};
use sluice_resilience::RetryPolicy;
use sluice_runtime::{RuntimeArgs, ServiceRuntime};
use sluice_telemetry::ReadinessCheck;
use sluice_transformer::{Mapper, OutputTopics, load_rules};

/// Maps domain events to sheet rows and ERP commands, exactly once.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The mapping rules (TOML; see services/fleet/transformer/rules.toml).
    #[arg(id = "rules", long = "rules", env = "SLUICE_TRANSFORMER_RULES")]
    rules: PathBuf,
    /// Rules of the file to leave out, by id (repeatable, or comma
    /// separated): where the saga orchestrator runs, it owns OrderPlaced
    /// (orders-sheet-placed, orders-erp-sale-order).
    #[arg(
        id = "without-rule",
        long = "without-rule",
        env = "SLUICE_TRANSFORMER_WITHOUT_RULES",
        value_delimiter = ',',
        value_name = "ID"
    )]
    without_rules: Vec<String>,
    /// Check the rules file against the contracts and exit.
    #[arg(id = "check", long = "check")]
    check: bool,
    #[command(flatten)]
    routes: RouteArgs,
    /// Topic of sheet row upserts.
    #[arg(
        id = "sheets-topic",
        long = "sheets-topic",
        env = "SLUICE_SHEETS_TOPIC",
        default_value = "sheets.rows.v1"
    )]
    sheets_topic: String,
    /// Topic of ERP commands.
    #[arg(
        id = "erp-topic",
        long = "erp-topic",
        env = "SLUICE_ERP_TOPIC",
        default_value = "erp.commands.v1"
    )]
    erp_topic: String,
    /// Where events that cannot be decoded or mapped go.
    #[arg(
        id = "dlq-topic",
        long = "dlq-topic",
        env = "SLUICE_TRANSFORMER_DLQ_TOPIC",
        default_value = "dlq.transformer.v1"
    )]
    dlq_topic: String,
    /// Consumer group shared by the instances.
    #[arg(
        id = "group-id",
        long = "group-id",
        env = "SLUICE_TRANSFORMER_GROUP",
        default_value = "sluice-transformer"
    )]
    group_id: String,
    /// transactional.id of this instance: stable across its restarts (a
    /// restart fences its predecessor) and different for each instance.
    /// Default: `sluice-transformer-<HOSTNAME>` (a StatefulSet pod name).
    #[arg(
        id = "transactional-id",
        long = "transactional-id",
        env = "SLUICE_TRANSACTIONAL_ID"
    )]
    transactional_id: Option<String>,
    /// Most input events per transaction.
    #[arg(
        id = "max-batch",
        long = "max-batch",
        env = "SLUICE_TRANSFORMER_MAX_BATCH",
        default_value_t = sluice_transformer::DEFAULT_MAX_BATCH
    )]
    max_batch: usize,
    /// How long a batch waits for more events after its first, in ms.
    #[arg(
        id = "batch-linger-ms",
        long = "batch-linger-ms",
        env = "SLUICE_TRANSFORMER_BATCH_LINGER_MS",
        default_value_t = 20
    )]
    batch_linger_ms: u64,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli: Cli = sluice_config::parse().context("reading the configuration")?;
    let catalog = Catalog::embedded()?;
    let text = std::fs::read_to_string(&cli.rules)
        .with_context(|| format!("reading the rules file {}", cli.rules.display()))?;
    let rules = load_rules(&text, &catalog)
        .and_then(|rules| rules.without(&cli.without_rules))
        .with_context(|| format!("rules file {}", cli.rules.display()))?;
    if cli.check {
        println!(
            "{}: {} rules, valid against the contracts",
            cli.rules.display(),
            rules.rules.len()
        );
        return Ok(());
    }
    let transactional_id = match cli.transactional_id {
        Some(id) => id,
        None => format!(
            "sluice-transformer-{}",
            std::env::var("HOSTNAME").context(
                "set --transactional-id (or HOSTNAME): each instance needs its own, stable one"
            )?
        ),
    };
    let kafka = KafkaConfig::from_args(&cli.kafka)?;
    let registry = registry_settings(&cli.registry)?;
    let checks: Vec<Arc<dyn ReadinessCheck>> = vec![
        Arc::new(KafkaReadiness::new(&kafka, Duration::from_secs(5))?),
        Arc::new(RegistryReadiness::new(registry.clone())),
    ];
    let runtime = ServiceRuntime::start("transformer", &cli.runtime, checks).await?;
    let mapper = Mapper::new(
        rules,
        &cli.routes.by_aggregate_type(),
        AvroCodec::new(registry.clone()),
        OutputTopics {
            sheets: cli.sheets_topic,
            erp: cli.erp_topic,
        },
    );
    let settings = TransactionalSettings {
        group_id: cli.group_id,
        topics: mapper.input_topics(),
        transactional_id,
        max_batch: cli.max_batch,
        batch_linger: Duration::from_millis(cli.batch_linger_ms),
        // Mapping is deterministic: what fails once fails again. The
        // registry being away holds the partition instead (a pause).
        retry: RetryPolicy {
            max_retries: 0,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(100),
            multiplier: 1.0,
            jitter: 0.0,
            max_elapsed: None,
        },
        abort_backoff: Duration::from_secs(1),
        transaction_timeout: Duration::from_secs(30),
    };
    tracing::info!(topics = ?settings.topics, transactional_id = settings.transactional_id, "mapping events");
    let dead_letters = DeadLetterPublisher::new(
        idempotent_producer(&kafka)?,
        Arc::new(AvroCodec::new(registry)),
        cli.dlq_topic,
        "transformer",
        env!("CARGO_PKG_VERSION"),
    );
    TransactionalLoop::new(&kafka, settings, mapper, &dead_letters)?
        .run(runtime.shutdown_requested())
        .await?;
    runtime.stop().await;
    Ok(())
}
