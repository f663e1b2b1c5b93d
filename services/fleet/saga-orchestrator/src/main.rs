//! `saga-orchestrator`: runs order fulfilment sagas (`run`), and shows
//! operators where they stand (`list`, `show`).

mod render;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;
use sluice_avro::{AvroCodec, RegistryReadiness, registry_settings};
use sluice_config::{KafkaArgs, RegistryArgs, parse_secret};
use sluice_dlq::DeadLetterPublisher;
use sluice_kafka::{
    ConsumerLoop, ConsumerSettings, KafkaConfig, KafkaReadiness, idempotent_producer,
};
use sluice_resilience::RetryPolicy;
use sluice_runtime::{PostgresReadiness, RuntimeArgs, ServiceRuntime};
use sluice_saga_orchestrator::engine::Phase;
use sluice_saga_orchestrator::fulfilment::{self, Settings};
use sluice_saga_orchestrator::{
    SagaHandler, Sagas, StoreError, TimeoutSettings, Topics, run_timeouts,
};
use sluice_telemetry::ReadinessCheck;

use crate::render::Output;

/// Order fulfilment as a durable saga: reserve in the ERP, record in the
/// Orders sheet, confirm — or compensate and reject.
///
/// Postgres comes from SLUICE_DATABASE_URL (or --database-url); the sagas
/// live in its `saga` schema.
#[derive(Debug, Parser)]
#[command(version, name = "saga-orchestrator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Postgres URL (a secret: it holds the password).
    #[arg(
        id = "database-url",
        long = "database-url",
        env = "SLUICE_DATABASE_URL",
        hide_env_values = true,
        value_parser = parse_secret,
        global = true
    )]
    database_url: Option<SecretString>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run sagas: consume orders and replies, fire timeouts.
    Run(Box<RunArgs>),
    /// List sagas, newest first.
    List {
        /// Only sagas in this state (running, compensating, completed,
        /// compensated, failed).
        #[arg(long, value_parser = parse_phase)]
        state: Option<Phase>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// A table (for people) or JSON lines (for scripts).
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Show one saga and its step log.
    Show {
        /// The saga id, or the order id.
        saga: String,
        /// A table (for people) or JSON (for scripts).
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

/// Slot and publication names go into DDL: plain identifiers only.
fn identifier(name: &str) -> Result<String, String> {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "{name:?}: use lowercase letters, digits and _ only"
        ))
    }
}

