//! `sluice-provision`: creates Sluice's topics and registers its schemas.
//!
//! Every deployment path runs it: `make stack-up` for the local stack, the
//! provisioning service of docker compose, and a Helm pre-install/pre-upgrade
//! hook Job. Safe to run again and again.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use sluice_config::{ContractsArgs, KafkaArgs, RegistryArgs};
use sluice_kafka::KafkaConfig;
use sluice_provision::{
    Compatibility, RegistryClient, RegistryConfig, Replication, SchemaOutcome, TopicOutcome,
    ensure_topics,
};

/// Creates Sluice's Kafka topics and registers their Avro schemas under each
/// subject's compatibility mode, refusing any schema change the mode forbids.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    #[command(flatten)]
    kafka: KafkaArgs,

    #[command(flatten)]
    registry: RegistryArgs,

    #[command(flatten)]
    contracts: ContractsArgs,

    /// Compatibility mode of every subject: set by `apply`, checked by both.
    #[arg(
        long,
        env = "SLUICE_COMPATIBILITY",
        global = true,
        value_enum,
        default_value_t = Compatibility::Backward
    )]
    compatibility: Compatibility,

    /// Timeout of each Kafka request, in seconds.
    #[arg(
        long,
        env = "SLUICE_PROVISION_TIMEOUT_SECS",
        global = true,
        default_value_t = 30
    )]
    timeout_secs: u64,

    /// Log format: pretty (for a terminal) or json (a Job's logs, as the
    /// services write theirs).
    #[arg(
        long,
        env = "SLUICE_LOG_FORMAT",
        global = true,
        default_value = "pretty",
        value_parser = ["pretty", "json"]
    )]
    log_format: String,

    /// Log filter in RUST_LOG syntax, e.g. info,rdkafka=warn.
    #[arg(long, env = "SLUICE_LOG", global = true, default_value = "warn")]
    log_filter: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create missing topics and register changed schemas.
    Apply {
        /// Replication factor of created topics; -1 takes the broker's default.
        #[arg(
            long,
            env = "SLUICE_REPLICATION_FACTOR",
            default_value_t = -1,
            allow_negative_numbers = true
        )]
        replication_factor: i32,
        /// min.insync.replicas of created topics: replicas that must hold a
        /// write before it is acknowledged, at most --replication-factor.
        /// Default: a majority of the replicas but not all (3 → 2); the
        /// broker's when --replication-factor is -1.
        #[arg(long, env = "SLUICE_MIN_INSYNC_REPLICAS")]
        min_insync_replicas: Option<i32>,
    },
    /// Tell whether the contracts can be rolled out over what is
    /// registered, under the compatibility mode, without changing anything.
    Check,
}

#[tokio::main]
async fn main() -> Result<()> {
    // Renamed: a deployment still setting the old variable would otherwise
    // provision the built-in contracts without a word.
    if std::env::var_os("SLUICE_SCHEMAS_DIR").is_some() {
        bail!("SLUICE_SCHEMAS_DIR is now SLUICE_CONTRACTS_DIR (--contracts-dir): rename it");
    }
    let cli: Cli = sluice_config::parse().context("reading the configuration")?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log_filter)?)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let catalog = cli.contracts.catalog().context("loading the contracts")?;
    let registry = RegistryClient::new(RegistryConfig {
        url: cli.registry.base_url()?,
        basic_auth: cli.registry.basic_auth()?,
        timeout: cli.registry.timeout(),
        ca_pem: cli.registry.ca_pem()?,
    })?;

    match cli.command {
        Command::Apply {
            replication_factor,
            min_insync_replicas,
        } => {
            let mut replication = match replication_factor {
                -1 => Replication::broker_default(),
                n if n >= 1 => Replication::factor(n),
                n => bail!("--replication-factor must be -1 or at least 1, got {n}"),
            };
            if let Some(min) = min_insync_replicas {
                let most = replication.factor.unwrap_or(i32::MAX);
                if !(1..=most).contains(&min) {
                    bail!(
                        "--min-insync-replicas must be between 1 and --replication-factor ({replication_factor}), \
                         got {min}: a topic with more in-sync replicas required than it has refuses every write"
                    );
                }
                replication.min_insync = Some(min);
            }
            let admin = KafkaConfig::from_args(&cli.kafka)?
                .client_config(&[])
                .create()
                .context("creating the Kafka admin client")?;
            let timeout = Duration::from_secs(cli.timeout_secs);
            for (topic, outcome) in
                ensure_topics(Arc::new(admin), &catalog, replication, timeout).await?
            {
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
                let outcome = registry.ensure_schema(topic, cli.compatibility).await?;
                let mode = cli.compatibility;
                match outcome {
                    SchemaOutcome::Unchanged { id } => {
                        println!("subject {subject}: unchanged (id {id}), {mode}")
                    }
                    SchemaOutcome::Registered { id } => {
                        println!("subject {subject}: registered (id {id}), {mode}")
                    }
                }
            }
        }
        Command::Check => {
            for topic in catalog.topics() {
                let subject = topic.value_subject();
                let mode = cli.compatibility;
                registry.check_schema(topic, mode).await?;
                match registry.mode(&subject).await? {
                    Some(set) if set != mode.as_registry() => println!(
                        "subject {subject}: {mode} compatible; the registry has {set}, which apply sets to {mode}"
                    ),
                    _ => println!("subject {subject}: {mode} compatible"),
                }
            }
        }
    }
    Ok(())
}
