//! Connection settings shared by producers and consumers.

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;

/// Where Kafka is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port` comma separated.
    pub bootstrap_servers: String,
    /// Further librdkafka properties, passed through as they are: security
    /// (`security.protocol`, `sasl.mechanism`, `sasl.username`,
    /// `sasl.password`, `ssl.ca.location`, ...) and tuning.
    pub properties: Vec<(String, String)>,
}

/// A Kafka client could not be created.
#[derive(Debug, thiserror::Error)]
#[error("creating the Kafka {client}: {source}")]
pub struct KafkaSetupError {
    /// Which client.
    pub client: &'static str,
    /// librdkafka's complaint (a bad property names itself).
    pub source: KafkaError,
}

impl KafkaConfig {
    /// A librdkafka config with the bootstrap servers and the extra
    /// properties; the extras win, so an operator can override any default.
    pub(crate) fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}
