//! `dlq-replayer`: the operator's tool for dead letters — find them, see
//! why they failed, and put exactly the right ones back, once, at a pace
//! the recovered system accepts.
//!
//! Exit codes: 0 done, 1 error, 2 usage, 3 partial (stopped, or some
//! messages could not be sent).
#![doc = include_str!("../README.md")]

mod audit;
mod coordinate;
mod filter;
mod log;
mod render;
mod replay;
mod scan;
mod skip;

use std::io::Write as _;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use secrecy::SecretString;
use sluice_avro::{AvroCodec, registry_settings};
use sluice_config::{AuditArgs, DatabaseUrlArgs, KafkaArgs, RegistryArgs};
use sluice_dlq::DeadLetterPublisher;
use sluice_kafka::{AuditLog, KafkaConfig, ReplyPublisher, idempotent_producer};
use sluice_resilience::{LimiterConfig, RateLimiter};
use uuid::Uuid;

use crate::coordinate::Coordinate;
use crate::filter::Filters;
use crate::log::ReplayLog;
use crate::scan::{Letter, Scanner};
use sluice_config::Output;

/// Finds, explains and replays dead letters (the dlq.<service>.v1 topics).
///
/// Kafka, the schema registry and the replay log's Postgres come from the
/// SLUICE_* environment (or --config FILE); flags for them go before the
/// command.
#[derive(Debug, Parser)]
#[command(version, name = "dlq-replayer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print a table (for people) or JSON, one object per line (for scripts).
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    /// Postgres of the replay log (needed by replay and history).
    #[command(flatten)]
    database: DatabaseUrlArgs,
    /// Seconds Kafka may take to answer.
    #[arg(long, default_value_t = 30, global = true)]
    timeout_secs: u64,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Where replays are recorded, and what `audit` reads.
    #[command(flatten)]
    audit: AuditArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List dead letters, filtered; counts per error class at the end.
    List {
        #[command(flatten)]
        filters: Filters,
        /// At most this many (the oldest first).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show one dead letter: its error, headers, and original value decoded
    /// through the registry.
    Show {
        /// topic:partition:offset of the dead letter.
        coordinate: Coordinate,
    },
    /// Put dead letters back on their original topic (or --to), key, value
    /// and headers byte for byte, plus sluice.replay.* headers.
    Replay(ReplayArgs),
    /// Replays run so far: when, by whom, what, how it ended.
    History {
        /// The dead letters one replay put back, in order.
        #[arg(long, value_name = "REPLAY_ID")]
        replay: Option<Uuid>,
        /// At most this many runs, newest first.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Move a consumer group past one record no client can read (a corrupt
    /// batch its service is stalled on), recording who skipped what and why
    /// as a dead letter first. The group's members must be stopped.
    Skip(SkipArgs),
    /// Counts per DLQ topic and error class, with the oldest and newest.
    Stats {
        #[command(flatten)]
        filters: Filters,
    },
    /// The audit trail, oldest first: what Sluice wrote to the ERP and the
    /// sheets (when, from which event, how it ended), the webhooks it took
    /// in or refused, and every replay.
    Audit(audit::AuditQuery),
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    #[command(flatten)]
    filters: Filters,
    /// Exactly this dead letter, topic:partition:offset (repeatable);
    /// the filters then narrow these.
    #[arg(long = "at", value_name = "COORDINATE")]
    coordinates: Vec<Coordinate>,
    /// Send to this topic instead of each message's original one.
    #[arg(long, value_name = "TOPIC")]
    to: Option<String>,
    /// Show what would be sent; send and record nothing.
    #[arg(long)]
    dry_run: bool,
    /// Most messages per second, as N or N/s.
    #[arg(long, value_name = "N/s", value_parser = parse_rate)]
    rate: Option<f64>,
    /// At most this many (the oldest first).
    #[arg(long)]
    limit: Option<usize>,
    /// Replay dead letters that were replayed before, too.
    #[arg(long)]
    force: bool,
    /// Who is replaying, for the log and the audit trail (default: the
    /// login; one of them must name somebody).
    #[arg(long, env = "SLUICE_ACTOR")]
    actor: Option<String>,
}

#[derive(Debug, clap::Args)]
struct SkipArgs {
    /// The consumer group held at the record (the service's --group-id).
    #[arg(long)]
    group: String,
    /// The record, topic:partition:offset, as sluice_partition_stalled
    /// names it.
    #[arg(long, value_name = "COORDINATE")]
    at: Coordinate,
    /// The dead-letter topic the skip is recorded in (the service's).
    #[arg(long, value_name = "TOPIC")]
    dlq_topic: String,
    /// Why, for the record.
    #[arg(long)]
    reason: String,
    /// Who is skipping, for the record (default: the login; one of them
    /// must name somebody).
    #[arg(long, env = "SLUICE_ACTOR")]
    actor: Option<String>,
}

/// Who acts: `--actor` (or SLUICE_ACTOR), else the login. A record that
/// says "unknown" answers nobody's question, so with neither it refuses.
fn actor(given: Option<String>) -> Result<String> {
    given
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .map(|actor| actor.trim().to_owned())
        .filter(|actor| !actor.is_empty())
        .context(
            "who is acting? give --actor NAME or set SLUICE_ACTOR: the record names who did it",
        )
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.strip_suffix("/s").unwrap_or(text);
    match number.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("{text:?} is not a rate like 50/s")),
    }
}

