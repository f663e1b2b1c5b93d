//! Kafka connection settings.

use std::path::PathBuf;

use secrecy::SecretString;

use crate::ConfigError;
use crate::secret::{SecretArgs, parse_secret};

/// librdkafka properties that hold secrets: they come from their own
/// environment variables or files, never from `--kafka-property`, which
/// shows in process listings. Each with the setting that gives it.
const SECRET_PROPERTIES: [(&str, &str); 4] = [
    ("sasl.password", "kafka-sasl-password"),
    ("ssl.key.password", "kafka-ssl-key-password"),
    ("ssl.keystore.password", "kafka-ssl-keystore-password"),
    (
        "sasl.oauthbearer.client.secret",
        "kafka-oauthbearer-client-secret",
    ),
];

/// The other properties librdkafka holds secret, and how to give each
/// instead.
const SECRETS_GIVEN_OTHERWISE: [(&str, &str); 5] = [
    (
        "sasl.oauthbearer.client.credentials.client.secret",
        "SLUICE_KAFKA_OAUTHBEARER_CLIENT_SECRET or --kafka-oauthbearer-client-secret-file",
    ),
    ("ssl.key.pem", "a file, ssl.key.location"),
    ("ssl_key", "a file, ssl.key.location"),
    (
        "sasl.oauthbearer.assertion.private.key.pem",
        "a file, sasl.oauthbearer.assertion.private.key.file",
    ),
    (
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "an unencrypted key file readable only by the service, sasl.oauthbearer.assertion.private.key.file",
    ),
];

