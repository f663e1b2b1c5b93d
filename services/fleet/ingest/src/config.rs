//! ingest's own settings (Kafka, registry and runtime ones are shared).

use std::net::SocketAddr;
use std::time::Duration;

/// How the events API listens, authenticates and routes.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Address of the events API.
    #[arg(long, env = "SLUICE_INGEST_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// SHA-256 (hex) of each accepted bearer token, comma separated: the
    /// tokens themselves never sit in configuration. A hash may be followed
    /// by `:` and what the token may post, `+` separated: an aggregate type
    /// (`orders`) or one of its event types (`orders.OrderPlaced`); without
    /// it, the token may post every event type a client may.
    #[arg(
        long,
        env = "SLUICE_INGEST_TOKEN_SHA256",
        value_delimiter = ',',
        required = true
    )]
    pub token_sha256: Vec<String>,

    /// TOML file describing the signed webhook senders (see `webhook.rs`).
    #[arg(long, env = "SLUICE_INGEST_WEBHOOKS", value_name = "FILE")]
    pub webhooks: Option<std::path::PathBuf>,

    /// Largest accepted request body, in bytes.
    #[arg(
        long,
        env = "SLUICE_INGEST_MAX_BODY_BYTES",
        default_value_t = 1_048_576
    )]
    pub max_body_bytes: usize,

    /// A connection must send a request's headers within this many seconds.
    #[arg(
        long,
        env = "SLUICE_INGEST_HEADER_READ_TIMEOUT_SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=300)
    )]
    pub header_read_timeout_secs: u64,

    /// A request's body must arrive within this many seconds, else 408.
    #[arg(
        long,
        env = "SLUICE_INGEST_BODY_TIMEOUT_SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=600)
    )]
    pub body_timeout_secs: u64,

    /// Open connections at most; more are closed at once.
    #[arg(
        long,
        env = "SLUICE_INGEST_MAX_CONNECTIONS",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: u32,

    /// Requests handled at once at most; more are answered 503 with Retry-After.
    #[arg(
        long,
        env = "SLUICE_INGEST_MAX_IN_FLIGHT",
        default_value_t = 256,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_in_flight: u32,

    /// Requests per second each token may send (a burst of twice that);
    /// beyond it, 429 with Retry-After.
    #[arg(
        long,
        env = "SLUICE_INGEST_REQUESTS_PER_SECOND_PER_TOKEN",
        default_value_t = 200.0
    )]
    pub requests_per_second_per_token: f64,

    /// Refused webhook deliveries without a valid signature recorded on the
    /// audit trail per second at most (a burst of twice that); the rest are
    /// counted (`sluice_ingest_refusals_unrecorded_total`) and the next
    /// record says how many: whoever has no valid signature decides how
    /// many it sends, and the trail is kept for a year.
    #[arg(
        long,
        env = "SLUICE_INGEST_AUDIT_REFUSED_PER_SECOND",
        default_value_t = 20.0
    )]
    pub audit_refused_per_second: f64,

    /// How long to wait for Kafka's acknowledgement before answering 503. A
    /// batch's commit whose outcome librdkafka reports open is waited for
    /// until Kafka decides it, without an upper bound. Batch transactions
    /// time out after twice this (at most 900 s, the broker's default
    /// transaction.max.timeout.ms).
    #[arg(
        long,
        env = "SLUICE_INGEST_ACK_TIMEOUT_SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=450)
    )]
    pub ack_timeout_secs: u64,

    /// Prefix of the `transactional.id`s of the batch producers
    /// (`<prefix>-<n>`): unique per replica and stable across its restarts,
    /// so a restart fences what its predecessor left open. Default
    /// `ingest-<hostname>` (a pod's name on Kubernetes).
    #[arg(long, env = "SLUICE_INGEST_TRANSACTIONAL_ID_PREFIX")]
    pub transactional_id_prefix: Option<String>,

    /// Batches handled at once, each in its own Kafka transaction.
    #[arg(
        long,
        env = "SLUICE_INGEST_MAX_TRANSACTIONS",
        default_value_t = 4,
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    pub max_transactions: u16,

    /// How long the answer to an Idempotency-Key is kept for retries.
    #[arg(
        long,
        env = "SLUICE_INGEST_IDEMPOTENCY_KEY_HOURS",
        default_value_t = 24,
        value_parser = clap::value_parser!(u64).range(1..=24 * 30)
    )]
    pub idempotency_key_hours: u64,
}

impl IngestArgs {
    /// The acknowledgement timeout.
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_secs(self.ack_timeout_secs)
    }

    /// The HTTP server's limits.
    pub fn server_limits(&self) -> crate::ServerLimits {
        crate::ServerLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            body_timeout: Duration::from_secs(self.body_timeout_secs),
            max_body_bytes: self.max_body_bytes,
            max_connections: self.max_connections as usize,
            max_in_flight: self.max_in_flight as usize,
        }
    }

    /// Each token's request budget.
    pub fn per_token_limit(&self) -> sluice_resilience::LimiterConfig {
        sluice_resilience::LimiterConfig::rate_with_burst(self.requests_per_second_per_token)
    }

    /// The audit trail's budget for refused webhook deliveries.
    pub fn refused_audit_limit(&self) -> sluice_resilience::LimiterConfig {
        sluice_resilience::LimiterConfig::rate_with_burst(self.audit_refused_per_second)
    }

    /// How long an Idempotency-Key's answer is kept.
    pub fn idempotency_key_lifetime(&self) -> Duration {
        Duration::from_secs(self.idempotency_key_hours * 3600)
    }

    /// The batch producers' `transactional.id` prefix.
    pub fn transactional_id_prefix(&self) -> String {
        self.transactional_id_prefix.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
                .map(|host| host.trim().to_owned())
                .filter(|host| !host.is_empty())
                .unwrap_or_else(|| "localhost".to_owned());
            format!("ingest-{host}")
        })
    }
}
