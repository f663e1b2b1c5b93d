//! saga-orchestrator's flags: its own, and those every consumer service shares.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sluice_config::{DatabaseUrlArgs, Output, sql_identifier};
use sluice_service::{ConsumerArgs, Defaults, RetryArgs, Tuning};

use crate::engine::Phase;
use crate::file::{self, FileSaga, Outputs};
use crate::{ORDER_FULFILMENT, TimeoutSettings, Topics};

/// The variables of the order saga's settings before it was a file, and
/// where each setting is now: set, they would be ignored in silence (a
/// deployment's sheet, timeouts), so they stop the process instead.
const RETIRED: &[(&str, &str)] = &[
    ("SLUICE_SAGA_ORDERS_TOPIC", "use SLUICE_SAGA_EVENTS_TOPIC"),
    (
        "SLUICE_SAGA_SPREADSHEET",
        "set the record-in-sheet step's spreadsheet in the saga file",
    ),
    (
        "SLUICE_SAGA_SHEET",
        "set the record-in-sheet step's sheet in the saga file",
    ),
    (
        "SLUICE_SAGA_ERP_MODEL",
        "set the reserve-in-erp step's model in the saga file",
    ),
    (
        "SLUICE_SAGA_ERP_TIMEOUT_MS",
        "set the reserve-in-erp step's timeout in the saga file",
    ),
    (
        "SLUICE_SAGA_SHEET_TIMEOUT_MS",
        "set the record-in-sheet step's timeout in the saga file",
    ),
    (
        "SLUICE_SAGA_STEP_RETRIES",
        "set each step's retries in the saga file",
    ),
];

/// saga-orchestrator's defaults of the shared flags.
#[derive(Debug, Clone)]
pub struct Saga;

impl Defaults for Saga {
    const SERVICE: &'static str = "saga-orchestrator";
    const GROUP_ID: &'static str = "sluice-saga-orchestrator";
    const DLQ_TOPIC: &'static str = "dlq.saga-orchestrator.v1";
    const MAX_RETRIES: u32 = 10;
    const RETRY_INITIAL_MS: u64 = 200;
    const RETRY_MAX_MS: u64 = 10_000;
    const MAX_CONCURRENT: usize = 6;
    // A batch's replies are one transaction of a few statements: under
    // load, what queued while the last one committed goes at once.
    const MAX_BATCH: usize = 100;
}

/// A saga run durably: by default order fulfilment (reserve in the ERP,
/// record in the Orders sheet, confirm — or compensate and reject), or the
/// one a file describes (--saga).
///
/// Postgres comes from SLUICE_DATABASE_URL (or --database-url); the sagas
/// live in its `saga` schema.
#[derive(Debug, clap::Parser)]
#[command(version, name = "saga-orchestrator")]
pub struct Cli {
    #[command(subcommand)]
    /// What to do.
    pub command: Command,
    /// Postgres, where the sagas live.
    #[command(flatten)]
    pub database: DatabaseUrlArgs,
}

