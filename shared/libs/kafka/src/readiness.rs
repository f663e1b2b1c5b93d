//! `/readyz` check: the broker answers a metadata request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use sluice_avro::RegistryReadiness;
use sluice_telemetry::ReadinessCheck;

use crate::{KafkaConfig, KafkaSetupError};

/// How long a service's readiness check waits for the broker: within the
/// 5 s the chart's readinessProbe waits for /readyz, so an unreachable or
/// untrusted broker is an answer ("not ready"), not a probe timeout.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(4);

/// What `/readyz` checks first in every service that reads or writes Avro
/// on Kafka: the cluster answers (within [`PROBE_TIMEOUT`]), and so does the
/// registry. A service adds its own (Postgres) after them.
pub fn kafka_and_registry(
    kafka: &KafkaConfig,
    registry: &SrSettings,
) -> Result<Vec<Arc<dyn ReadinessCheck>>, KafkaSetupError> {
    Ok(vec![
        Arc::new(KafkaReadiness::new(kafka, PROBE_TIMEOUT)?),
        Arc::new(RegistryReadiness::new(registry.clone())),
    ])
}

/// Ready when the cluster answers a metadata request within the timeout.
pub struct KafkaReadiness {
    client: Arc<BaseConsumer>,
    timeout: Duration,
}

impl KafkaReadiness {
    /// A check against the cluster of `config`.
    pub fn new(config: &KafkaConfig, timeout: Duration) -> Result<Self, KafkaSetupError> {
        let client = config
            .client_config(&[])
            .create()
            .map_err(|source| KafkaSetupError {
                client: "readiness client",
                source,
            })?;
        Ok(Self {
            client: Arc::new(client),
            timeout,
        })
    }
}

impl ReadinessCheck for KafkaReadiness {
    fn name(&self) -> &str {
        "kafka"
    }

    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        let client = Arc::clone(&self.client);
        let timeout = self.timeout;
        Box::pin(async move {
            // librdkafka's metadata call blocks; keep it off the async workers.
            tokio::task::spawn_blocking(move || client.fetch_metadata(None, timeout).map(drop))
                .await
                .map_err(|err| err.to_string())?
                .map_err(|err| err.to_string())
        })
    }
}
