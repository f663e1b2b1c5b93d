//! `outbox-relay`: streams committed outbox rows to their event topics.

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use secrecy::ExposeSecret;
use sluice_avro::{AvroCodec, registry_settings};
use sluice_config::{ContractsArgs, DatabaseArgs, KafkaArgs, RegistryArgs, RouteArgs};
use sluice_dlq::DeadLetterPublisher;
use sluice_kafka::{KafkaConfig, TopicLimits, idempotent_producer, kafka_and_registry};
use sluice_outbox_relay::{OutboxFormat, OutboxSource, Relay, ReplicationConnection};
use sluice_runtime::{PostgresReadiness, RuntimeArgs, ServiceRuntime, lazy_pool};

/// Streams committed outbox rows from Postgres to Kafka.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Outbox table: a table of the public schema, or schema.table.
    #[arg(
        long = "outbox-table",
        env = "SLUICE_OUTBOX_TABLE",
        default_value = "outbox"
    )]
    table: String,
    /// What the table holds: domain events, or messages a Sluice service
    /// addressed and encoded itself (the saga orchestrator's outbox).
    #[arg(
        long = "outbox-format",
        env = "SLUICE_OUTBOX_FORMAT",
        value_enum,
        default_value = "events"
    )]
    format: OutboxFormat,
    /// Prefix of the `pg_logical_emit_message(true, PREFIX, …)` messages
    /// relayed as domain events. Default: `outbox` for the events format,
    /// none for the addressed one: one relay per prefix on a database.
    #[arg(long, env = "SLUICE_OUTBOX_MESSAGE_PREFIX")]
    message_prefix: Option<String>,
    /// Replication slot the relay reads.
    #[arg(
        long = "outbox-slot",
        env = "SLUICE_OUTBOX_SLOT",
        default_value = "sluice_outbox"
    )]
    slot: String,
    /// Publication of the outbox table.
    #[arg(
        long = "outbox-publication",
        env = "SLUICE_OUTBOX_PUBLICATION",
        default_value = "sluice_outbox"
    )]
    publication: String,
    /// Create the replication slot anew although its publication shows the
    /// relay streamed before: only once what a lost slot skipped has been
    /// recovered (see docs/OPERATIONS.md).
    #[arg(long, env = "SLUICE_OUTBOX_RECREATE_LOST_SLOT")]
    recreate_lost_slot: bool,
    #[command(flatten)]
    routes: RouteArgs,
    /// Topics an addressed row may name besides those of topics.toml and
    /// the routes, comma separated; a row naming any other is dead-lettered.
    #[arg(
        long = "allow-topic",
        env = "SLUICE_OUTBOX_ALLOW_TOPICS",
        value_delimiter = ','
    )]
    allow_topics: Vec<String>,
    /// Where rows that do not fit their contract go.
    #[arg(
        long,
        env = "SLUICE_OUTBOX_DLQ_TOPIC",
        default_value = "dlq.outbox-relay.v1"
    )]
    dlq_topic: String,
    #[command(flatten)]
    contracts: ContractsArgs,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// Table, slot and publication names go into DDL: plain identifiers only.
fn identifier(setting: &str, name: &str) -> Result<()> {
    sluice_config::sql_identifier(name)
        .map(drop)
        .map_err(|reason| anyhow::anyhow!("{setting} {reason}"))
}

fn main() -> Result<()> {
    sluice_runtime::block_on(service_main())
}

async fn service_main() -> Result<()> {
    let cli: Cli = sluice_config::parse().context("reading the configuration")?;
    for part in cli.table.splitn(2, '.') {
        identifier("outbox-table", part)?;
    }
    identifier("outbox-slot", &cli.slot)?;
    identifier("outbox-publication", &cli.publication)?;
    let database_url = cli.database.url()?;
    let connection = ReplicationConnection::from_url(database_url.expose_secret())
        .map_err(|reason| anyhow::anyhow!("database-url: {reason}"))?;
    let kafka = KafkaConfig::from_args(&cli.kafka)?;
    let registry = registry_settings(&cli.registry)?;
    let pool = lazy_pool(database_url.expose_secret(), cli.database.max_connections)
        .context("database-url")?;
    let mut checks = kafka_and_registry(&kafka, &registry)?;
    checks.push(Arc::new(PostgresReadiness::new(pool.clone())));
    let runtime = ServiceRuntime::start("outbox-relay", &cli.runtime, checks).await?;
    let producer = idempotent_producer(&kafka)?;
    let catalog = Arc::new(cli.contracts.catalog()?);
    let codec = |registry| AvroCodec::new(registry).with_contracts(Arc::clone(&catalog));
    let relay = Relay {
        pool,
        source: OutboxSource {
            connection,
            table: cli.table,
            format: cli.format,
            slot: cli.slot,
            publication: cli.publication,
            recreate_lost_slot: cli.recreate_lost_slot,
            message_prefix: cli
                .message_prefix
                .or_else(|| cli.format.default_message_prefix().map(str::to_owned)),
        },
        catalog: catalog.as_ref().clone(),
        routes: cli.routes.by_aggregate_type(),
        allowed_topics: cli.allow_topics.into_iter().collect(),
        codec: codec(registry.clone()),
        dead_letters: DeadLetterPublisher::new(
            producer.clone(),
            Arc::new(codec(registry)),
            cli.dlq_topic,
            "outbox-relay",
            env!("CARGO_PKG_VERSION"),
        ),
        limits: TopicLimits::new(&kafka)?,
        producer,
    };
    let relayed = relay.run(runtime.shutdown_requested()).await;
    let stopped = runtime.stop().await;
    relayed?;
    Ok(stopped?)
}
