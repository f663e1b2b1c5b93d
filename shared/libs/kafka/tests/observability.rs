//! What an operator sees of a running loop: `/metrics` scraped and parsed,
//! `/healthz` and `/readyz`, and a trace context that goes in as a header and
//! comes out on the produced message.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use sluice_avro::AvroCodec;
use sluice_dlq::DeadLetterPublisher;
use sluice_kafka::{
    KafkaConfig, KafkaReadiness, OutputRecord, TransactionalLoop, TransactionalSettings,
    Transformer,
};
use sluice_resilience::{BreakerConfig, CircuitBreaker};
use sluice_telemetry::{LogFormat, ReadinessCheck, TelemetryConfig, health_router, serve_health};

mod common;
use common::{TestError, no_retries};
use sluice_testkit::{
    Stack, TestTopic, committed_offsets, consume_exactly, eventually, producer, unique_name,
};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(60);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

struct Copier {
    output: String,
}

impl Transformer for Copier {
    type Error = TestError;

    async fn transform(&self, message: &OwnedMessage) -> Result<Vec<OutputRecord>, TestError> {
        let payload = message.payload().unwrap_or_default().to_vec();
        if payload.starts_with(b"poison") {
            return Err(TestError::permanent("poison"));
        }
        Ok(vec![OutputRecord {
            topic: self.output.clone(),
            key: None,
            payload,
            headers: vec![],
        }])
    }
}

/// `name{labels} value` lines of the Prometheus text format.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap();
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            (name.to_owned(), labels, value.parse().unwrap())
        })
        .collect()
}

fn value(
    samples: &[(String, BTreeMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, value)| *value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_trace_context_of_a_running_loop() {
    let _telemetry = sluice_telemetry::init(&TelemetryConfig {
        service_name: "observability-test".into(),
        log_format: LogFormat::Json,
        log_filter: "warn".into(),
        otlp_endpoint: None,
    })
    .unwrap();
    let metrics = sluice_telemetry::prometheus_handle().unwrap();
    let stack = Stack::get();
    let kafka = KafkaConfig::new(&stack.kafka_bootstrap);

    let kafka_check: Arc<dyn ReadinessCheck> =
        Arc::new(KafkaReadiness::new(&kafka, Duration::from_secs(5)).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve_health(
        listener,
        health_router(metrics.clone(), vec![kafka_check]),
        std::future::pending(),
    ));

    // A sink's breaker that tripped.
    let breaker = CircuitBreaker::new(
        "observability-sink",
        BreakerConfig {
            failure_threshold: 1,
            failure_rate: None,
            slow_call: None,
            open_wait: Duration::from_secs(60),
            half_open_permits: 1,
            success_threshold: 1,
        },
    )
    .unwrap();
    breaker.try_acquire().unwrap().failure();

    let input = TestTopic::create("obs-input", 1).await;
    let output = TestTopic::create("obs-output", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "obs-dlq", 1).await;
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN}-01");
    for (i, payload) in ["a", "b", "poison", "c"].into_iter().enumerate() {
        let mut record = FutureRecord::to(&input.name)
            .key("order-1")
            .payload(payload);
        if i == 0 {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: "traceparent",
                value: Some(&traceparent),
            }));
        }
        producer()
            .send(record, Duration::from_secs(30))
            .await
            .unwrap();
    }

    let group = unique_name("obs-group");
    let settings = TransactionalSettings {
        group_id: group.clone(),
        topics: vec![input.name.clone()],
        transactional_id: unique_name("obs-tx"),
        max_batch: 10,
        batch_linger: Duration::from_millis(20),
        retry: no_retries(),
        abort_backoff: Duration::from_millis(100),
        transaction_timeout: Duration::from_secs(30),
        stall_after: Duration::from_secs(300),
    };
    let codec = Arc::new(AvroCodec::new(stack.registry_settings()));
    let dead_letters =
        DeadLetterPublisher::new(producer(), codec, &dlq.name, "observability-test", "0.0.0");
    let transformer = Copier {
        output: output.name.clone(),
    };
    let running = TransactionalLoop::new(&kafka, settings, transformer, &dead_letters).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(running.run(async { stopped.await.unwrap_or(()) }));
    eventually("the four inputs committed", WAIT, || {
        let committed = committed_offsets(&group, &input.name, 1).get(&0) == Some(&4);
        async move { committed.then_some(()) }
    })
    .await;
    // Everything read and committed: the loop's lag is 0. (It counts from
    // the loop's position; the consumer's own committed offset, which a
    // transactional loop never moves, gave none at first, then only grew.)
    eventually("the lag gauge at 0", WAIT, || {
        let lag = value(
            &samples(&metrics.render()),
            "sluice_consumer_lag",
            &[("topic", &input.name), ("partition", "0")],
        );
        async move { (lag == Some(0.0)).then_some(()) }
    })
    .await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();

    // The trace goes on: same trace id, the handling span as the new parent.
    let outputs = consume_exactly(&output.name, 3, WAIT).await;
    let first = outputs
        .iter()
        .find(|m| m.payload() == Some(&b"a"[..]))
        .unwrap();
    let header = first
        .headers()
        .unwrap()
        .iter()
        .find(|h| h.key == "traceparent")
        .unwrap();
    let out_traceparent = String::from_utf8(header.value.unwrap().to_vec()).unwrap();
    let parts: Vec<&str> = out_traceparent.split('-').collect();
    assert_eq!(parts[1], TRACE_ID, "{out_traceparent}");
    assert_ne!(
        parts[2], PARENT_SPAN,
        "the output's parent is the span that handled the input"
    );

    let client = reqwest::Client::new();
    let get = |path: &str| {
        let client = client.clone();
        let url = format!("http://{address}{path}");
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let (status, text) = get("/metrics").await;
    assert_eq!(status, 200);
    let samples = samples(&text);
    assert_eq!(
        value(&samples, "sluice_consumed_total", &[("topic", &input.name)]),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "sluice_produced_total",
            &[("topic", &output.name)]
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "sluice_dead_lettered_total",
            &[("topic", &input.name), ("class", "PERMANENT")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "sluice_breaker_state",
            &[("breaker", "observability-sink")]
        ),
        Some(2.0),
        "{text}"
    );
    assert!(
        text.contains("# HELP sluice_breaker_state"),
        "metrics are described"
    );

    assert_eq!(get("/healthz").await, (200, "ok\n".into()));
    assert_eq!(get("/readyz").await, (200, "kafka: ok\n".into()));

    // An unreachable dependency makes the service unready, with the reason.
    let dead_kafka = KafkaConfig::new("127.0.0.1:1");
    let dead_check: Arc<dyn ReadinessCheck> =
        Arc::new(KafkaReadiness::new(&dead_kafka, Duration::from_millis(500)).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let unready = listener.local_addr().unwrap();
    tokio::spawn(serve_health(
        listener,
        health_router(metrics, vec![dead_check]),
        std::future::pending(),
    ));
    let response = client
        .get(format!("http://{unready}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.text().await.unwrap().starts_with("kafka: "));
}
