//! Kafka for Sluice services.
//!
//! - [`idempotent_producer`]: `acks=all`, idempotence on, so a retried send
//!   never duplicates and an acknowledged one is on every in-sync replica.
//! - [`ConsumerLoop`]: at-least-once consumption. Each partition is handled
//!   in order by its own task, partitions run concurrently (bounded), and an
//!   offset is stored for commit only once its message is handled: done, or
//!   dead-lettered with Kafka's acknowledgement. A partition whose handler
//!   cannot keep up (or waits out an outage) is paused, never dead-lettered.
//! - [`ReplyPublisher`]: a sink's answer to a command, on Kafka before the
//!   command's offset is stored: awaited, or [`Owed`] to the loop, which
//!   sends it while it handles the partition's next batch.
//! - [`AuditLog`]: the audit trail of what a service did outside, on
//!   Kafka before the offset of what caused it is stored.
//! - [`TransactionalLoop`]: exactly-once consume → transform → produce, the
//!   input offsets committed in the same Kafka transaction as the outputs.
//!
//! Both loops export `sluice_partition_stalled` for a partition with
//! messages waiting that has not moved for their `stall_after`.

mod audit;
mod config;
mod consumer;
mod headers;
mod limits;
mod metrics;
mod owed;
mod producer;
mod readiness;
mod reply;
mod sink_error;
mod skip;
mod stall;
mod transactional;
mod verdict;

pub use audit::AuditLog;
pub use config::{KafkaConfig, KafkaSetupError};
pub use consumer::{ConsumerError, ConsumerLoop, ConsumerSettings, Handler, HandlerError, Order};
pub use limits::{RECORD_OVERHEAD, TopicLimits};
pub use owed::Owed;
pub use producer::idempotent_producer;
pub use readiness::{KafkaReadiness, PROBE_TIMEOUT, kafka_and_registry};
pub use reply::{ReplyError, ReplyPublisher};
pub use sink_error::SinkError;
pub use transactional::{
    OutputRecord, TransactionalLoop, TransactionalSettings, Transformer, blocking,
};
