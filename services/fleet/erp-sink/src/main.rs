//! `erp-sink`: applies ErpCommands from Kafka to Odoo and reports each
//! outcome on `erp.results.v1`.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use secrecy::SecretString;
use sluice_avro::{AvroCodec, RegistryReadiness, registry_settings};
use sluice_config::{KafkaArgs, RegistryArgs, SecretArgs, parse_secret};
use sluice_dlq::DeadLetterPublisher;
use sluice_erp_sink::odoo::{OdooClient, OdooLogin};
use sluice_erp_sink::{Applier, ErpSink, RecordFields};
use sluice_kafka::{
    ConsumerLoop, ConsumerSettings, KafkaConfig, KafkaReadiness, ReplyPublisher,
    idempotent_producer,
};
use sluice_resilience::{BreakerConfig, CircuitBreaker, LimiterConfig, RateLimiter, RetryPolicy};
use sluice_runtime::{RuntimeArgs, ServiceRuntime};
use sluice_telemetry::ReadinessCheck;

/// Applies ERP commands to Odoo, once each, at the pace the ERP allows.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Base URL of the Odoo server (its JSON-RPC endpoint is /jsonrpc).
    #[arg(id = "odoo-url", long = "odoo-url", env = "SLUICE_ERP_ODOO_URL")]
    odoo_url: String,
    /// Odoo database.
    #[arg(
        id = "odoo-database",
        long = "odoo-database",
        env = "SLUICE_ERP_ODOO_DATABASE"
    )]
    odoo_database: String,
    /// Odoo login.
    #[arg(id = "odoo-login", long = "odoo-login", env = "SLUICE_ERP_ODOO_LOGIN")]
    odoo_login: String,
    /// Odoo password or API key.
    #[arg(
        id = "odoo-password",
        long = "odoo-password",
        env = "SLUICE_ERP_ODOO_PASSWORD",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    odoo_password: Option<SecretString>,
    /// A file holding the Odoo password (a mounted secret).
    #[arg(
        id = "odoo-password-file",
        long = "odoo-password-file",
        env = "SLUICE_ERP_ODOO_PASSWORD_FILE",
        value_name = "FILE"
    )]
    odoo_password_file: Option<PathBuf>,
    /// The Char field holding each record's external reference.
    #[arg(
        id = "external-ref-field",
        long = "external-ref-field",
        env = "SLUICE_ERP_EXTERNAL_REF_FIELD",
        default_value = "x_sluice_external_ref"
    )]
    external_ref_field: String,
    /// The Text field holding the ids of the commands applied to a record.
    #[arg(
        id = "applied-commands-field",
        long = "applied-commands-field",
        env = "SLUICE_ERP_APPLIED_COMMANDS_FIELD",
        default_value = "x_sluice_commands"
    )]
    applied_commands_field: String,
    /// Topic of the commands.
    #[arg(
        id = "topic",
        long = "topic",
        env = "SLUICE_ERP_TOPIC",
        default_value = "erp.commands.v1"
    )]
    topic: String,
    /// Topic of the results.
    #[arg(
        id = "results-topic",
        long = "results-topic",
        env = "SLUICE_ERP_RESULTS_TOPIC",
        default_value = "erp.results.v1"
    )]
    results_topic: String,
    /// Consumer group.
    #[arg(
        id = "group-id",
        long = "group-id",
        env = "SLUICE_ERP_GROUP",
        default_value = "sluice-erp-sink"
    )]
    group_id: String,
    /// Where refused commands go.
    #[arg(
        id = "dlq-topic",
        long = "dlq-topic",
        env = "SLUICE_ERP_DLQ_TOPIC",
        default_value = "dlq.erp-sink.v1"
    )]
    dlq_topic: String,
    /// ERP calls per second (a command takes two: search, then write or create).
    #[arg(
        id = "requests-per-second",
        long = "requests-per-second",
        env = "SLUICE_ERP_REQUESTS_PER_SECOND",
        default_value_t = 5.0
    )]
    requests_per_second: f64,
    /// Calls that may go at once after a quiet spell.
    #[arg(
        id = "burst",
        long = "burst",
        env = "SLUICE_ERP_BURST",
        default_value = "50"
    )]
    burst: NonZeroU32,
    /// Consecutive failed calls that open the breaker.
    #[arg(
        id = "breaker-failures",
        long = "breaker-failures",
        env = "SLUICE_ERP_BREAKER_FAILURES",
        default_value_t = 3
    )]
    breaker_failures: u32,
    /// Successful trial calls that close it again.
    #[arg(
        id = "breaker-successes",
        long = "breaker-successes",
        env = "SLUICE_ERP_BREAKER_SUCCESSES",
        default_value_t = 2
    )]
    breaker_successes: u32,
    /// Seconds the breaker stays open before a trial call.
    #[arg(
        id = "breaker-open-secs",
        long = "breaker-open-secs",
        env = "SLUICE_ERP_BREAKER_OPEN_SECS",
        default_value_t = 120
    )]
    breaker_open_secs: u64,
    /// Retries of a failed call (5xx, timeouts) before the command is dead-lettered.
    #[arg(
        id = "max-retries",
        long = "max-retries",
        env = "SLUICE_ERP_MAX_RETRIES",
        default_value_t = 5
    )]
    max_retries: u32,
    /// Milliseconds before the first retry (doubling, 20 % jitter).
    #[arg(
        id = "retry-initial-ms",
        long = "retry-initial-ms",
        env = "SLUICE_ERP_RETRY_INITIAL_MS",
        default_value_t = 2_000
    )]
    retry_initial_ms: u64,
    /// Longest wait between retries, in milliseconds.
    #[arg(
        id = "retry-max-ms",
        long = "retry-max-ms",
        env = "SLUICE_ERP_RETRY_MAX_MS",
        default_value_t = 60_000
    )]
    retry_max_ms: u64,
    /// Seconds an ERP call may take.
    #[arg(
        id = "call-timeout-secs",
        long = "call-timeout-secs",
        env = "SLUICE_ERP_CALL_TIMEOUT_SECS",
        default_value_t = 45
    )]
    call_timeout_secs: u64,
    /// Commands handled at once (each partition keeps its order).
    #[arg(
        id = "max-concurrent",
        long = "max-concurrent",
        env = "SLUICE_ERP_MAX_CONCURRENT",
        default_value_t = 4
    )]
    max_concurrent: usize,
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
    let password = SecretArgs {
        value: cli.odoo_password.clone(),
        file: cli.odoo_password_file.clone(),
    }
    .resolve("odoo-password")?
    .context("odoo-password: set it, or odoo-password-file")?;
    let kafka = KafkaConfig::from_args(&cli.kafka)?;
    let registry = registry_settings(&cli.registry)?;
    let checks: Vec<Arc<dyn ReadinessCheck>> = vec![
        Arc::new(KafkaReadiness::new(&kafka, Duration::from_secs(5))?),
        Arc::new(RegistryReadiness::new(registry.clone())),
    ];
    let runtime = ServiceRuntime::start("erp-sink", &cli.runtime, checks).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(cli.call_timeout_secs))
        .build()
        .context("HTTP client")?;
    let limiter = Arc::new(RateLimiter::new(
        "erp",
        LimiterConfig {
            capacity: cli.burst,
            refill_per_second: cli.requests_per_second,
        },
    )?);
    let login = OdooLogin {
        url: cli.odoo_url,
        database: cli.odoo_database,
        login: cli.odoo_login,
        password,
    };
    let codec = Arc::new(AvroCodec::new(registry.clone()));
    let breaker = CircuitBreaker::new(
        "erp",
        BreakerConfig {
            failure_threshold: cli.breaker_failures,
            failure_rate: None,
            slow_call: None,
            open_wait: Duration::from_secs(cli.breaker_open_secs),
            half_open_permits: 1,
            success_threshold: cli.breaker_successes,
        },
    )?;
    let sink = ErpSink::new(
        AvroCodec::new(registry),
        Applier::new(
            OdooClient::new(http, login, breaker, limiter),
            RecordFields {
                external_ref: cli.external_ref_field,
                applied_commands: cli.applied_commands_field,
            },
        ),
        ReplyPublisher::new(&kafka, Arc::clone(&codec), cli.results_topic)?,
    );
    let settings = ConsumerSettings {
        group_id: cli.group_id,
        topics: vec![cli.topic],
        partition_buffer: 16,
        max_concurrent: cli.max_concurrent,
        max_batch: 1,
        batch_linger: Duration::ZERO,
        retry: RetryPolicy {
            max_retries: cli.max_retries,
            initial_delay: Duration::from_millis(cli.retry_initial_ms),
            max_delay: Duration::from_millis(cli.retry_max_ms),
            multiplier: 2.0,
            jitter: 0.2,
            max_elapsed: None,
        },
        pause_backoff: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(20),
    };
    let dead_letters = DeadLetterPublisher::new(
        idempotent_producer(&kafka)?,
        codec,
        cli.dlq_topic,
        "erp-sink",
        env!("CARGO_PKG_VERSION"),
    );
    ConsumerLoop::new(&kafka, settings, sink, dead_letters)?
        .run(runtime.shutdown_requested())
        .await?;
    runtime.stop().await;
    Ok(())
}
