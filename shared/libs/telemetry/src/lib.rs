//! Observability for Sluice services, set up the same way in every binary:
//!
//! - logs through `tracing`, human-readable locally and JSON in containers;
//! - spans exported with OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and
//!   W3C trace context carried in Kafka headers so one trace spans ingest →
//!   transformer → sink;
//! - a small HTTP server with `/metrics` (Prometheus), `/healthz` (alive) and
//!   `/readyz` (every dependency reachable).

mod health;
mod init;
mod propagation;

pub use health::{ReadinessCheck, health_router, serve_health};
pub use init::{LogFormat, Telemetry, TelemetryConfig, TelemetryError, init, prometheus_handle};
pub use propagation::{
    child_span_context_headers, extract_parent, message_span, outgoing_trace_headers,
};
