//! Connection settings shared by producers and consumers.

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use secrecy::{ExposeSecret, SecretString};
use sluice_config::{ConfigError, KafkaArgs};

/// Where Kafka is and how to talk to it.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    bootstrap_servers: String,
    /// librdkafka properties passed through as they are: security and tuning.
    properties: Vec<(String, String)>,
    /// Properties holding secrets (the SASL password); redacted in `Debug`.
    secret_properties: Vec<(String, SecretString)>,
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
    /// Plain connection to `bootstrap_servers` (`host:port`, comma separated).
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            properties: Vec::new(),
            secret_properties: Vec::new(),
        }
    }

    /// The same, with one more librdkafka property.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// From a service's `--kafka-*` settings, secrets included.
    pub fn from_args(args: &KafkaArgs) -> Result<Self, ConfigError> {
        let properties = args.resolve()?;
        Ok(Self {
            bootstrap_servers: args.bootstrap.clone(),
            properties: properties.plain,
            secret_properties: properties.secret,
        })
    }

    /// The properties set explicitly (not the secret ones).
    pub fn properties(&self) -> &[(String, String)] {
        &self.properties
    }

    /// A librdkafka config: the bootstrap servers, `defaults`, then the
    /// explicit properties, which win, so an operator can override any
    /// default.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        for (key, value) in &self.secret_properties {
            config.set(key, value.expose_secret());
        }
        config
    }
}
