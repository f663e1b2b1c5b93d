//! ingest's own settings (Kafka, registry and runtime ones are shared).

use std::net::SocketAddr;
use std::time::Duration;

/// How the events API listens, authenticates and routes.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Address of the events API.
    #[arg(
        id = "listen",
        long = "listen",
        env = "SLUICE_INGEST_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// SHA-256 (hex) of each accepted bearer token, comma separated: the
    /// tokens themselves never sit in configuration.
    #[arg(
        id = "token-sha256",
        long = "token-sha256",
        env = "SLUICE_INGEST_TOKEN_SHA256",
        value_delimiter = ',',
        required = true
    )]
    pub token_sha256: Vec<String>,

    /// TOML file describing the signed webhook senders (see `webhook.rs`).
    #[arg(
        id = "webhooks",
        long = "webhooks",
        env = "SLUICE_INGEST_WEBHOOKS",
        value_name = "FILE"
    )]
    pub webhooks: Option<std::path::PathBuf>,

    /// Largest accepted request body, in bytes.
    #[arg(
        id = "max-body-bytes",
        long = "max-body-bytes",
        env = "SLUICE_INGEST_MAX_BODY_BYTES",
        default_value_t = 1_048_576
    )]
    pub max_body_bytes: usize,

    /// How long to wait for Kafka's acknowledgement before answering 503.
    #[arg(
        id = "ack-timeout-secs",
        long = "ack-timeout-secs",
        env = "SLUICE_INGEST_ACK_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub ack_timeout_secs: u64,

    /// Prefix of the `transactional.id`s of the batch producers
    /// (`<prefix>-<n>`): unique per replica and stable across its restarts,
    /// so a restart fences what its predecessor left open. Default
    /// `ingest-<hostname>` (a pod's name on Kubernetes).
    #[arg(
        id = "transactional-id-prefix",
        long = "transactional-id-prefix",
        env = "SLUICE_INGEST_TRANSACTIONAL_ID_PREFIX"
    )]
    pub transactional_id_prefix: Option<String>,

    /// Batches handled at once, each in its own Kafka transaction.
    #[arg(
        id = "max-transactions",
        long = "max-transactions",
        env = "SLUICE_INGEST_MAX_TRANSACTIONS",
        default_value_t = 4,
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    pub max_transactions: u16,

    /// How long the answer to an Idempotency-Key is kept for retries.
    #[arg(
        id = "idempotency-key-hours",
        long = "idempotency-key-hours",
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
