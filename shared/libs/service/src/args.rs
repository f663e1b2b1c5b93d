//! The flags consumer services share. Per-service defaults come from a
//! [`Defaults`] type, so `--help` shows each service's own.

use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::time::Duration;

use sluice_config::{AuditArgs, ContractsArgs, KafkaArgs, RegistryArgs};
use sluice_resilience::{
    BreakerConfig, CircuitBreaker, FailureRate, InvalidConfig, LimiterConfig, RateLimiter,
    RetryPolicy,
};
use sluice_runtime::RuntimeArgs;

/// A service's name and the defaults of its shared flags.
pub trait Defaults: Clone + Send + Sync + 'static {
    /// Its name: in logs, metrics and dead letters.
    const SERVICE: &'static str;
    /// Consumer group shared by its replicas.
    const GROUP_ID: &'static str;
    /// Where what it cannot handle goes.
    const DLQ_TOPIC: &'static str;
    /// Most messages of one partition taken at once.
    const MAX_BATCH: usize = 1;
    /// How long a batch that is not full waits for more, in ms.
    const BATCH_LINGER_MS: u64 = 0;
    /// Retries of a retryable failure before the message is dead-lettered.
    const MAX_RETRIES: u32 = 5;
    /// Delay before the first retry, in ms (doubling, 20 % jitter).
    const RETRY_INITIAL_MS: u64 = 1_000;
    /// Longest delay between retries, in ms.
    const RETRY_MAX_MS: u64 = 30_000;
    /// Lanes: partitions (erp-sink: references) handled at once.
    const MAX_CONCURRENT: usize = 4;
    /// Upstream calls per second.
    const REQUESTS_PER_SECOND: f64 = 5.0;
    /// Upstream calls that may go at once after a quiet spell.
    const BURST: u32 = 1;
    /// Consecutive failed calls that open the breaker.
    const BREAKER_FAILURES: u32 = 5;
    /// Fraction of recent calls that, failed, opens the breaker: a write
    /// that fails after a read that passes never makes failures in a row.
    const BREAKER_FAILURE_RATE: f64 = 0.5;
    /// Seconds the breaker stays open before a trial call.
    const BREAKER_OPEN_SECS: u64 = 30;
    /// Seconds an upstream call may take.
    const CALL_TIMEOUT_SECS: u64 = 30;
}

/// A sink's topics: what it applies, and where its answers go.
pub trait SinkDefaults: Defaults {
    /// Environment variable of the topic it applies.
    const TOPIC_ENV: &'static str;
    /// The topic it applies.
    const TOPIC: &'static str;
    /// Environment variable of the topic of its answers.
    const RESULTS_TOPIC_ENV: &'static str;
    /// The topic of its answers.
    const RESULTS_TOPIC: &'static str;
}

/// What every sink has: the topic it applies, where its answers and its
/// audit trail go, how it treats its upstream, how it retries, and the
/// consumer's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs<D: SinkDefaults> {
    /// Topic of the commands it applies.
    #[arg(long, env = D::TOPIC_ENV, default_value = D::TOPIC)]
    pub topic: String,
    /// Topic of its answers to the commands it applies.
    #[arg(long, env = D::RESULTS_TOPIC_ENV, default_value = D::RESULTS_TOPIC)]
    pub results_topic: String,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub audit: AuditArgs,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub upstream: UpstreamArgs<D>,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub retry: RetryArgs<D>,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub consumer: ConsumerArgs<D>,
}

/// What every consumer service has: its group, its dead letters, its
/// batches, and how it reaches Kafka, the registry and its operators.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumerArgs<D: Defaults> {
    /// Consumer group shared by the service's replicas.
    #[arg(long, env = "SLUICE_GROUP_ID", default_value = D::GROUP_ID)]
    pub group_id: String,
    /// Where messages that cannot be handled go.
    #[arg(long, env = "SLUICE_DLQ_TOPIC", default_value = D::DLQ_TOPIC)]
    pub dlq_topic: String,
    /// Most messages of one partition taken at once (sheets-sink writes them
    /// in one request; erp-sink applies their references at once).
    #[arg(long, env = "SLUICE_MAX_BATCH", default_value_t = D::MAX_BATCH)]
    pub max_batch: usize,
    /// Milliseconds a batch that is not full waits for more messages.
    #[arg(long, env = "SLUICE_BATCH_LINGER_MS", default_value_t = D::BATCH_LINGER_MS)]
    pub batch_linger_ms: u64,
    /// How long a partition with messages waiting may stay at one offset
    /// before sluice_partition_stalled names it (e.g. 90s, 5m).
    #[arg(
        long,
        env = "SLUICE_PARTITION_STALL_AFTER",
        default_value = "5m",
        value_parser = humantime::parse_duration
    )]
    pub partition_stall_after: Duration,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub contracts: ContractsArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub runtime: RuntimeArgs,
    #[arg(skip)]
    #[allow(missing_docs)]
    pub defaults: PhantomData<D>,
}

impl<D: Defaults> ConsumerArgs<D> {
    /// How long a batch lingers.
    pub fn batch_linger(&self) -> Duration {
        Duration::from_millis(self.batch_linger_ms)
    }
}

