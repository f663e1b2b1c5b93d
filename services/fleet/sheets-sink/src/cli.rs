//! sheets-sink's flags: its own, and those every consumer service shares.

use std::path::PathBuf;

use sluice_service::{Defaults, SinkArgs, SinkDefaults};

/// sheets-sink's defaults of the shared flags.
#[derive(Debug, Clone)]
pub struct Sheets;

impl Defaults for Sheets {
    const SERVICE: &'static str = "sheets-sink";
    const GROUP_ID: &'static str = "sluice-sheets-sink";
    const DLQ_TOPIC: &'static str = "dlq.sheets-sink.v1";
    // One batchUpdate per spreadsheet and one append per sheet, whatever the count.
    const MAX_BATCH: usize = 500;
    const BATCH_LINGER_MS: u64 = 200;
    const REQUESTS_PER_SECOND: f64 = crate::DEFAULT_REQUESTS_PER_SECOND;
}

impl SinkDefaults for Sheets {
    const TOPIC_ENV: &'static str = "SLUICE_SHEETS_TOPIC";
    const TOPIC: &'static str = "sheets.rows.v1";
    const RESULTS_TOPIC_ENV: &'static str = "SLUICE_SHEETS_RESULTS_TOPIC";
    const RESULTS_TOPIC: &'static str = "sheets.results.v1";
}

/// Applies sheet row upserts to Google Sheets at the pace Google allows.
#[derive(Debug, clap::Parser)]
#[command(version)]
pub struct Cli {
    /// Google service-account JSON key (its token_uri is where tokens come
    /// from); none: tokens from the metadata server (GKE Workload Identity,
    /// a GCE VM's account), no key file to leak or rotate.
    #[arg(long, env = "SLUICE_SHEETS_SERVICE_ACCOUNT")]
    pub service_account: Option<PathBuf>,
    /// Write as this user of the Workspace domain (domain-wide delegation:
    /// the key's client id must be allowed the Sheets scope in the admin
    /// console); sheets then need sharing with the user, not the account.
    #[arg(long = "sheets-subject", env = "SLUICE_SHEETS_SUBJECT")]
    pub subject: Option<String>,
    /// The metadata server, `host[:port]`, asked for tokens when no key is
    /// given (Google's libraries read the same variable).
    #[arg(
        long,
        env = "GCE_METADATA_HOST",
        default_value = "metadata.google.internal"
    )]
    pub metadata_host: String,
    /// Base URL of the Sheets API.
    #[arg(
        long = "sheets-base-url",
        env = "SLUICE_SHEETS_BASE_URL",
        default_value = "https://sheets.googleapis.com"
    )]
    pub base_url: String,
    /// Sheets whose values Sheets takes as typed (USER_ENTERED: `19.50` a
    /// number, `2026-12-05` a date), each `SPREADSHEET_ID` (all its sheets)
    /// or `SPREADSHEET_ID/Sheet title`; the others RAW. Row keys, and text
    /// that would be a formula, stay text.
    #[arg(long, env = "SLUICE_SHEETS_USER_ENTERED", value_delimiter = ',')]
    pub user_entered: Vec<String>,
    #[allow(missing_docs)]
    #[command(flatten)]
    pub sink: SinkArgs<Sheets>,
}
