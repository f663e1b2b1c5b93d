//! `ingest`: accepts domain events over HTTP (`POST /v1/events`), checks
//! them against their Avro contract, and answers 202 only once Kafka has
//! acknowledged them.

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use sluice_avro::{AvroCodec, registry_settings};
use sluice_config::{
    AuditArgs, ContractsArgs, DatabaseArgs, KafkaArgs, RegistryArgs, RouteArgs, instance_actor,
};
use sluice_kafka::{AuditLog, KafkaConfig, ReplyPublisher, kafka_and_registry};
use sluice_resilience::RateLimiter;
use sluice_runtime::{PostgresReadiness, RuntimeArgs, ServiceRuntime, lazy_pool};
use tokio::net::TcpListener;

use secrecy::ExposeSecret;
use sluice_ingest::{
    AppState, EventRouter, IdempotencyStore, IngestArgs, Publisher, RefusalBudget, TokenHashes,
    WebhookSources, router, serve,
};

/// Accepts domain events over HTTP and produces them to Kafka as Avro.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    ingest: IngestArgs,
    #[command(flatten)]
    routes: RouteArgs,
    #[command(flatten)]
    contracts: ContractsArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    audit: AuditArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

fn main() -> Result<()> {
    sluice_runtime::block_on(service_main())
}

async fn service_main() -> Result<()> {
    let cli: Cli = sluice_config::parse().context("reading the configuration")?;
    let catalog = cli.contracts.catalog()?;
    let tokens = TokenHashes::parse(&cli.ingest.token_sha256, &catalog)?;
    let kafka = KafkaConfig::from_args(&cli.kafka)?;
    let registry = registry_settings(&cli.registry)?;
    let database_url = cli.database.url()?;
    let pool = lazy_pool(database_url.expose_secret(), cli.database.max_connections)
        .context("database-url")?;
    let mut checks = kafka_and_registry(&kafka, &registry)?;
    checks.push(Arc::new(PostgresReadiness::new(pool.clone())));
    let runtime = ServiceRuntime::start("ingest", &cli.runtime, checks).await?;

    // A pending key older than twice the ack timeout was left by a crash.
    let idempotency = IdempotencyStore::new(
        pool,
        cli.ingest.ack_timeout() * 2,
        cli.ingest.idempotency_key_lifetime(),
    );
    let what = "migrating the ingest tables";
    let migrated = runtime
        .prepare(what, sluice_runtime::transient_migration, || {
            idempotency.migrate()
        })
        .await
        .context(what)?;
    if migrated.is_none() {
        return Ok(runtime.stop().await?);
    }
    let webhooks = match &cli.ingest.webhooks {
        Some(path) => WebhookSources::load(path, &catalog)?,
        None => WebhookSources::default(),
    };
    let audit = AuditLog::new(
        ReplyPublisher::immediate(
            &kafka,
            Arc::new(AvroCodec::new(registry.clone())),
            cli.audit.audit_topic.clone(),
        )?,
        "ingest",
        instance_actor("ingest"),
    );
    let state = Arc::new(AppState {
        tokens,
        events: EventRouter::new(catalog, cli.routes.by_aggregate_type()),
        codec: AvroCodec::new(registry),
        publisher: Publisher::new(
            &kafka,
            &cli.ingest.transactional_id_prefix(),
            usize::from(cli.ingest.max_transactions),
            cli.ingest.ack_timeout(),
        )?,
        idempotency: idempotency.clone(),
        webhooks,
        per_token: RateLimiter::new("ingest-token", cli.ingest.per_token_limit())
            .context("requests-per-second-per-token")?,
        audit,
        refusals: RefusalBudget::new(cli.ingest.refused_audit_limit())
            .context("audit-refused-per-second")?,
    });
    runtime.spawn_loop("pruning idempotency keys", prune_keys(idempotency));
    let listener = TcpListener::bind(cli.ingest.listen)
        .await
        .with_context(|| format!("binding the events API to {}", cli.ingest.listen))?;
    tracing::info!(address = %cli.ingest.listen, "events API listening");
    serve(
        listener,
        router(state, cli.ingest.max_body_bytes),
        cli.ingest.server_limits(),
        runtime.shutdown_requested(),
    )
    .await;
    Ok(runtime.stop().await?)
}

/// Deletes expired Idempotency-Key answers every ten minutes.
async fn prune_keys(store: IdempotencyStore) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        every.tick().await;
        match store.prune().await {
            Ok(pruned) => tracing::debug!(pruned, "expired idempotency keys deleted"),
            Err(err) => tracing::warn!(error = %err, "pruning idempotency keys"),
        }
    }
}