/// How a command ended, beyond errors.
enum Finished {
    Done,
    Partial,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Warnings to stderr: librdkafka says there why a broker cannot be
    // reached (a refused certificate, say), which its errors do not carry.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli: Cli = match sluice_config::parse() {
        Ok(cli) => cli,
        Err(err) => {
            eprintln!("error: reading the configuration: {err}");
            return ExitCode::from(2);
        }
    };
    match run(cli).await {
        Ok(Finished::Done) => ExitCode::SUCCESS,
        Ok(Finished::Partial) => ExitCode::from(3),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// What the commands read Kafka and the registry with.
struct Readers {
    scanner: Scanner,
    codec: Arc<AvroCodec>,
    output: Output,
    timeout: Duration,
}

async fn run(cli: Cli) -> Result<Finished> {
    let timeout = Duration::from_secs(cli.timeout_secs);
    let kafka = KafkaConfig::from_args(&cli.kafka)?;
    let registry = registry_settings(&cli.registry)?;
    let context = Readers {
        scanner: Scanner::new(&kafka, AvroCodec::new(registry.clone()), timeout)?,
        codec: Arc::new(AvroCodec::new(registry)),
        output: cli.output,
        timeout,
    };
    let database = cli.database.resolve()?;
    let outcome = execute(&context, &kafka, database, &cli.audit, cli.command).await;
    if outcome.is_err() {
        context.scanner.serve_events().await;
    }
    outcome
}

async fn execute(
    context: &Readers,
    kafka: &KafkaConfig,
    database: Option<SecretString>,
    trail: &AuditArgs,
    command: Command,
) -> Result<Finished> {
    match command {
        Command::List { filters, limit } => {
            let mut letters = select(&context.scanner, &filters, &[]).await?;
            letters.truncate(limit.unwrap_or(usize::MAX));
            print(&render::list(&letters, context.output))?;
        }
        Command::Show { coordinate } => {
            let letter = context.scanner.fetch(&coordinate).await?;
            let value = decode_value(&context.codec, &letter).await;
            print(&render::show(&letter, value, context.output))?;
        }
        Command::Stats { filters } => {
            let letters = select(&context.scanner, &filters, &[]).await?;
            print(&render::stats(&letters, context.output))?;
        }
        Command::History { replay, limit } => {
            let log = ReplayLog::connect(&need_database(database)?).await?;
            match replay {
                Some(replay_id) => {
                    for (from, to) in log.replayed(replay_id).await? {
                        print(&format!("{from} -> {to}\n"))?;
                    }
                }
                None => print(&render::history(&log.history(limit).await?, context.output))?,
            }
        }
        Command::Audit(query) => {
            let now = sluice_contracts::now_millis();
            let mut records = context
                .scanner
                .audit(&trail.audit_topic, |record| query.matches(record, now))
                .await?;
            let newest = records
                .len()
                .saturating_sub(query.limit.unwrap_or(usize::MAX));
            records.drain(..newest);
            print(&audit::render(&records, context.output))?;
        }
        Command::Replay(args) => {
            return replay_command(context, kafka, database, trail, args).await;
        }
        Command::Skip(args) => skip_command(context, kafka, args).await?,
    }
    Ok(Finished::Done)
}

async fn skip_command(readers: &Readers, kafka: &KafkaConfig, args: SkipArgs) -> Result<()> {
    let request = skip::Skip {
        group: args.group,
        at: args.at,
        reason: args.reason,
        actor: actor(args.actor)?,
    };
    readers
        .scanner
        .require(&[request.at.topic.as_str(), args.dlq_topic.as_str()])?;
    let record = DeadLetterPublisher::new(
        idempotent_producer(kafka)?,
        Arc::clone(&readers.codec),
        &args.dlq_topic,
        "dlq-replayer",
        env!("CARGO_PKG_VERSION"),
    );
    skip::skip(kafka, &request, &record, readers.timeout).await?;
    eprintln!(
        "skipped {} for group {}; recorded in {}",
        request.at, request.group, args.dlq_topic
    );
    Ok(())
}

async fn replay_command(
    readers: &Readers,
    kafka: &KafkaConfig,
    database: Option<SecretString>,
    trail: &AuditArgs,
    args: ReplayArgs,
) -> Result<Finished> {
    let mut letters = select(&readers.scanner, &args.filters, &args.coordinates).await?;
    letters.truncate(args.limit.unwrap_or(usize::MAX));
    // Kafka would refuse each message alone, after its timeout.
    let mut targets: Vec<&str> = match &args.to {
        Some(to) => vec![to.as_str()],
        None => letters
            .iter()
            .map(|l| l.record.original_topic.as_str())
            .collect(),
    };
    targets.sort_unstable();
    targets.dedup();
    // The audit trail too: a replay it cannot record does not begin.
    targets.push(&trail.audit_topic);
    readers.scanner.require(&targets)?;
    if args.dry_run {
        eprintln!(
            "dry run: {} dead letters would go to {}; nothing sent, nothing recorded",
            letters.len(),
            args.to.as_deref().unwrap_or("their original topics")
        );
        print(&render::list(&letters, readers.output))?;
        return Ok(Finished::Done);
    }
    if letters.is_empty() {
        eprintln!("nothing to replay: no dead letter matches");
        return Ok(Finished::Done);
    }
    let actor = actor(args.actor.clone())?;
    let log = ReplayLog::connect(&need_database(database)?).await?;
    let coordinates: Vec<Coordinate> = letters.iter().map(|l| l.at.clone()).collect();
    let prior = log.prior(&coordinates).await?;
    if let Some(first) = prior.first()
        && !args.force
    {
        bail!(
            "{} of the {} selected dead letters were replayed before (e.g. {} by {} at {}, replay {}); \
             add --force to replay them again",
            prior.len(),
            letters.len(),
            first.at,
            first.actor,
            first
                .replayed_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            first.replay_id
        );
    }
    let limiter = args
        .rate
        .map(|rate| {
            RateLimiter::new(
                "replay",
                LimiterConfig {
                    capacity: NonZeroU32::MIN,
                    refill_per_second: rate,
                },
            )
        })
        .transpose()?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("stopping: the message in hand finishes, nothing more is sent");
                stop.store(true, Ordering::SeqCst);
            }
        });
    }
    let replay_id = Uuid::new_v4();
    let selection = selection_text(&args);
    log.begin(
        replay_id,
        &actor,
        args.to.as_deref(),
        &selection,
        args.force,
    )
    .await?;
    let audit = AuditLog::new(
        ReplyPublisher::immediate(kafka, Arc::clone(&readers.codec), &trail.audit_topic)?,
        "dlq-replayer",
        actor,
    );
    let run = replay::Run {
        replay_id,
        to: args.to.as_deref(),
        limiter,
        stop,
        audit: &audit,
    };
    // Each message waits for its acknowledgement before the next: lingering
    // would add the linger to every one.
    let producer = idempotent_producer(&kafka.clone().with_property("linger.ms", "0"))?;
    let report = match replay::replay(&run, &letters, &producer, &log).await {
        Ok(report) => report,
        Err(err) => {
            // Said in the history; the error is what the operator sees.
            if let Err(finish) = log.finish(replay_id, log::Outcome::Failed).await {
                eprintln!("warning: the replay log's run not closed: {finish}");
            }
            return Err(err.into());
        }
    };
    log.finish(replay_id, report.outcome()).await?;
    eprintln!("replay id {replay_id}");
    Ok(if report.stopped || !report.failed.is_empty() {
        Finished::Partial
    } else {
        Finished::Done
    })
}

