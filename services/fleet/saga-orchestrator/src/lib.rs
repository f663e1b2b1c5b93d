//! saga-orchestrator: order fulfilment as a durable saga. State lives in
//! Postgres; every change and the commands it sends are one transaction
//! through the orchestrator's own outbox, which outbox-relay publishes
//! (`--outbox-format addressed`). Replies come back on the sinks' result
//! topics; timeouts fire from the database. `main.rs` wires it.
#![doc = include_str!("../README.md")]

pub mod cli;
pub mod definition;
pub mod engine;
pub mod fulfilment;
mod handler;
pub mod metrics;
pub mod render;
mod replies;
mod store;
mod timeouts;

pub use handler::{HandleError, SagaHandler, Topics};
pub use replies::ReplyError;
pub use store::{LogLine, ReplyEffect, Sagas, Store, StoreError, Summary};
pub use timeouts::{TimeoutSettings, owned as timeout_loop};
