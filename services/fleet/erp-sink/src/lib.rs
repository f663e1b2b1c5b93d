//! erp-sink: ErpCommands from Kafka applied to Odoo once each — upsert by
//! external reference, the command id kept on the record, paced by a token
//! bucket, guarded by a circuit breaker, retried with backoff — and every
//! outcome reported on `erp.results.v1`. `main.rs` wires it; tests drive it
//! against the sandbox.
#![doc = include_str!("../README.md")]

mod actions;
mod apply;
pub mod cli;
pub mod odoo;
pub mod plan;
mod sink;

pub use actions::ModelMethods;
pub use apply::{Applied, Applier, ApplyError, RecordFields};
pub use sink::{ErpSink, SinkError};
