//! ingest's spans reach a real trace backend (the stack's Jaeger), configured
//! the two ways the OpenTelemetry spec allows: the generic base URL (as
//! compose and the chart give it) and the traces signal's full URL. The
//! client's trace goes on through the request's span onto the event.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{accepted, ingest_process};
use rdkafka::Message;
use rdkafka::message::Headers;
use sluice_testkit::{Stack, TestTopic, consume_exactly, eventually, free_port, trace_spans};

/// Runs ingest with `otel_env`, posts one event in a fresh trace, stops it
/// with SIGTERM; returns the trace id and the event's `traceparent`.
async fn one_traced_event(topic: &str, otel_env: (&str, String)) -> (String, String) {
    let api = free_port();
    let mut ingest = ingest_process(api, topic, &[otel_env]);
    let trace_id = format!("{:032x}", fastrand::u128(1..));
    let traceparent = format!("00-{trace_id}-{:016x}-01", fastrand::u64(1..));
    accepted(
        &format!("http://127.0.0.1:{api}"),
        &[("traceparent", &traceparent)],
        Duration::from_secs(60),
    )
    .await;
    ingest.assert_running("after the event");
    let stopped = Command::new("kill")
        .args(["-TERM", &ingest.0.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = eventually("ingest to exit", Duration::from_secs(30), || {
        let exited = ingest.0.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert!(status.success(), "ingest exited with {status}");
    let message = consume_exactly(topic, 1, Duration::from_secs(30))
        .await
        .remove(0);
    let carried = message
        .headers()
        .unwrap()
        .iter()
        .find(|header| header.key == "traceparent")
        .map(|header| String::from_utf8(header.value.unwrap().to_vec()).unwrap())
        .expect("the event carries a traceparent");
    (trace_id, carried)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_exports_its_request_spans_to_jaeger_under_the_clients_trace() {
    let base = Stack::get().otlp_endpoint.clone();
    for otel_env in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", base.clone()),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("{base}/v1/traces"),
        ),
    ] {
        let variable = otel_env.0;
        let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-traced", 1).await;
        let (trace_id, carried) = one_traced_event(&topic.name, otel_env).await;
        let spans = trace_spans(&trace_id, &["ingest"], Duration::from_secs(30)).await;
        let request = spans
            .iter()
            .find(|span| span.service == "ingest" && span.operation == "POST")
            .unwrap_or_else(|| panic!("{variable}: no request span in {spans:?}"));
        // The event names the request's span as its parent, so the services
        // that handle it join the same trace under ingest.
        assert_eq!(
            carried,
            format!("00-{trace_id}-{}-01", request.span_id),
            "{variable}"
        );
    }
}
