//! W3C trace context (`traceparent`, `tracestate`) and the business
//! correlation id (`sluice.correlation_id`) in Kafka headers.

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

/// The header carrying the correlation id of the flow a message is part
/// of (an order's, a request's): set from the event by whatever takes it in
/// or maps it, passed on to every command, result and saga step after it,
/// and a field of every log line written while handling the message.
pub const CORRELATION_ID_HEADER: &str = "sluice.correlation_id";

/// The message's correlation id, when its header holds one.
pub fn correlation_id<M: Message>(message: &M) -> Option<&str> {
    message
        .headers()?
        .iter()
        .find(|header| header.key == CORRELATION_ID_HEADER)
        .and_then(|header| std::str::from_utf8(header.value?).ok())
        .filter(|id| !id.is_empty())
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
/// headers carry. Its fields — topic, partition, offset, the trace id and
/// the correlation id — are on every JSON log line written while it is
/// entered, so an operator finds a message's lines by any of them.
pub fn message_span<M: Message>(message: &M) -> tracing::Span {
    handling_span(message, correlation_id(message), None)
}

/// A span for handling `batch` (messages of one partition, in order) at
/// once: its first message's trace and coordinates, its size, and the
/// correlation id only when every message shares it (a line about the batch
/// is not about one flow otherwise).
pub fn batch_span<M: Message>(batch: &[M]) -> tracing::Span {
    let Some(first) = batch.first() else {
        return tracing::Span::none();
    };
    let shared =
        correlation_id(first).filter(|id| batch.iter().all(|m| correlation_id(m) == Some(*id)));
    handling_span(first, shared, Some(batch.len()))
}

fn handling_span<M: Message>(
    message: &M,
    correlation_id: Option<&str>,
    batch_size: Option<usize>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "message",
        topic = message.topic(),
        partition = message.partition(),
        offset = message.offset(),
        trace_id = tracing::field::Empty,
        correlation_id,
        batch_size,
    );
    // Fails only when no OpenTelemetry layer is installed: no trace to join.
    let _ = span.set_parent(extract_parent(message.headers()));
    if let Some(trace_id) = trace_id(&span) {
        span.record("trace_id", trace_id.as_str());
    }
    span
}

/// The W3C trace id `message` came in with, read from its headers (none
/// without one, or with no tracing pipeline): the trace its handling span
/// joins, without making (and exporting) a span to learn it.
pub fn message_trace_id<M: Message>(message: &M) -> Option<String> {
    valid(
        extract_parent(message.headers())
            .span()
            .span_context()
            .trace_id(),
    )
}

/// The W3C trace id `span` belongs to, when it is traced.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    valid(span.context().span().span_context().trace_id())
}

fn valid(trace_id: TraceId) -> Option<String> {
    (trace_id != TraceId::INVALID).then(|| trace_id.to_string())
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
/// context `input` came with, passed on as it was; and `input`'s
/// correlation id.
pub fn outgoing_trace_headers<M: Message>(
    span: &tracing::Span,
    input: &M,
) -> Vec<(String, Vec<u8>)> {
    let mut headers = child_span_context_headers(span);
    if headers.is_empty() {
        headers = input
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .filter(|h| h.key == "traceparent" || h.key == "tracestate")
                    .filter_map(|h| Some((h.key.to_owned(), h.value?.to_vec())))
                    .collect()
            })
            .unwrap_or_default();
    }
    if let Some(id) = correlation_id(input) {
        headers.push((CORRELATION_ID_HEADER.to_owned(), id.as_bytes().to_vec()));
    }
    headers
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, PoisonError};

    use rdkafka::message::{OwnedMessage, Timestamp};
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Log lines written here.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            lines.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn message(headers: OwnedHeaders) -> OwnedMessage {
        OwnedMessage::new(
            Some(b"value".to_vec()),
            Some(b"order-7".to_vec()),
            "sheets.rows.v1".to_owned(),
            Timestamp::NotAvailable,
            2,
            41,
            Some(headers),
        )
    }

    /// The one JSON line `log` writes, as a service with `SLUICE_LOG=filter`
    /// writes it.
    fn logged(filter: &str, log: impl FnOnce()) -> serde_json::Value {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry().with(
            crate::init::json_logs(move || writer.clone()).with_filter(crate::init::log_filter(
                tracing_subscriber::EnvFilter::new(filter),
            )),
        );
        tracing::subscriber::with_default(subscriber, log);
        let written = lines
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        serde_json::from_slice(&written).expect("one JSON log line")
    }

    fn with_correlation(id: &'static str) -> OwnedMessage {
        message(OwnedHeaders::new().insert(Header {
            key: CORRELATION_ID_HEADER,
            value: Some(id),
        }))
    }

    #[test]
    fn a_log_line_written_while_handling_a_message_names_it_and_its_correlation_id() {
        let input = with_correlation("corr-7");
        // At warn, the line is kept, and its span's fields with it.
        let line = logged("warn", || {
            let _entered = message_span(&input).entered();
            tracing::info!("not shown at warn");
            tracing::warn!("row refused");
        });
        let span = &line["span"];
        assert_eq!(span["correlation_id"], "corr-7", "{line}");
        assert_eq!(span["topic"], "sheets.rows.v1", "{line}");
        assert_eq!(
            (span["partition"].as_i64(), span["offset"].as_i64()),
            (Some(2), Some(41))
        );

        // Passed on to what handling it produces, whatever the tracing.
        let outgoing = outgoing_trace_headers(&tracing::Span::none(), &input);
        assert!(
            outgoing.contains(&(CORRELATION_ID_HEADER.to_owned(), b"corr-7".to_vec())),
            "{outgoing:?}"
        );
        // A batch's lines name the flow only when every message is of it.
        for (batch, expected) in [
            (
                [with_correlation("corr-7"), with_correlation("corr-7")],
                serde_json::json!("corr-7"),
            ),
            (
                [with_correlation("corr-7"), with_correlation("corr-8")],
                serde_json::Value::Null,
            ),
        ] {
            let line = logged("info", || {
                let _entered = batch_span(&batch).entered();
                tracing::info!("rows written");
            });
            assert_eq!(line["span"]["correlation_id"], expected, "{line}");
            assert_eq!(line["span"]["batch_size"], 2, "{line}");
        }

        let without = message(OwnedHeaders::new());
        assert_eq!(correlation_id(&without), None);
        // A careless producer's header: not UTF-8, or empty, names no flow.
        for value in [&b"\xff\xfe"[..], b""] {
            let odd = message(OwnedHeaders::new().insert(Header {
                key: CORRELATION_ID_HEADER,
                value: Some(value),
            }));
            assert_eq!(correlation_id(&odd), None);
        }
        assert!(outgoing_trace_headers(&tracing::Span::none(), &without).is_empty());
    }
}
