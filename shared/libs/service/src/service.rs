//! A started consumer service: its Kafka settings, codec and runtime, and
//! the loops it runs.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use schema_registry_converter::async_impl::schema_registry::SrSettings;
use sluice_avro::{AvroCodec, registry_settings};
use sluice_config::{AuditArgs, ConfigError};
use sluice_contracts::{Catalog, ContractError};
use sluice_dlq::DeadLetterPublisher;
use sluice_kafka::{
    AuditLog, ConsumerError, ConsumerLoop, ConsumerSettings, Handler, KafkaConfig, KafkaSetupError,
    ReplyPublisher, TransactionalLoop, TransactionalSettings, Transformer, idempotent_producer,
    kafka_and_registry,
};
use sluice_resilience::{RateLimiter, RetryPolicy};
use sluice_runtime::{RuntimeError, ServiceRuntime};
use sluice_telemetry::ReadinessCheck;

use crate::{ConsumerArgs, Defaults, RetryArgs};

/// Why a service could not start, or its loop ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A Kafka client could not be made.
    #[error(transparent)]
    Kafka(#[from] KafkaSetupError),
    /// Telemetry or the health server could not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The loop could not start, or ended with an error.
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    /// The contracts directory does not hold valid contracts.
    #[error("the contracts: {0}")]
    Contracts(#[from] ContractError),
}

/// What an at-least-once loop's buffers and waits are, beside its flags.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Messages of one partition queued for its handler; past them the
    /// loop holds a fetch's bytes before it pauses the partition (see
    /// `sluice_kafka::ConsumerLoop`). Set when a full queue paused the
    /// partition at once: at 16, erp-sink on a backlog refetched every
    /// 16–32 messages (1 142, 1 808, 1 706 commands/s in its benchmark
    /// against 2 194, 2 093, 2 317 at 256).
    pub partition_buffer: usize,
    /// How long a partition stays paused before it is tried again.
    pub pause_backoff: Duration,
    /// How long handlers may finish after shutdown is asked for.
    pub shutdown_grace: Duration,
    /// Longest a revoke waits for the revoked partitions' batches in hand.
    /// The loop does not see a SIGTERM meanwhile: with `shutdown_grace` it
    /// leaves the final commit and telemetry's flush 5 s of Kubernetes' 30 s
    /// before SIGKILL.
    pub revoke_wait: Duration,
    /// The limiter of the API quota the replicas share: each paces it to
    /// the share of the partitions it owns.
    pub quota: Option<Arc<RateLimiter>>,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            partition_buffer: 256,
            pause_backoff: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(20),
            revoke_wait: Duration::from_secs(5),
            quota: None,
        }
    }
}

/// A consumer service whose runtime runs: build its handler, then consume.
#[derive(Debug)]
pub struct Service<D: Defaults> {
    args: ConsumerArgs<D>,
    kafka: KafkaConfig,
    registry: SrSettings,
    contracts: Arc<Catalog>,
    codec: Arc<AvroCodec>,
    runtime: ServiceRuntime,
}

impl<D: Defaults> Service<D> {
    /// Starts telemetry and the health server; `/readyz` checks Kafka, the
    /// registry and `checks`.
    pub async fn start(
        args: &ConsumerArgs<D>,
        checks: Vec<Arc<dyn ReadinessCheck>>,
    ) -> Result<Self, ServiceError> {
        let kafka = KafkaConfig::from_args(&args.kafka)?;
        let registry = registry_settings(&args.registry)?;
        let contracts = Arc::new(args.contracts.catalog()?);
        let mut all = kafka_and_registry(&kafka, &registry)?;
        all.extend(checks);
        let runtime = ServiceRuntime::start(D::SERVICE, &args.runtime, all).await?;
        Ok(Self {
            codec: Arc::new(
                AvroCodec::new(registry.clone()).with_contracts(Arc::clone(&contracts)),
            ),
            args: args.clone(),
            kafka,
            registry,
            contracts,
            runtime,
        })
    }

    /// How the service reaches Kafka.
    pub fn kafka(&self) -> &KafkaConfig {
        &self.kafka
    }

    /// A codec of its own, for a handler that owns one; it writes with the
    /// deployment's contracts.
    pub fn codec(&self) -> AvroCodec {
        AvroCodec::new(self.registry.clone()).with_contracts(Arc::clone(&self.contracts))
    }

