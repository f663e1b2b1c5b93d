//! Typed configuration for Sluice services.
//!
//! Every setting is a clap flag with an environment variable and a help
//! line, so `--help`, the README reference and the Helm values come from one
//! declaration. A TOML file (`--config FILE` or `SLUICE_CONFIG`) may set any
//! of them by its long flag name; a flag or environment variable still wins
//! over the file, and the file over the built-in default. Secrets come from
//! environment variables or files, are held as `SecretString`, and never
//! show in `--help` or in logs.

mod audit;
mod contracts;
mod database;
mod error;
mod file;
mod identifier;
mod kafka;
mod output;
mod registry;
mod routes;
mod secret;

pub use audit::{AuditArgs, instance_actor};
pub use contracts::ContractsArgs;
pub use database::{DatabaseArgs, DatabaseUrlArgs};
pub use error::ConfigError;
pub use file::{parse, parse_from};
pub use identifier::sql_identifier;
pub use kafka::{KafkaArgs, KafkaProperties};
pub use output::{Output, table};
pub use registry::RegistryArgs;
pub use routes::RouteArgs;
pub use secret::{SecretArgs, parse_secret};
