//! Reading a trace back from the stack's Jaeger.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::{Stack, eventually};

/// One span of a trace: the service that recorded it and its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TracedSpan {
    /// `service.name` of the process that exported it.
    pub service: String,
    /// The span's name.
    pub operation: String,
    /// Its id (hex).
    pub span_id: String,
}

/// The spans of trace `trace_id` (32 hex digits), once Jaeger holds at least
/// one span of every service in `services`.
pub async fn trace_spans(trace_id: &str, services: &[&str], within: Duration) -> Vec<TracedSpan> {
    let url = format!("{}/api/traces/{trace_id}", Stack::get().jaeger_query_url);
    let client = reqwest::Client::new();
    let wanted: BTreeSet<&str> = services.iter().copied().collect();
    let what = format!("spans of {services:?} in trace {trace_id}");
    eventually(&what, within, || async {
        let body: Value = client.get(&url).send().await.ok()?.json().await.ok()?;
        let spans = spans_of(&body);
        let seen: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
        wanted.is_subset(&seen).then_some(spans)
    })
    .await
}

fn spans_of(body: &Value) -> Vec<TracedSpan> {
    let Some(trace) = body["data"].get(0) else {
        return Vec::new();
    };
    let service = |process: &Value| {
        trace["processes"][process.as_str().unwrap_or_default()]["serviceName"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    trace["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|span| TracedSpan {
            service: service(&span["processID"]),
            operation: span["operationName"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            span_id: span["spanID"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}
