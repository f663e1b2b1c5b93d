//! erp-sink's flags: its own, and those every consumer service shares.

use std::path::PathBuf;

use secrecy::SecretString;
use sluice_config::parse_secret;
use sluice_service::{Defaults, SinkArgs, SinkDefaults};

use crate::actions::ModelMethods;
use crate::odoo::Protocol;

/// erp-sink's defaults of the shared flags.
#[derive(Debug, Clone)]
pub struct Erp;

impl Defaults for Erp {
    const SERVICE: &'static str = "erp-sink";
    const GROUP_ID: &'static str = "sluice-erp-sink";
    const DLQ_TOPIC: &'static str = "dlq.erp-sink.v1";
    // What queued of a partition, its references applied at once
    // (`Order::Key`), each on one of the `MAX_CONCURRENT` lanes.
    const MAX_BATCH: usize = 32;
    const RETRY_INITIAL_MS: u64 = 2_000;
    const RETRY_MAX_MS: u64 = 60_000;
    const BURST: u32 = 50;
    const BREAKER_FAILURES: u32 = 3;
    const BREAKER_OPEN_SECS: u64 = 120;
    const CALL_TIMEOUT_SECS: u64 = 45;
}

impl SinkDefaults for Erp {
    const TOPIC_ENV: &'static str = "SLUICE_ERP_TOPIC";
    const TOPIC: &'static str = "erp.commands.v1";
    const RESULTS_TOPIC_ENV: &'static str = "SLUICE_ERP_RESULTS_TOPIC";
    const RESULTS_TOPIC: &'static str = "erp.results.v1";
}

/// Applies ERP commands to Odoo, once each, at the pace the ERP allows
/// (a command takes two calls or more: search, then write or create, then
/// the confirm or cancel action; a new reference one more).
#[derive(Debug, clap::Parser)]
#[command(version)]
pub struct Cli {
    /// Base URL of the Odoo server (/jsonrpc or /json/2/… is appended).
    #[arg(long, env = "SLUICE_ERP_ODOO_URL")]
    pub odoo_url: String,
    /// Which of Odoo's external APIs to call: json-rpc (`/jsonrpc`, a login
    /// and a password or API key) or json2 (`/json/2`, Odoo 19 and later,
    /// an API key in --odoo-password; the login is unused).
    #[arg(long, env = "SLUICE_ERP_ODOO_PROTOCOL", value_enum, default_value_t)]
    pub odoo_protocol: Protocol,
    /// Odoo database.
    #[arg(long, env = "SLUICE_ERP_ODOO_DATABASE")]
    pub odoo_database: String,
    /// Seconds Odoo may still commit a create whose answer never came (a
    /// timeout, a lost connection, a proxy's 502/504): its limit_time_real,
    /// after which a request is killed and rolled back. The create is
    /// searched for again only then; shorter risks a second record.
    #[arg(
        long,
        env = "SLUICE_ERP_ODOO_SETTLE_SECS",
        default_value_t = crate::odoo::DEFAULT_SETTLE.as_secs()
    )]
    pub odoo_settle_secs: u64,
    /// Odoo login (json-rpc; json2 has none: the API key is the user).
    #[arg(long, env = "SLUICE_ERP_ODOO_LOGIN")]
    pub odoo_login: Option<String>,
    /// Odoo password or API key.
    #[arg(
        long,
        env = "SLUICE_ERP_ODOO_PASSWORD",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub odoo_password: Option<SecretString>,
    /// A file holding the Odoo password (a mounted secret).
    #[arg(long, env = "SLUICE_ERP_ODOO_PASSWORD_FILE", value_name = "FILE")]
    pub odoo_password_file: Option<PathBuf>,
    /// The Char field holding each record's external reference.
    #[arg(
        long,
        env = "SLUICE_ERP_EXTERNAL_REF_FIELD",
        default_value = "x_sluice_external_ref"
    )]
    pub external_ref_field: String,
    /// The Text field holding the ids of the commands applied to a record.
    #[arg(
        long,
        env = "SLUICE_ERP_APPLIED_COMMANDS_FIELD",
        default_value = "x_sluice_commands"
    )]
    pub applied_commands_field: String,
    /// Models checked with fields_get at start (each must have the two
    /// fields above); a missing field stops the sink, named.
    #[arg(
        long,
        env = "SLUICE_ERP_MODELS",
        value_delimiter = ',',
        default_value = "sale.order"
    )]
    pub models: Vec<String>,
    /// Models whose CREATE makes a draft and then calls a method, as
    /// MODEL[=METHOD],… (action_confirm unless named: account.move=action_post
    /// posts an invoice); each model once. Checked at start like --models.
    #[arg(
        long,
        env = "SLUICE_ERP_CONFIRM_ON_CREATE",
        default_value = "sale.order",
        value_parser = ModelMethods::confirming
    )]
    pub confirm_on_create: ModelMethods,
    /// Models whose CANCEL calls a method of their own rather than
    /// action_cancel, as MODEL=METHOD,… (account.move=button_cancel).
    /// Checked at start like --models.
    #[arg(
        long,
        env = "SLUICE_ERP_CANCEL_WITH",
        default_value = "",
        value_parser = ModelMethods::cancelling
    )]
    pub cancel_with: ModelMethods,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub sink: SinkArgs<Erp>,
}
