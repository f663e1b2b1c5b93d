//! One way to build a consumer service. Each service flattens the flags it
//! shares with the others ([`ConsumerArgs`], and [`RetryArgs`] and
//! [`UpstreamArgs`] where they apply) into its own, with its own defaults
//! ([`Defaults`]); the same flag names, variables and units everywhere.
//! [`Service::start`] turns them into the running parts (Kafka settings, the
//! codec, the health server) and [`Service::consume`] or
//! [`Service::transform`] into the loop, with its dead-letter publisher.
//! `main.rs` builds only what is its own: the handler.

mod args;
mod service;

pub use args::{ConsumerArgs, Defaults, RetryArgs, SinkArgs, SinkDefaults, UpstreamArgs};
pub use service::{Service, ServiceError, Tuning};
