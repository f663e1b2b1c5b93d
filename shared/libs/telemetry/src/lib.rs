//! Observability for Sluice services, set up the same way in every binary:
//!
//! - logs through `tracing`, human-readable locally and JSON in containers;
//! - spans exported with OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (a base
//!   URL, `/v1/traces` appended) or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the
//!   full URL) is set, as the OpenTelemetry spec says, and
//!   W3C trace context carried in Kafka headers so one trace spans ingest →
//!   transformer → sink;
//! - a small HTTP server with `/metrics` (Prometheus), `/healthz` (alive:
//!   503 once [`liveness::mark_dead`] was called) and `/readyz` (every
//!   dependency reachable).

mod health;
mod init;
pub mod liveness;
mod propagation;

pub use health::{ReadinessCheck, health_router, serve_health};
pub use init::{
    LogFormat, Telemetry, TelemetryConfig, TelemetryError, init, prometheus_handle, traces_endpoint,
};
pub use propagation::{
    CORRELATION_ID_HEADER, batch_span, child_span_context_headers, correlation_id, extract_parent,
    join_remote_trace, message_span, message_trace_id, outgoing_trace_headers, owned_headers,
    trace_id,
};
