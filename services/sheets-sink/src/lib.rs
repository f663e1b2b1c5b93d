//! sheets-sink: SheetRowUpserts from Kafka applied to Google Sheets —
//! upsert by row key, batched per spreadsheet, paced by a token bucket, guarded by a circuit breaker,
//! retried with backoff, permanent refusals dead-lettered. `main.rs` wires
//! it; tests drive it against the sandbox.

pub mod google;
mod sink;
mod upsert;

pub use sink::{SheetsSink, SinkError};
pub use upsert::{Applied, Upserter};
