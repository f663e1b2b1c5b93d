use rdkafka::producer::FutureProducer;

use crate::{KafkaConfig, KafkaSetupError};

/// A producer whose acknowledged sends are on every in-sync replica and whose
/// internal retries never duplicate or reorder a partition's messages.
pub fn idempotent_producer(config: &KafkaConfig) -> Result<FutureProducer, KafkaSetupError> {
    config
        .client_config(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("compression.type", "lz4"),
            ("linger.ms", "5"),
        ])
        .create()
        .map_err(|source| KafkaSetupError {
            client: "producer",
            source,
        })
}