/// The subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run sagas: consume start events and replies, fire timeouts.
    Run(Box<RunArgs>),
    /// List sagas, newest first.
    List {
        /// Only sagas in this state (running, compensating, completed,
        /// compensated, failed).
        #[arg(long, value_parser = parse_phase)]
        state: Option<Phase>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// A table (for people) or JSON lines (for scripts).
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Show one saga and its step log.
    Show {
        /// The saga id, or the order id.
        saga: String,
        /// A table (for people) or JSON (for scripts).
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

fn parse_phase(name: &str) -> Result<Phase, String> {
    Phase::parse(name).ok_or_else(|| {
        format!("{name:?}: use running, compensating, completed, compensated or failed")
    })
}

/// The flags of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The saga to run (TOML: its start event, steps, compensations and
    /// outcomes; see services/fleet/saga-orchestrator/sagas/). Without it,
    /// the shipped order fulfilment saga.
    #[arg(long, env = "SLUICE_SAGA_FILE")]
    pub saga: Option<PathBuf>,
    /// The saga's aggregate's events (its start event is read there, its
    /// outcomes written there); by default the aggregate's contract topic
    /// (`orders.events.v1`).
    #[arg(long, env = "SLUICE_SAGA_EVENTS_TOPIC")]
    pub events_topic: Option<String>,
    /// erp-sink's commands.
    #[arg(long, env = "SLUICE_SAGA_ERP_TOPIC", default_value = "erp.commands.v1")]
    pub erp_topic: String,
    /// erp-sink's results (the ERP step's replies).
    #[arg(
        long,
        env = "SLUICE_SAGA_ERP_RESULTS_TOPIC",
        default_value = "erp.results.v1"
    )]
    pub erp_results_topic: String,
    /// sheets-sink's commands.
    #[arg(
        long,
        env = "SLUICE_SAGA_SHEETS_TOPIC",
        default_value = "sheets.rows.v1"
    )]
    pub sheets_topic: String,
    /// sheets-sink's results (the sheet step's replies).
    #[arg(
        long,
        env = "SLUICE_SAGA_SHEETS_RESULTS_TOPIC",
        default_value = "sheets.results.v1"
    )]
    pub sheets_results_topic: String,
    /// Milliseconds between looks for passed deadlines.
    #[arg(long, env = "SLUICE_SAGA_TIMEOUT_TICK_MS", default_value_t = 500)]
    pub timeout_tick_ms: u64,
    /// Replication slot outbox-relay streams the orchestrator's outbox from
    /// (created here when missing, so no row precedes it).
    #[arg(long, env = "SLUICE_SAGA_OUTBOX_SLOT", default_value = "sluice_saga_outbox", value_parser = sql_identifier)]
    pub outbox_slot: String,
    /// Make the outbox's slot anew although its publication shows it
    /// existed: only once the rows a lost slot skipped were sent again.
    #[arg(long, env = "SLUICE_SAGA_RECREATE_LOST_SLOT")]
    pub recreate_lost_slot: bool,
    /// Publication of the orchestrator's outbox table.
    #[arg(long, env = "SLUICE_SAGA_OUTBOX_PUBLICATION", default_value = "sluice_saga_outbox", value_parser = sql_identifier)]
    pub outbox_publication: String,
    /// How long outbox rows are kept after they are written (for
    /// operators; the relay streams the WAL, not the table): 24h, 90m, 7d.
    #[arg(long, env = "SLUICE_SAGA_OUTBOX_RETENTION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub outbox_retention: Duration,
    /// Most Postgres connections.
    #[arg(
        long = "database-max-connections",
        env = "SLUICE_DATABASE_MAX_CONNECTIONS",
        default_value_t = 8
    )]
    pub max_connections: u32,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub retry: RetryArgs<Saga>,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub consumer: ConsumerArgs<Saga>,
}

impl RunArgs {
    /// The saga `--saga` names (or the shipped one), checked against the
    /// contracts: one that does not fit stops the process before it reads.
    pub fn load_saga(&self) -> anyhow::Result<FileSaga> {
        if let Some((variable, now)) = RETIRED
            .iter()
            .find(|(variable, _)| std::env::var_os(variable).is_some())
        {
            anyhow::bail!(
                "{variable} is set, and saga-orchestrator no longer reads it: the saga is a file \
                 now; {now} (a copy of services/fleet/saga-orchestrator/sagas/order-fulfilment.toml, \
                 given with --saga)"
            );
        }
        let catalog = Arc::new(self.consumer.contracts.catalog()?);
        let (text, from) = match &self.saga {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the saga file {}", path.display()))?;
                (text, path.display().to_string())
            }
            None => (
                ORDER_FULFILMENT.to_owned(),
                "the shipped order fulfilment saga".into(),
            ),
        };
        let outputs = Outputs {
            erp: self.erp_topic.clone(),
            sheets: self.sheets_topic.clone(),
            events: self.events_topic.clone(),
        };
        file::load(&text, catalog, &outputs).with_context(|| from)
    }

    /// The consumer loop's tuning: 100 messages queued per partition (as
    /// many as a batch; it reads 18 partitions over three topics, each
    /// holding a fetch's bytes more when behind) and 10 s at SIGTERM to
    /// finish the steps in hand.
    pub fn tuning(&self) -> Tuning {
        Tuning {
            partition_buffer: 100,
            shutdown_grace: Duration::from_secs(10),
            revoke_wait: Duration::from_secs(5),
            ..Tuning::default()
        }
    }

    /// How deadlines are looked for and the outbox pruned.
    pub fn timeout_settings(&self) -> TimeoutSettings {
        TimeoutSettings {
            tick: Duration::from_millis(self.timeout_tick_ms),
            batch: 100,
            census_every: Duration::from_secs(5),
            overdue: Duration::from_secs(60),
            outbox_retention: self.outbox_retention,
        }
    }

    /// The topics the orchestrator reads, running `saga`.
    pub fn topics(&self, saga: &FileSaga) -> Topics {
        Topics {
            events: saga.events_topic.clone(),
            erp_results: self.erp_results_topic.clone(),
            sheet_results: self.sheets_results_topic.clone(),
        }
    }
}
