//! ingest: domain events over HTTP into Kafka. The binary (`main.rs`) wires
//! configuration, the runtime and [`router`]; tests serve the same router.
#![doc = include_str!("../README.md")]

mod api;
mod auth;
mod config;
mod error;
mod event;
mod idempotency;
mod webhook;

pub use api::{Accepted, AppState, router};
pub use auth::TokenHashes;
pub use config::IngestArgs;
pub use error::ApiError;
pub use event::{EventRouter, IncomingEvent, Prepared};
pub use idempotency::{Claim, IdempotencyStore};
pub use webhook::{WebhookSource, WebhookSources};
