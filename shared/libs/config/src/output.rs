//! How a command-line tool prints what it found (saga-orchestrator's `list`
//! and `show`, dlq-replayer's commands): aligned columns for people, JSON
//! lines for scripts.

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Table};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns, for a terminal.
    Table,
    /// One JSON object per line, for scripts.
    Json,
}

/// An empty table with `header`, fitted to the terminal's width.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    table
}
