//! Schema registry settings.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::ConfigError;
use crate::secret::{SecretArgs, parse_secret};

/// How a service reaches the Confluent-compatible schema registry.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Base URL of the registry's Confluent-compatible API.
    #[arg(
        id = "schema-registry-url",
        long = "schema-registry-url",
        env = "SLUICE_SCHEMA_REGISTRY_URL",
        value_name = "URL"
    )]
    pub url: String,

    /// Basic-auth user for the registry.
    #[arg(
        id = "schema-registry-user",
        long = "schema-registry-user",
        env = "SLUICE_SCHEMA_REGISTRY_USER",
        value_name = "USER"
    )]
    pub user: Option<String>,

    /// Basic-auth password (from the environment; see also --schema-registry-password-file).
    #[arg(id = "schema-registry-password", long = "schema-registry-password", env = "SLUICE_SCHEMA_REGISTRY_PASSWORD", value_name = "PASSWORD", hide_env_values = true, value_parser = parse_secret)]
    pub password: Option<SecretString>,

    /// File holding the registry password.
    #[arg(
        id = "schema-registry-password-file",
        long = "schema-registry-password-file",
        env = "SLUICE_SCHEMA_REGISTRY_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub password_file: Option<PathBuf>,

    /// PEM file of the CA that signed the registry's certificate, trusted
    /// besides the system's CAs (an https:// URL with a private CA).
    #[arg(
        id = "schema-registry-ca-file",
        long = "schema-registry-ca-file",
        env = "SLUICE_SCHEMA_REGISTRY_CA_FILE",
        value_name = "FILE"
    )]
    pub ca_file: Option<PathBuf>,

    /// Timeout of each registry request, in seconds.
    #[arg(
        id = "schema-registry-timeout-secs",
        long = "schema-registry-timeout-secs",
        env = "SLUICE_SCHEMA_REGISTRY_TIMEOUT_SECS",
        value_name = "SECS",
        default_value_t = 30
    )]
    pub timeout_secs: u64,
}

impl RegistryArgs {
    /// The base URL without a trailing slash, after checking it is HTTP(S).
    pub fn base_url(&self) -> Result<String, ConfigError> {
        let url = self.url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                setting: "schema-registry-url",
                reason: format!("{url:?} is not an http:// or https:// URL"),
            });
        }
        Ok(url.to_owned())
    }

    /// The basic-auth user and password, when a user is set.
    pub fn basic_auth(&self) -> Result<Option<(String, SecretString)>, ConfigError> {
        let password = SecretArgs {
            value: self.password.clone(),
            file: self.password_file.clone(),
        }
        .resolve("schema-registry-password")?;
        match (&self.user, password) {
            (Some(user), Some(password)) => Ok(Some((user.clone(), password))),
            (None, None) => Ok(None),
            _ => Err(ConfigError::Invalid {
                setting: "schema-registry-user",
                reason: "the registry user and password go together".into(),
            }),
        }
    }

    /// The PEM of the CA to trust, when a file names one.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        self.ca_file
            .as_ref()
            .map(|path| {
                std::fs::read(path).map_err(|err| ConfigError::Invalid {
                    setting: "schema-registry-ca-file",
                    reason: format!("cannot read {}: {err}", path.display()),
                })
            })
            .transpose()
    }

    /// Timeout of each request.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}
