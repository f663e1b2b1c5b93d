//! `sluice-provision`: creates Sluice's topics and registers its schemas.
//!
//! Every deployment path runs it: `make stack-up` for the local stack, the
//! provisioning service of docker compose, and a Helm pre-install/pre-upgrade
//! hook Job. Safe to run again and again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use sluice_contracts::Catalog;
use sluice_provision::{
    RegistryClient, RegistryConfig, Replication, SchemaOutcome, TopicOutcome, ensure_topics,
};

/// Creates Sluice's Kafka topics and registers their Avro schemas, refusing
/// any schema change that breaks BACKWARD compatibility.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Kafka bootstrap servers (host:port, comma separated).
    #[arg(
        long,
        env = "SLUICE_KAFKA_BOOTSTRAP",
        global = true,
        default_value = "127.0.0.1:9092"
    )]
    bootstrap_servers: String,

    /// Extra librdkafka client properties, e.g. security.protocol=SASL_SSL,
    /// sasl.mechanism=SCRAM-SHA-512 (repeatable; comma separated in the env var).
    #[arg(long = "kafka-property", env = "SLUICE_KAFKA_PROPERTIES", value_delimiter = ',', global = true, value_parser = parse_property)]
    kafka_properties: Vec<(String, String)>,

    /// Base URL of the Confluent-compatible schema registry API.
    #[arg(
        long,
        env = "SLUICE_SCHEMA_REGISTRY_URL",
        global = true,
        default_value = "http://127.0.0.1:8081"
    )]
    schema_registry_url: String,

    /// Basic-auth user for the registry.
    #[arg(long, env = "SLUICE_SCHEMA_REGISTRY_USER", global = true)]
    schema_registry_user: Option<String>,

    /// Basic-auth password for the registry (prefer the env var; never logged).
    #[arg(
        long,
        env = "SLUICE_SCHEMA_REGISTRY_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    schema_registry_password: Option<String>,

    /// Read the contracts from this schemas/ folder instead of the ones built in.
    #[arg(long, env = "SLUICE_SCHEMAS_DIR", global = true)]
    schemas_dir: Option<PathBuf>,

    /// Timeout of each Kafka and registry request, in seconds.
    #[arg(
        long,
        env = "SLUICE_PROVISION_TIMEOUT_SECS",
        global = true,
        default_value_t = 30
    )]
    timeout_secs: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create missing topics and register changed schemas.
    Apply {
        /// Replication factor of created topics; -1 takes the broker's default.
        #[arg(long, env = "SLUICE_REPLICATION_FACTOR", default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i32,
    },
    /// Check every schema against the registry without changing anything.
    Check,
}

fn parse_property(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got {raw:?}")),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let catalog = match &cli.schemas_dir {
        Some(dir) => Catalog::from_dir(dir),
        None => Catalog::embedded(),
    }
    .context("loading the contracts")?;
    let timeout = Duration::from_secs(cli.timeout_secs);
    let registry = RegistryClient::new(RegistryConfig {
        url: cli.schema_registry_url.trim_end_matches('/').to_owned(),
        basic_auth: match (&cli.schema_registry_user, &cli.schema_registry_password) {
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            (None, None) => None,
            _ => bail!("--schema-registry-user and --schema-registry-password go together"),
        },
        timeout,
    })?;

    match cli.command {
        Command::Apply { replication_factor } => {
            let replication = match replication_factor {
                -1 => Replication::BrokerDefault,
                n if n >= 1 => Replication::Factor(n),
                n => bail!("--replication-factor must be -1 or at least 1, got {n}"),
            };
            let admin = Arc::new(admin_client(&cli.bootstrap_servers, &cli.kafka_properties)?);
            for (topic, outcome) in ensure_topics(admin, &catalog, replication, timeout).await? {
                match outcome {
                    TopicOutcome::Created => println!("topic   {topic}: created"),
                    TopicOutcome::Exists => println!("topic   {topic}: exists"),
                    TopicOutcome::PartitionDrift { declared, actual } => println!(
                        "topic   {topic}: exists with {actual} partitions, the topic map says {declared}; left as is"
                    ),
                }
            }
            for topic in catalog.topics() {
                let subject = topic.value_subject();
                let outcome = registry
                    .ensure_schema(
                        &subject,
                        topic.value_schema_json(),
                        &topic.spec().value_schema,
                    )
                    .await?;
                match outcome {
                    SchemaOutcome::Unchanged { id } => {
                        println!("subject {subject}: unchanged (id {id})")
                    }
                    SchemaOutcome::Registered { id } => {
                        println!("subject {subject}: registered (id {id})")
                    }
                }
            }
        }
        Command::Check => {
            for topic in catalog.topics() {
                let subject = topic.value_subject();
                registry
                    .check_schema(
                        &subject,
                        topic.value_schema_json(),
                        &topic.spec().value_schema,
                    )
                    .await?;
                println!("subject {subject}: compatible");
            }
        }
    }
    Ok(())
}

fn admin_client(
    bootstrap: &str,
    properties: &[(String, String)],
) -> Result<AdminClient<DefaultClientContext>> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (key, value) in properties {
        config.set(key, value);
    }
    config.create().context("creating the Kafka admin client")
}
