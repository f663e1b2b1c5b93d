//! ingest: domain events over HTTP into Kafka. The binary (`main.rs`) wires
//! configuration, the runtime and [`router`]; tests serve the same router.
#![doc = include_str!("../README.md")]

mod api;
mod auth;
mod config;
mod error;
mod event;
mod idempotency;
mod publish;
mod server;
mod signature;
mod trail;
mod webhook;

pub use api::{Accepted, AppState, router};
pub use auth::TokenHashes;
pub use config::IngestArgs;
pub use error::ApiError;
pub use event::{EventIds, EventRouter, IncomingEvent, Prepared};
pub use idempotency::{Claim, IdempotencyKey, IdempotencyStore};
pub use publish::{Outgoing, PublishError, Publisher};
pub use server::{ServerLimits, serve};
pub use signature::{Refusal, Scheme, Verified};
pub use trail::RefusalBudget;
pub use webhook::{WebhookSource, WebhookSources};