    /// The runtime: shutdown signal, start-up preparation.
    pub fn runtime(&self) -> &ServiceRuntime {
        &self.runtime
    }

    /// A publisher of answers to the commands the service handles, owed
    /// to its consumer loop.
    pub fn replies(&self, topic: impl Into<String>) -> Result<ReplyPublisher, ServiceError> {
        Ok(ReplyPublisher::new(
            &self.kafka,
            Arc::clone(&self.codec),
            topic,
        )?)
    }

    /// The audit trail of what the service does outside, as this instance.
    pub fn audit_log(&self, args: &AuditArgs) -> Result<AuditLog, ServiceError> {
        Ok(AuditLog::new(
            self.replies(args.audit_topic.clone())?,
            D::SERVICE,
            sluice_config::instance_actor(D::SERVICE),
        ))
    }

    fn dead_letters(&self) -> Result<DeadLetterPublisher, ServiceError> {
        Ok(DeadLetterPublisher::new(
            idempotent_producer(&self.kafka)?,
            Arc::clone(&self.codec),
            self.args.dlq_topic.clone(),
            D::SERVICE,
            env!("CARGO_PKG_VERSION"),
        ))
    }

    /// Runs `handler` over `topics`, at least once, until shutdown is asked for.
    pub async fn consume<H: Handler>(
        &self,
        topics: Vec<String>,
        retry: &RetryArgs<D>,
        tuning: Tuning,
        handler: H,
    ) -> Result<(), ServiceError> {
        let settings = ConsumerSettings {
            group_id: self.args.group_id.clone(),
            topics,
            partition_buffer: tuning.partition_buffer.max(self.args.max_batch),
            max_concurrent: retry.max_concurrent,
            max_batch: self.args.max_batch,
            batch_linger: self.args.batch_linger(),
            retry: retry.policy(),
            pause_backoff: tuning.pause_backoff,
            shutdown_grace: tuning.shutdown_grace,
            revoke_wait: tuning.revoke_wait,
            stall_after: self.args.partition_stall_after,
        };
        tracing::info!(topics = ?settings.topics, group = settings.group_id, "consuming");
        let mut run = ConsumerLoop::new(&self.kafka, settings, handler, self.dead_letters()?)?;
        if let Some(limiter) = tuning.quota {
            run = run.sharing(limiter);
        }
        run.run(self.runtime.shutdown_requested()).await?;
        Ok(())
    }

    /// Runs `handler` as [`consume`](Self::consume) does, then stops the
    /// service; the loop's failure, if any, is the one returned.
    pub async fn serve<H: Handler>(
        self,
        topics: Vec<String>,
        retry: &RetryArgs<D>,
        tuning: Tuning,
        handler: H,
    ) -> Result<(), ServiceError> {
        let consumed = self.consume(topics, retry, tuning, handler).await;
        let stopped = self.stop().await;
        consumed?;
        stopped
    }

    /// Runs `transformer` over `topics` in transactions of
    /// `transactional_id`, exactly once, until shutdown is asked for. What
    /// fails once fails again, so nothing is retried; a dependency that is
    /// away holds the partition (a pause) instead.
    pub async fn transform<T: Transformer>(
        &self,
        topics: Vec<String>,
        transactional_id: String,
        transformer: T,
    ) -> Result<(), ServiceError> {
        let settings = TransactionalSettings {
            group_id: self.args.group_id.clone(),
            topics,
            transactional_id,
            max_batch: self.args.max_batch,
            batch_linger: self.args.batch_linger(),
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
            stall_after: self.args.partition_stall_after,
        };
        tracing::info!(topics = ?settings.topics, transactional_id = settings.transactional_id, "transforming");
        TransactionalLoop::new(&self.kafka, settings, transformer, &self.dead_letters()?)?
            .run(self.runtime.shutdown_requested())
            .await?;
        Ok(())
    }

    /// Resolves once shutdown is asked for.
    pub fn shutdown_requested(&self) -> impl Future<Output = ()> + Send + 'static {
        self.runtime.shutdown_requested()
    }

    /// Flushes telemetry and stops the health server; `Err` when the
    /// service stopped because it could not go on.
    pub async fn stop(self) -> Result<(), ServiceError> {
        Ok(self.runtime.stop().await?)
    }
}