/// The dead letters a command is about: the coordinates given (each
/// fetched), or every dead letter of the DLQ topics; then the filters.
async fn select(
    scanner: &Scanner,
    filters: &Filters,
    coordinates: &[Coordinate],
) -> Result<Vec<Letter>> {
    let letters = if coordinates.is_empty() {
        let topics = scanner.topics(&filters.topics)?;
        scanner.scan(&topics).await?
    } else {
        let mut letters = Vec::with_capacity(coordinates.len());
        for coordinate in coordinates {
            letters.push(scanner.fetch(coordinate).await?);
        }
        letters
    };
    let now = sluice_contracts::now_millis();
    Ok(letters
        .into_iter()
        .filter(|letter| filters.matches(letter, now))
        .collect())
}

/// The original value through the registry, as JSON.
async fn decode_value(codec: &AvroCodec, letter: &Letter) -> Result<serde_json::Value, String> {
    let bytes = letter
        .record
        .original_value
        .as_deref()
        .ok_or_else(|| "the message had no value".to_owned())?;
    let value = codec.decode_value(bytes).await.map_err(|e| e.to_string())?;
    serde_json::Value::try_from(value).map_err(|e| e.to_string())
}

fn need_database(url: Option<SecretString>) -> Result<SecretString> {
    url.context("the replay log needs Postgres: set SLUICE_DATABASE_URL or --database-url-file")
}

/// The replay's selection as the operator gave it, for the log.
fn selection_text(args: &ReplayArgs) -> String {
    let f = &args.filters;
    let mut parts: Vec<String> = args
        .coordinates
        .iter()
        .map(|c| format!("--at {c}"))
        .collect();
    let mut flag = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            parts.push(format!("--{name} {value}"));
        }
    };
    for topic in &f.topics {
        flag("topic", Some(topic.clone()));
    }
    flag("service", f.service.clone());
    flag("source-topic", f.source_topic.clone());
    flag("class", f.class.map(|c| c.as_str().to_ascii_lowercase()));
    flag("grep", f.grep.clone());
    flag("key", f.key.clone());
    flag("correlation", f.correlation.clone());
    flag("since", f.since.map(|w| w.to_string()));
    flag("until", f.until.map(|w| w.to_string()));
    flag("limit", args.limit.map(|n| n.to_string()));
    flag("rate", args.rate.map(|r| format!("{r}/s")));
    if parts.is_empty() {
        "every dead letter".into()
    } else {
        parts.join(" ")
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a trace.
fn print(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing the output"),
    }
}
