//! Postgres settings.

use secrecy::SecretString;

use crate::secret::parse_secret;

/// How a service reaches Postgres.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Postgres URL, postgres://user:password@host:port/database (a secret:
    /// it holds the password).
    #[arg(id = "database-url", long = "database-url", env = "SLUICE_DATABASE_URL", hide_env_values = true, value_parser = parse_secret)]
    pub url: SecretString,

    /// Most connections the service opens.
    #[arg(
        id = "database-max-connections",
        long = "database-max-connections",
        env = "SLUICE_DATABASE_MAX_CONNECTIONS",
        default_value_t = 5
    )]
    pub max_connections: u32,
}
