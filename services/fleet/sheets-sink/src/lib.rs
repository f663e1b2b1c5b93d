//! sheets-sink: SheetRowUpserts from Kafka applied to Google Sheets —
//! upsert by row key, batched per spreadsheet, paced by a token bucket, guarded by a circuit breaker,
//! retried with backoff, permanent refusals dead-lettered. `main.rs` wires
//! it; tests drive it against the sandbox.
#![doc = include_str!("../README.md")]

pub mod cli;
pub mod google;
mod sink;
mod upsert;

pub use sink::{SheetsSink, SinkError};
pub use upsert::{Applied, Upserter, VERSION_COLUMN};

/// Requests per second for one service account by default: 55 a minute.
/// Sheets allows 60 per minute per user; with a burst of 1, any 60 s window
/// then holds 56 at most, so the quota never answers 429.
pub const DEFAULT_REQUESTS_PER_SECOND: f64 = 55.0 / 60.0;
