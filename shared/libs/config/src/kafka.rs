//! Kafka connection settings.

use std::path::PathBuf;

use secrecy::SecretString;

use crate::ConfigError;
use crate::secret::{SecretArgs, parse_secret};

/// librdkafka properties that hold secrets: they come from their own
/// environment variables or files, never from `--kafka-property`, which
/// shows in process listings.
const SECRET_PROPERTIES: [&str; 4] = [
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
];

/// Kafka client properties from the settings, secrets kept apart.
#[derive(Debug, Clone)]
pub struct KafkaProperties {
    /// Plain librdkafka properties.
    pub plain: Vec<(String, String)>,
    /// Properties holding secrets (the SASL password).
    pub secret: Vec<(String, SecretString)>,
}

/// How a service reaches Kafka.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, host:port, comma separated.
    #[arg(
        id = "kafka-bootstrap",
        long = "kafka-bootstrap",
        env = "SLUICE_KAFKA_BOOTSTRAP",
        value_name = "HOST:PORT"
    )]
    pub bootstrap: String,

    /// Further librdkafka properties as KEY=VALUE, repeatable (comma
    /// separated in the variable): security.protocol=SASL_SSL,
    /// sasl.mechanism=SCRAM-SHA-512, ssl.ca.location=..., tuning.
    #[arg(id = "kafka-property", long = "kafka-property", env = "SLUICE_KAFKA_PROPERTIES", value_delimiter = ',', value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,

    /// SASL user name.
    #[arg(
        id = "kafka-sasl-username",
        long = "kafka-sasl-username",
        env = "SLUICE_KAFKA_SASL_USERNAME"
    )]
    pub sasl_username: Option<String>,

    /// SASL password (from the environment; see also --kafka-sasl-password-file).
    #[arg(id = "kafka-sasl-password", long = "kafka-sasl-password", env = "SLUICE_KAFKA_SASL_PASSWORD", hide_env_values = true, value_parser = parse_secret)]
    pub sasl_password: Option<SecretString>,

    /// File holding the SASL password.
    #[arg(
        id = "kafka-sasl-password-file",
        long = "kafka-sasl-password-file",
        env = "SLUICE_KAFKA_SASL_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub sasl_password_file: Option<PathBuf>,
}

impl KafkaArgs {
    /// Checks the settings and returns the client properties, the SASL user
    /// and password included when set.
    pub fn resolve(&self) -> Result<KafkaProperties, ConfigError> {
        if self.bootstrap.trim().is_empty() {
            return Err(ConfigError::Invalid {
                setting: "kafka-bootstrap",
                reason: "is empty".into(),
            });
        }
        if let Some((key, _)) = self
            .properties
            .iter()
            .find(|(key, _)| SECRET_PROPERTIES.contains(&key.as_str()))
        {
            return Err(ConfigError::Invalid {
                setting: "kafka-property",
                reason: format!(
                    "{key} is a secret: give it with SLUICE_KAFKA_SASL_PASSWORD or --kafka-sasl-password-file, \
                     not on the command line"
                ),
            });
        }
        let mut plain = self.properties.clone();
        if let Some(user) = &self.sasl_username {
            plain.push(("sasl.username".into(), user.clone()));
        }
        let password = SecretArgs {
            value: self.sasl_password.clone(),
            file: self.sasl_password_file.clone(),
        }
        .resolve("kafka-sasl-password")?;
        let secrets = password
            .map(|p| vec![("sasl.password".to_owned(), p)])
            .unwrap_or_default();
        Ok(KafkaProperties {
            plain,
            secret: secrets,
        })
    }
}

fn parse_property(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got {raw:?}")),
    }
}