/// Properties whose only safe values are the ones Sluice sets (or none):
/// each service's guarantee that nothing accepted is lost or applied twice
/// rests on them, so a `--kafka-property` that weakens one is refused
/// rather than taken. The value allowed, if any, and why.
const SAFETY_PROPERTIES: [(&str, &[&str], &str); 8] = [
    (
        "acks",
        &["all", "-1"],
        "producers wait for every in-sync replica",
    ),
    (
        "request.required.acks",
        &["all", "-1"],
        "producers wait for every in-sync replica",
    ),
    (
        "enable.idempotence",
        &["true"],
        "a retried send must not write twice",
    ),
    (
        "isolation.level",
        &["read_committed"],
        "records of aborted transactions must not be acted on",
    ),
    (
        "enable.auto.commit",
        &[],
        "consumers commit only what they have handled, when they have handled it",
    ),
    (
        "enable.auto.offset.store",
        &[],
        "consumers commit only what they have handled, when they have handled it",
    ),
    (
        "auto.offset.reset",
        &["earliest", "smallest", "beginning"],
        "a group without a committed offset must not skip the records already accepted",
    ),
    (
        "transactional.id",
        &[],
        "each producer's id is its own (--transactional-id, --transactional-id-prefix); \
         one given here would be shared, and producers sharing an id fence each other",
    ),
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
    #[arg(
        id = "kafka-property",
        long = "kafka-property",
        env = "SLUICE_KAFKA_PROPERTIES",
        hide_env_values = true,
        value_delimiter = ',',
        value_name = "KEY=VALUE",
        value_parser = parse_property
    )]
    pub properties: Vec<(String, String)>,

    /// SASL user name.
    #[arg(
        id = "kafka-sasl-username",
        long = "kafka-sasl-username",
        env = "SLUICE_KAFKA_SASL_USERNAME",
        value_name = "USER"
    )]
    pub sasl_username: Option<String>,

    /// SASL password (from the environment; see also --kafka-sasl-password-file).
    #[arg(id = "kafka-sasl-password", long = "kafka-sasl-password", env = "SLUICE_KAFKA_SASL_PASSWORD", value_name = "PASSWORD", hide_env_values = true, value_parser = parse_secret)]
    pub sasl_password: Option<SecretString>,

    /// File holding the SASL password.
    #[arg(
        id = "kafka-sasl-password-file",
        long = "kafka-sasl-password-file",
        env = "SLUICE_KAFKA_SASL_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub sasl_password_file: Option<PathBuf>,

    /// Password of the client's TLS private key, ssl.key.password (from the
    /// environment; see also --kafka-ssl-key-password-file).
    #[arg(id = "kafka-ssl-key-password", long = "kafka-ssl-key-password", env = "SLUICE_KAFKA_SSL_KEY_PASSWORD", value_name = "PASSWORD", hide_env_values = true, value_parser = parse_secret)]
    pub ssl_key_password: Option<SecretString>,

    /// File holding ssl.key.password.
    #[arg(
        id = "kafka-ssl-key-password-file",
        long = "kafka-ssl-key-password-file",
        env = "SLUICE_KAFKA_SSL_KEY_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub ssl_key_password_file: Option<PathBuf>,

    /// Password of the client's PKCS#12 keystore, ssl.keystore.password
    /// (from the environment; see also --kafka-ssl-keystore-password-file).
    #[arg(id = "kafka-ssl-keystore-password", long = "kafka-ssl-keystore-password", env = "SLUICE_KAFKA_SSL_KEYSTORE_PASSWORD", value_name = "PASSWORD", hide_env_values = true, value_parser = parse_secret)]
    pub ssl_keystore_password: Option<SecretString>,

    /// File holding ssl.keystore.password.
    #[arg(
        id = "kafka-ssl-keystore-password-file",
        long = "kafka-ssl-keystore-password-file",
        env = "SLUICE_KAFKA_SSL_KEYSTORE_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub ssl_keystore_password_file: Option<PathBuf>,

    /// OIDC client secret for SASL/OAUTHBEARER with
    /// sasl.oauthbearer.method=oidc, sasl.oauthbearer.client.secret (from
    /// the environment; see also --kafka-oauthbearer-client-secret-file).
    #[arg(id = "kafka-oauthbearer-client-secret", long = "kafka-oauthbearer-client-secret", env = "SLUICE_KAFKA_OAUTHBEARER_CLIENT_SECRET", value_name = "SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub oauthbearer_client_secret: Option<SecretString>,

    /// File holding sasl.oauthbearer.client.secret.
    #[arg(
        id = "kafka-oauthbearer-client-secret-file",
        long = "kafka-oauthbearer-client-secret-file",
        env = "SLUICE_KAFKA_OAUTHBEARER_CLIENT_SECRET_FILE",
        value_name = "FILE"
    )]
    pub oauthbearer_client_secret_file: Option<PathBuf>,
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
        for (key, value) in &self.properties {
            refuse(key, value)?;
        }
        let mut plain = self.properties.clone();
        if let Some(user) = &self.sasl_username {
            plain.push(("sasl.username".into(), user.clone()));
        }
        let mut secret = Vec::new();
        for ((property, setting), given) in SECRET_PROPERTIES.into_iter().zip(self.secrets()) {
            if let Some(value) = given.resolve(setting)? {
                secret.push((property.to_owned(), value));
            }
        }
        Ok(KafkaProperties { plain, secret })
    }

    /// The secrets as given, in the order of [`SECRET_PROPERTIES`].
    fn secrets(&self) -> [SecretArgs; 4] {
        let given = |value: &Option<SecretString>, file: &Option<PathBuf>| SecretArgs {
            value: value.clone(),
            file: file.clone(),
        };
        [
            given(&self.sasl_password, &self.sasl_password_file),
            given(&self.ssl_key_password, &self.ssl_key_password_file),
            given(
                &self.ssl_keystore_password,
                &self.ssl_keystore_password_file,
            ),
            given(
                &self.oauthbearer_client_secret,
                &self.oauthbearer_client_secret_file,
            ),
        ]
    }
}

/// Refuses a `--kafka-property` that holds a secret or weakens delivery.
fn refuse(key: &str, value: &str) -> Result<(), ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        setting: "kafka-property",
        reason,
    };
    if let Some((_, how)) = SECRETS_GIVEN_OTHERWISE
        .iter()
        .find(|(property, _)| *property == key)
    {
        return Err(invalid(format!(
            "{key} is a secret: give it as {how}, not on the command line"
        )));
    }
    if let Some((_, setting)) = SECRET_PROPERTIES
        .iter()
        .find(|(property, _)| *property == key)
    {
        let variable = setting.to_uppercase().replace('-', "_");
        return Err(invalid(format!(
            "{key} is a secret: give it with SLUICE_{variable} or --{setting}-file, not on the command line"
        )));
    }
    match SAFETY_PROPERTIES
        .iter()
        .find(|(property, ..)| *property == key)
    {
        Some((_, allowed, _)) if allowed.contains(&value.trim()) => Ok(()),
        Some((_, allowed, why)) => Err(invalid(match allowed.first() {
            Some(safe) => {
                format!("{key} cannot be {value:?}: Sluice sets it to {safe} because {why}")
            }
            None => format!("{key} cannot be set: Sluice manages it because {why}"),
        })),
        None => Ok(()),
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