fn parse_phase(name: &str) -> Result<Phase, String> {
    Phase::parse(name).ok_or_else(|| {
        format!("{name:?}: use running, compensating, completed, compensated or failed")
    })
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Orders' events; OrderPlaced starts a saga, the outcome goes here too.
    #[arg(
        long = "orders-topic",
        env = "SLUICE_SAGA_ORDERS_TOPIC",
        default_value = "orders.events.v1"
    )]
    orders_topic: String,
    /// erp-sink's commands.
    #[arg(
        long = "erp-topic",
        env = "SLUICE_SAGA_ERP_TOPIC",
        default_value = "erp.commands.v1"
    )]
    erp_topic: String,
    /// erp-sink's results (the ERP step's replies).
    #[arg(
        long = "erp-results-topic",
        env = "SLUICE_SAGA_ERP_RESULTS_TOPIC",
        default_value = "erp.results.v1"
    )]
    erp_results_topic: String,
    /// sheets-sink's commands.
    #[arg(
        long = "sheets-topic",
        env = "SLUICE_SAGA_SHEETS_TOPIC",
        default_value = "sheets.rows.v1"
    )]
    sheets_topic: String,
    /// sheets-sink's results (the sheet step's replies).
    #[arg(
        long = "sheets-results-topic",
        env = "SLUICE_SAGA_SHEETS_RESULTS_TOPIC",
        default_value = "sheets.results.v1"
    )]
    sheets_results_topic: String,
    /// Spreadsheet of the Orders sheet.
    #[arg(
        long = "spreadsheet",
        env = "SLUICE_SAGA_SPREADSHEET",
        default_value = "sluice-demo"
    )]
    spreadsheet: String,
    /// Title of the Orders sheet.
    #[arg(long = "sheet", env = "SLUICE_SAGA_SHEET", default_value = "Orders")]
    sheet: String,
    /// ERP model of the reservation.
    #[arg(
        long = "erp-model",
        env = "SLUICE_SAGA_ERP_MODEL",
        default_value = "sale.order"
    )]
    erp_model: String,
    /// Milliseconds the ERP step (and its compensation) may wait for a reply.
    #[arg(
        long = "erp-timeout-ms",
        env = "SLUICE_SAGA_ERP_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    erp_timeout_ms: u64,
    /// Milliseconds the sheet step (and its compensation) may wait for a reply.
    #[arg(
        long = "sheet-timeout-ms",
        env = "SLUICE_SAGA_SHEET_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    sheet_timeout_ms: u64,
    /// Times a step's command is sent again after a timeout before the step fails.
    #[arg(
        long = "step-retries",
        env = "SLUICE_SAGA_STEP_RETRIES",
        default_value_t = 2
    )]
    step_retries: u32,
    /// Milliseconds between looks for passed deadlines.
    #[arg(
        long = "timeout-tick-ms",
        env = "SLUICE_SAGA_TIMEOUT_TICK_MS",
        default_value_t = 500
    )]
    timeout_tick_ms: u64,
    /// Replication slot outbox-relay streams the orchestrator's outbox from
    /// (created here when missing, so no row precedes it).
    #[arg(long = "outbox-slot", env = "SLUICE_SAGA_OUTBOX_SLOT", default_value = "sluice_saga_outbox", value_parser = identifier)]
    outbox_slot: String,
    /// Publication of the orchestrator's outbox table.
    #[arg(long = "outbox-publication", env = "SLUICE_SAGA_OUTBOX_PUBLICATION", default_value = "sluice_saga_outbox", value_parser = identifier)]
    outbox_publication: String,
    /// How long outbox rows are kept after they are written (for
    /// operators; the relay streams the WAL, not the table): 24h, 90m, 7d.
    #[arg(
        long = "outbox-retention",
        env = "SLUICE_SAGA_OUTBOX_RETENTION",
        default_value = "24h",
        value_parser = humantime::parse_duration
    )]
    outbox_retention: Duration,
    /// Consumer group.
    #[arg(
        long = "group-id",
        env = "SLUICE_SAGA_GROUP",
        default_value = "sluice-saga-orchestrator"
    )]
    group_id: String,
    /// Where events and replies that cannot be handled go.
    #[arg(
        long = "dlq-topic",
        env = "SLUICE_SAGA_DLQ_TOPIC",
        default_value = "dlq.saga-orchestrator.v1"
    )]
    dlq_topic: String,
    /// Partitions handled at once.
    #[arg(
        long = "max-concurrent",
        env = "SLUICE_SAGA_MAX_CONCURRENT",
        default_value_t = 6
    )]
    max_concurrent: usize,
    /// Most Postgres connections.
    #[arg(
        long = "database-max-connections",
        env = "SLUICE_DATABASE_MAX_CONNECTIONS",
        default_value_t = 8
    )]
    max_connections: u32,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[tokio::main]
