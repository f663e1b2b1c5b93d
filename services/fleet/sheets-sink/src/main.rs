//! `sheets-sink`: applies SheetRowUpserts from Kafka to Google Sheets.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use sluice_avro::{AvroCodec, RegistryReadiness, registry_settings};
use sluice_config::{KafkaArgs, RegistryArgs};
use sluice_dlq::DeadLetterPublisher;
use sluice_kafka::{
    ConsumerLoop, ConsumerSettings, KafkaConfig, KafkaReadiness, ReplyPublisher,
    idempotent_producer,
};
use sluice_resilience::{BreakerConfig, CircuitBreaker, LimiterConfig, RateLimiter, RetryPolicy};
use sluice_runtime::{RuntimeArgs, ServiceRuntime};
use sluice_sheets_sink::google::{ServiceAccountKey, SheetsClient, TokenSource};
use sluice_sheets_sink::{SheetsSink, Upserter};
use sluice_telemetry::ReadinessCheck;

/// Applies sheet row upserts to Google Sheets at the pace Google allows.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Google service-account JSON key (its token_uri is where tokens come from).
    #[arg(
        id = "service-account",
        long = "service-account",
        env = "SLUICE_SHEETS_SERVICE_ACCOUNT"
    )]
    service_account: PathBuf,
    /// Base URL of the Sheets API.
    #[arg(
        id = "sheets-base-url",
        long = "sheets-base-url",
        env = "SLUICE_SHEETS_BASE_URL",
        default_value = "https://sheets.googleapis.com"
    )]
    base_url: String,
    /// Topic of the row upserts.
    #[arg(
        id = "topic",
        long = "topic",
        env = "SLUICE_SHEETS_TOPIC",
        default_value = "sheets.rows.v1"
    )]
    topic: String,
    /// Consumer group.
    #[arg(
        id = "group-id",
        long = "group-id",
        env = "SLUICE_SHEETS_GROUP",
        default_value = "sluice-sheets-sink"
    )]
    group_id: String,
    /// Where refused commands go.
    #[arg(
        id = "dlq-topic",
        long = "dlq-topic",
        env = "SLUICE_SHEETS_DLQ_TOPIC",
        default_value = "dlq.sheets-sink.v1"
    )]
    dlq_topic: String,
    /// Topic of the answers to commands a saga sent.
    #[arg(
        id = "results-topic",
        long = "results-topic",
        env = "SLUICE_SHEETS_RESULTS_TOPIC",
        default_value = "sheets.results.v1"
    )]
    results_topic: String,
    /// API requests per minute for the service account. Sheets allows 60
    /// per minute per user; with a burst of 1 the default keeps any 60 s
    /// window at 56 at most, so the quota never answers 429.
    #[arg(
        id = "requests-per-minute",
        long = "requests-per-minute",
        env = "SLUICE_SHEETS_REQUESTS_PER_MINUTE",
        default_value_t = sluice_sheets_sink::DEFAULT_REQUESTS_PER_MINUTE
    )]
    requests_per_minute: f64,
    /// Requests that may go at once after a quiet spell.
    #[arg(
        id = "burst",
        long = "burst",
        env = "SLUICE_SHEETS_BURST",
        default_value = "1"
    )]
    burst: NonZeroU32,
    /// Most commands of one partition written together (one batchUpdate
    /// per spreadsheet and one append per sheet, whatever the count).
    #[arg(
        id = "batch-size",
        long = "batch-size",
        env = "SLUICE_SHEETS_BATCH_SIZE",
        default_value_t = 500
    )]
    batch_size: usize,
    /// Milliseconds a batch that is not full waits for more commands.
    #[arg(
        id = "batch-linger-ms",
        long = "batch-linger-ms",
        env = "SLUICE_SHEETS_BATCH_LINGER_MS",
        default_value_t = 200
    )]
    batch_linger_ms: u64,
    /// Consecutive failed calls that open the breaker.
    #[arg(
        id = "breaker-failures",
        long = "breaker-failures",
        env = "SLUICE_SHEETS_BREAKER_FAILURES",
        default_value_t = 5
    )]
    breaker_failures: u32,
    /// Seconds the breaker stays open before a trial call.
    #[arg(
        id = "breaker-open-secs",
        long = "breaker-open-secs",
        env = "SLUICE_SHEETS_BREAKER_OPEN_SECS",
        default_value_t = 30
    )]
    breaker_open_secs: u64,
    /// Retries of a failed call (5xx, timeouts) before the command is dead-lettered.
    #[arg(
        id = "max-retries",
        long = "max-retries",
        env = "SLUICE_SHEETS_MAX_RETRIES",
        default_value_t = 5
    )]
    max_retries: u32,
    /// Seconds an API call may take.
    #[arg(
        id = "call-timeout-secs",
        long = "call-timeout-secs",
        env = "SLUICE_SHEETS_CALL_TIMEOUT_SECS",
        default_value_t = 30
    )]
    call_timeout_secs: u64,
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
    let key = ServiceAccountKey::read(&cli.service_account).map_err(anyhow::Error::msg)?;
    let kafka = KafkaConfig::from_args(&cli.kafka)?;
    let registry = registry_settings(&cli.registry)?;
    let checks: Vec<Arc<dyn ReadinessCheck>> = vec![
        Arc::new(KafkaReadiness::new(&kafka, Duration::from_secs(5))?),
        Arc::new(RegistryReadiness::new(registry.clone())),
    ];
    let runtime = ServiceRuntime::start("sheets-sink", &cli.runtime, checks).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(cli.call_timeout_secs))
        .build()
        .context("HTTP client")?;
    let limiter = Arc::new(RateLimiter::new(
        "sheets",
        LimiterConfig {
            capacity: cli.burst,
            refill_per_second: cli.requests_per_minute / 60.0,
        },
    )?);
    let codec = Arc::new(AvroCodec::new(registry.clone()));
    let tokens = TokenSource::new(key, http.clone()).map_err(anyhow::Error::msg)?;
    let sink = SheetsSink {
        codec: AvroCodec::new(registry.clone()),
        upserter: Upserter::new(SheetsClient::new(&cli.base_url, http, tokens, limiter)),
        breaker: CircuitBreaker::new(
            "sheets",
            BreakerConfig {
                failure_threshold: cli.breaker_failures,
                failure_rate: None,
                slow_call: None,
                open_wait: Duration::from_secs(cli.breaker_open_secs),
                half_open_permits: 1,
                success_threshold: 2,
            },
        )?,
        replies: ReplyPublisher::new(&kafka, Arc::clone(&codec), cli.results_topic)?,
    };
    let settings = ConsumerSettings {
        group_id: cli.group_id,
        topics: vec![cli.topic],
        // A partition's next batch queues while the limiter holds this one.
        partition_buffer: cli.batch_size.max(1),
        max_concurrent: 4,
        max_batch: cli.batch_size,
        batch_linger: Duration::from_millis(cli.batch_linger_ms),
        retry: RetryPolicy {
            max_retries: cli.max_retries,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
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
        "sheets-sink",
        env!("CARGO_PKG_VERSION"),
    );
    ConsumerLoop::new(&kafka, settings, sink, dead_letters)?
        .run(runtime.shutdown_requested())
        .await?;
    runtime.stop().await;
    Ok(())
}
