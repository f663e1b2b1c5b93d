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
}

impl IngestArgs {
    /// The acknowledgement timeout.
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_secs(self.ack_timeout_secs)
    }
}