/// How an at-least-once service retries a message and how many partitions
/// it handles at once.
#[derive(Debug, Clone, clap::Args)]
pub struct RetryArgs<D: Defaults> {
    /// Retries of a retryable failure (5xx, timeouts) before the message is dead-lettered.
    #[arg(long, env = "SLUICE_MAX_RETRIES", default_value_t = D::MAX_RETRIES)]
    pub max_retries: u32,
    /// Milliseconds before the first retry (doubling, 20 % jitter).
    #[arg(long, env = "SLUICE_RETRY_INITIAL_MS", default_value_t = D::RETRY_INITIAL_MS)]
    pub retry_initial_ms: u64,
    /// Longest wait between retries, in milliseconds.
    #[arg(long, env = "SLUICE_RETRY_MAX_MS", default_value_t = D::RETRY_MAX_MS)]
    pub retry_max_ms: u64,
    /// Lanes: partitions handled at once, each in order (erp-sink: commands
    /// at once, each reference's in order).
    #[arg(long, env = "SLUICE_MAX_CONCURRENT", default_value_t = D::MAX_CONCURRENT)]
    pub max_concurrent: usize,
    #[arg(skip)]
    #[allow(missing_docs)]
    pub defaults: PhantomData<D>,
}

impl<D: Defaults> RetryArgs<D> {
    /// The retry policy these flags describe.
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            initial_delay: Duration::from_millis(self.retry_initial_ms),
            max_delay: Duration::from_millis(self.retry_max_ms),
            multiplier: 2.0,
            jitter: 0.2,
            max_elapsed: None,
        }
    }
}

/// How a sink treats its upstream API: its pace, its breaker, its timeout.
#[derive(Debug, Clone, clap::Args)]
pub struct UpstreamArgs<D: Defaults> {
    /// API calls per second (the upstream's quota, with room to spare).
    #[arg(long, env = "SLUICE_REQUESTS_PER_SECOND", default_value_t = D::REQUESTS_PER_SECOND)]
    pub requests_per_second: f64,
    /// Calls that may go at once after a quiet spell.
    #[arg(long, env = "SLUICE_BURST", default_value_t = nonzero(D::BURST))]
    pub burst: NonZeroU32,
    /// Consecutive failed calls that open the breaker (0: only the rate rule).
    #[arg(long, env = "SLUICE_BREAKER_FAILURES", default_value_t = D::BREAKER_FAILURES)]
    pub breaker_failures: u32,
    /// Fraction of the last --breaker-window calls that, failed, opens the
    /// breaker (0: only the consecutive-failures rule).
    #[arg(long, env = "SLUICE_BREAKER_FAILURE_RATE", default_value_t = D::BREAKER_FAILURE_RATE)]
    pub breaker_failure_rate: f64,
    /// Calls the failure rate is taken over (and needed before it is judged).
    #[arg(long, env = "SLUICE_BREAKER_WINDOW", default_value_t = 20)]
    pub breaker_window: u32,
    /// Milliseconds after which a call counts as failed even when it succeeds.
    #[arg(long, env = "SLUICE_BREAKER_SLOW_CALL_MS")]
    pub breaker_slow_call_ms: Option<u64>,
    /// Seconds the breaker stays open before trial calls.
    #[arg(long, env = "SLUICE_BREAKER_OPEN_SECS", default_value_t = D::BREAKER_OPEN_SECS)]
    pub breaker_open_secs: u64,
    /// Trial calls let through at once while half-open.
    #[arg(long, env = "SLUICE_BREAKER_TRIAL_CALLS", default_value_t = 1)]
    pub breaker_trial_calls: u32,
    /// Successful trial calls that close the breaker again.
    #[arg(long, env = "SLUICE_BREAKER_SUCCESSES", default_value_t = 2)]
    pub breaker_successes: u32,
    /// Seconds an API call may take.
    #[arg(long, env = "SLUICE_CALL_TIMEOUT_SECS", default_value_t = D::CALL_TIMEOUT_SECS)]
    pub call_timeout_secs: u64,
    /// The longest pause a `Retry-After` from the API may impose, in
    /// seconds: a longer one (a day, a date in 9999) is cut to this.
    #[arg(
        long,
        env = "SLUICE_MAX_RETRY_AFTER_SECS",
        default_value_t = sluice_resilience::MAX_RETRY_AFTER.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_retry_after_secs: u64,
    #[arg(skip)]
    #[allow(missing_docs)]
    pub defaults: PhantomData<D>,
}

impl<D: Defaults> UpstreamArgs<D> {
    /// The token bucket pacing calls to `name`.
    pub fn limiter(&self, name: &str) -> Result<RateLimiter, InvalidConfig> {
        let limiter = RateLimiter::new(
            name,
            LimiterConfig {
                capacity: self.burst,
                refill_per_second: self.requests_per_second,
            },
        )?;
        Ok(limiter.with_max_wait(Duration::from_secs(self.max_retry_after_secs)))
    }

    /// The breaker guarding calls to `name`.
    pub fn breaker(&self, name: &str) -> Result<CircuitBreaker, InvalidConfig> {
        CircuitBreaker::new(
            name,
            BreakerConfig {
                failure_threshold: self.breaker_failures,
                failure_rate: (self.breaker_failure_rate > 0.0).then_some(FailureRate {
                    threshold: self.breaker_failure_rate,
                    window: self.breaker_window,
                    minimum_calls: self.breaker_window,
                }),
                slow_call: self.breaker_slow_call_ms.map(Duration::from_millis),
                open_wait: Duration::from_secs(self.breaker_open_secs),
                half_open_permits: self.breaker_trial_calls,
                success_threshold: self.breaker_successes,
            },
        )
    }

    /// An HTTP client whose calls time out as configured.
    pub fn http(&self) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(self.call_timeout_secs))
            .build()
    }
}

/// `D::BURST` as the flag's type; 0 is taken as 1.
fn nonzero(burst: u32) -> NonZeroU32 {
    NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN)
}
