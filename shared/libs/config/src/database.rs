//! Postgres settings.

use std::path::PathBuf;

use secrecy::SecretString;

use crate::ConfigError;
use crate::secret::{SecretArgs, parse_secret};

/// The Postgres URL, from the environment or a file (a mounted Kubernetes
/// Secret): it holds the password. Global, so a tool's subcommands take it
/// after their name too.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseUrlArgs {
    /// Postgres URL, postgres://user:password@host:port/database?sslmode=...
    /// (a secret: from the environment; see also --database-url-file).
    #[arg(id = "database-url", long = "database-url", env = "SLUICE_DATABASE_URL", value_name = "URL", hide_env_values = true, value_parser = parse_secret, global = true)]
    url: Option<SecretString>,

    /// File holding the Postgres URL.
    #[arg(
        id = "database-url-file",
        long = "database-url-file",
        env = "SLUICE_DATABASE_URL_FILE",
        value_name = "FILE",
        global = true
    )]
    url_file: Option<PathBuf>,
}

impl DatabaseUrlArgs {
    /// The URL, if one is given.
    pub fn resolve(&self) -> Result<Option<SecretString>, ConfigError> {
        SecretArgs {
            value: self.url.clone(),
            file: self.url_file.clone(),
        }
        .resolve("database-url")
    }

    /// The URL, which the caller cannot do without.
    pub fn required(&self) -> Result<SecretString, ConfigError> {
        self.resolve()?.ok_or(ConfigError::Invalid {
            setting: "database-url",
            reason: "is not set: give SLUICE_DATABASE_URL or --database-url-file".into(),
        })
    }
}

/// How a service reaches Postgres.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    #[command(flatten)]
    url: DatabaseUrlArgs,

    /// Most connections the service opens.
    #[arg(
        id = "database-max-connections",
        long = "database-max-connections",
        env = "SLUICE_DATABASE_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = 5
    )]
    pub max_connections: u32,
}

impl DatabaseArgs {
    /// The Postgres URL.
    pub fn url(&self) -> Result<SecretString, ConfigError> {
        self.url.required()
    }
}
