//! saga-orchestrator: a saga from a file (order fulfilment is shipped) run
//! durably. State lives in Postgres; every change and the commands it sends are one transaction
//! through the orchestrator's own outbox, which outbox-relay publishes
//! (`--outbox-format addressed`). Replies come back on the sinks' result
//! topics; timeouts fire from the database. `main.rs` wires it.
#![doc = include_str!("../README.md")]

mod changes;
pub mod cli;
pub mod definition;
pub mod engine;
pub mod file;
mod handler;
pub mod metrics;
pub mod render;
mod replies;
pub mod started;
mod store;
mod timeouts;

/// The order fulfilment saga: `--saga`'s default.
pub const ORDER_FULFILMENT: &str = include_str!("../sagas/order-fulfilment.toml");

pub use handler::{HandleError, SagaHandler, Topics};
pub use replies::ReplyError;
pub use store::{LogLine, ReplyEffect, Sagas, Start, Store, StoreError, Summary, Traced};
pub use timeouts::{TimeoutSettings, owned as timeout_loop};
