use sluice_telemetry::liveness::{LivenessContext, WatchedProducer};

use crate::{KafkaConfig, KafkaSetupError};

/// A producer whose acknowledged sends are on every in-sync replica and whose
/// internal retries never duplicate or reorder a partition's messages; a
/// fatal error marks the process dead ([`sluice_telemetry::liveness`]).
pub fn idempotent_producer(config: &KafkaConfig) -> Result<WatchedProducer, KafkaSetupError> {
    config
        .client_config(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("compression.type", "lz4"),
            ("linger.ms", "5"),
        ])
        .create_with_context(LivenessContext)
        .map_err(|source| KafkaSetupError {
            client: "producer",
            source,
        })
}