async fn main() -> Result<ExitCode> {
    let cli: Cli = sluice_config::parse().context("reading the configuration")?;
    let url = cli
        .database_url
        .context("database-url: set it, or SLUICE_DATABASE_URL")?;
    match cli.command {
        Command::Run(args) => run(&url, *args).await?,
        Command::List {
            state,
            limit,
            output,
        } => {
            let sagas = Sagas::connect(&url, 2).await?;
            print!(
                "{}",
                render::sagas(&sagas.list(state, limit).await?, output)
            );
        }
        Command::Show { saga, output } => {
            let sagas = Sagas::connect(&url, 2).await?;
            let Some((summary, log)) = sagas.history(&saga).await? else {
                eprintln!("no saga {saga:?} (neither a saga id nor an order id)");
                return Ok(ExitCode::from(1));
            };
            print!("{}", render::history(&summary, &log, output));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(url: &SecretString, args: RunArgs) -> Result<()> {
    let kafka = KafkaConfig::from_args(&args.kafka)?;
    let registry = registry_settings(&args.registry)?;
    let codec = Arc::new(AvroCodec::new(registry.clone()));
    let sagas = Sagas::lazy(url, args.max_connections)?;
    let checks: Vec<Arc<dyn ReadinessCheck>> = vec![
        Arc::new(KafkaReadiness::new(&kafka, Duration::from_secs(5))?),
        Arc::new(RegistryReadiness::new(registry.clone())),
        Arc::new(PostgresReadiness::new(sagas.pool().clone())),
    ];
    let runtime = ServiceRuntime::start("saga-orchestrator", &args.runtime, checks).await?;
    let what = "preparing the sagas' tables and the outbox's slot";
    let prepared = runtime
        .prepare(what, StoreError::is_transient, || async {
            sagas.migrate().await?;
            sagas
                .ensure_slot(&args.outbox_publication, &args.outbox_slot)
                .await
        })
        .await
        .context(what)?;
    if prepared.is_none() {
        runtime.stop().await;
        return Ok(());
    }
    let store = sagas.driver(Arc::clone(&codec));
    let saga = Arc::new(fulfilment::saga(&Settings {
        erp_topic: args.erp_topic,
        sheets_topic: args.sheets_topic,
        events_topic: args.orders_topic.clone(),
        spreadsheet: args.spreadsheet,
        sheet: args.sheet,
        erp_model: args.erp_model,
        erp_timeout: Duration::from_millis(args.erp_timeout_ms),
        sheet_timeout: Duration::from_millis(args.sheet_timeout_ms),
        retries: args.step_retries,
    }));
    sluice_saga_orchestrator::metrics::register(saga.name);
    let timeouts = {
        let store = store.clone();
        let sagas = sagas.clone();
        let saga = Arc::clone(&saga);
        let shutdown = runtime.shutdown_requested();
        let settings = TimeoutSettings {
            tick: Duration::from_millis(args.timeout_tick_ms),
            batch: 100,
            census_every: Duration::from_secs(5),
            overdue: Duration::from_secs(60),
            outbox_retention: args.outbox_retention,
        };
        tokio::spawn(async move { run_timeouts(&store, &sagas, &saga, settings, shutdown).await })
    };
    let topics = Topics {
        orders: args.orders_topic,
        erp_results: args.erp_results_topic,
        sheet_results: args.sheets_results_topic,
    };
    let settings = ConsumerSettings {
        group_id: args.group_id,
        topics: vec![
            topics.orders.clone(),
            topics.erp_results.clone(),
            topics.sheet_results.clone(),
        ],
        partition_buffer: 64,
        max_concurrent: args.max_concurrent,
        max_batch: 1,
        batch_linger: Duration::ZERO,
        retry: RetryPolicy {
            max_retries: 10,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.2,
            max_elapsed: None,
        },
        pause_backoff: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(10),
    };
    let dead_letters = DeadLetterPublisher::new(
        idempotent_producer(&kafka)?,
        Arc::clone(&codec),
        args.dlq_topic,
        "saga-orchestrator",
        env!("CARGO_PKG_VERSION"),
    );
    let handler = SagaHandler {
        saga,
        store,
        codec: AvroCodec::new(registry),
        topics,
    };
    ConsumerLoop::new(&kafka, settings, handler, dead_letters)?
        .run(runtime.shutdown_requested())
        .await?;
    timeouts.await.context("the timeout loop")?;
    runtime.stop().await;
    Ok(())
}
