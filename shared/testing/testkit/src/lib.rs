//! Test kit for Sluice's integration tests: finds the local stack started by
//! `make stack-up` (through `.local/stack.env`), and hands each test its own
//! topics, consumer groups and subjects so tests run in parallel and in any
//! order against the one broker, registry and database.
//!
//! A test kit fails the test that uses it, so its helpers panic with the
//! reason instead of returning errors.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod bench;
mod fault;
mod interop;
mod kafka;
mod metrics;
mod outage;
mod pace;
mod process;
mod prometheus;
pub mod samples;
mod stack;
mod traces;
mod wait;

pub use bench::{
    Scaling, bench_results_dir, bench_scale, median, per_second_over, percentile, rounds, scaled,
    scaled_duration, through_replicas,
};
pub use fault::raise_fatal_error;
pub use interop::{
    Delivery, confluent_produce, confluent_send, console_produce, evolved_schema, kcat_produce,
};
pub use kafka::{
    TestTopic, committed_messages, committed_offsets, committed_total, consume_exactly,
    message_count, producer, register_value_schema, until_committed,
};
pub use metrics::{breaker_transitions, metric, process_metrics};
pub use outage::{KafkaCutOff, PostgresOutage};
pub use pace::{Pace, most_in_a_second};
pub use process::{KillOnDrop, free_port, token_sha256};
pub use prometheus::Prometheus;
pub use stack::{Stack, unique_name};
pub use traces::{TracedSpan, trace_spans};
pub use wait::{eventually, logged, readiness_status};
