//! W3C trace context (`traceparent`, `tracestate`) in Kafka headers.

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::global;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt, TraceId};
use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct KafkaHeaders<'a, H>(&'a H);

impl<H: Headers> Extractor for KafkaHeaders<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|header| header.key.eq_ignore_ascii_case(key))
            .and_then(|header| std::str::from_utf8(header.value?).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|header| header.key).collect()
    }
}

struct HeaderMap(HashMap<String, String>);

impl Injector for HeaderMap {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// The trace context a message carries in its headers (empty when it has
/// none): the parent of the span that handles it.
pub fn extract_parent<H: Headers>(headers: Option<&H>) -> Context {
    match headers {
        Some(headers) => {
            global::get_text_map_propagator(|propagator| propagator.extract(&KafkaHeaders(headers)))
        }
        None => Context::new(),
    }
}

/// Makes `span` the child of the W3C trace context an HTTP request carried
/// (`lookup` reads a request header), so a client's trace goes on through
/// Sluice; a request without one starts a trace.
pub fn join_remote_trace<'a>(span: &tracing::Span, lookup: impl Fn(&str) -> Option<&'a str>) {
    let carried: HashMap<String, String> = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|key| Some((key.to_owned(), lookup(key)?.to_owned())))
        .collect();
    if carried.is_empty() {
        return;
    }
    let parent = global::get_text_map_propagator(|propagator| propagator.extract(&carried));
    // Fails only when no OpenTelemetry layer is installed: no trace to join.
    let _ = span.set_parent(parent);
}

/// A span for handling `message`, the child of the trace context its
/// headers carry. Its fields — topic, partition, offset and the trace id —
/// are on every JSON log line written while it is entered, so an operator
/// finds a message's lines by any of them.
pub fn message_span<M: Message>(message: &M) -> tracing::Span {
    let span = tracing::info_span!(
        "message",
        topic = message.topic(),
        partition = message.partition(),
        offset = message.offset(),
        trace_id = tracing::field::Empty,
    );
    // Fails only when no OpenTelemetry layer is installed: no trace to join.
    let _ = span.set_parent(extract_parent(message.headers()));
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
    span
}

/// Headers carrying `span`'s context (a `traceparent` naming `span` as the
/// parent), for the messages produced while handling it. Empty when the span
/// has no valid context (telemetry not set up).
pub fn child_span_context_headers(span: &tracing::Span) -> Vec<(String, Vec<u8>)> {
    let mut headers = HeaderMap(HashMap::new());
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&span.context(), &mut headers)
    });
    let mut headers: Vec<(String, Vec<u8>)> = headers
        .0
        .into_iter()
        .map(|(key, value)| (key, value.into_bytes()))
        .collect();
    headers.sort();
    headers
}

/// Headers for the messages produced while handling `input` in `span`:
/// `span`'s context, or, with no tracing pipeline in this process, the
/// context `input` came with, passed on as it was.
pub fn outgoing_trace_headers<M: Message>(
    span: &tracing::Span,
    input: &M,
) -> Vec<(String, Vec<u8>)> {
    let headers = child_span_context_headers(span);
    if !headers.is_empty() {
        return headers;
    }
    input
        .headers()
        .map(|headers| {
            headers
                .iter()
                .filter(|h| h.key == "traceparent" || h.key == "tracestate")
                .filter_map(|h| Some((h.key.to_owned(), h.value?.to_vec())))
                .collect()
        })
        .unwrap_or_default()
}

/// Kafka headers from (name, value) pairs, in order; a `None` value is a
/// header without one.
pub fn owned_headers<K, V>(pairs: impl IntoIterator<Item = (K, Option<V>)>) -> OwnedHeaders
where
    K: AsRef<str>,
    V: AsRef<[u8]>,
{
    pairs
        .into_iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| {
            headers.insert(Header {
                key: key.as_ref(),
                value: value.as_ref().map(AsRef::as_ref),
            })
        })
}
