//! The transformer's flags: its own, and those every consumer service shares.

use std::path::PathBuf;

use sluice_config::RouteArgs;
use sluice_service::{ConsumerArgs, Defaults};

/// The transformer's defaults of the shared flags.
#[derive(Debug, Clone)]
pub struct Transform;

impl Defaults for Transform {
    const SERVICE: &'static str = "transformer";
    const GROUP_ID: &'static str = "sluice-transformer";
    const DLQ_TOPIC: &'static str = "dlq.transformer.v1";
    const MAX_BATCH: usize = crate::DEFAULT_MAX_BATCH;
    const BATCH_LINGER_MS: u64 = 20;
}

/// Maps domain events to sheet rows and ERP commands, exactly once.
#[derive(Debug, clap::Parser)]
#[command(version)]
pub struct Cli {
    /// The mapping rules (TOML; see services/fleet/transformer/rules.toml).
    #[arg(long, env = "SLUICE_TRANSFORMER_RULES")]
    pub rules: PathBuf,
    /// Rules of the file to leave out, by id (repeatable, or comma
    /// separated).
    #[arg(
        long = "without-rule",
        env = "SLUICE_TRANSFORMER_WITHOUT_RULES",
        value_delimiter = ',',
        value_name = "ID"
    )]
    pub without_rules: Vec<String>,
    /// Check the rules file against the contracts and exit.
    #[arg(long)]
    pub check: bool,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub routes: RouteArgs,

    /// Topic of sheet row upserts.
    #[arg(long, env = "SLUICE_SHEETS_TOPIC", default_value = "sheets.rows.v1")]
    pub sheets_topic: String,
    /// Topic of ERP commands.
    #[arg(long, env = "SLUICE_ERP_TOPIC", default_value = "erp.commands.v1")]
    pub erp_topic: String,
    /// transactional.id of this instance: stable across its restarts (a
    /// restart fences its predecessor) and different for each instance.
    /// Default: `sluice-transformer-<HOSTNAME>` (a StatefulSet pod name).
    #[arg(long, env = "SLUICE_TRANSACTIONAL_ID")]
    pub transactional_id: Option<String>,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub consumer: ConsumerArgs<Transform>,
}
