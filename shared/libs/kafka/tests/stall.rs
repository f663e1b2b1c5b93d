//! The transactional loop's stalls: a transformer that holds (its dependency
//! away) keeps its partition at the held message's offset, which
//! `sluice_partition_stalled` names once the stall time has passed, and
//! clears once the transformer lets it through. (The at-least-once loop's
//! are tested through erp-sink.)
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureRecord;
use sluice_avro::AvroCodec;
use sluice_dlq::DeadLetterPublisher;
use sluice_kafka::{
    KafkaConfig, OutputRecord, TransactionalLoop, TransactionalSettings, Transformer,
};
use sluice_testkit::{
    Stack, TestTopic, committed_offsets, eventually, metric, producer, unique_name,
};

mod common;
use common::{TestError, no_retries};

const WAIT: Duration = Duration::from_secs(60);

/// Makes nothing; holds every message while `away` is set.
struct Holder {
    away: Arc<AtomicBool>,
}

impl Transformer for Holder {
    type Error = TestError;

    async fn transform(&self, _: &OwnedMessage) -> Result<Vec<OutputRecord>, TestError> {
        if self.away.load(Ordering::SeqCst) {
            return Err(TestError::pause("away", Duration::from_millis(200)));
        }
        Ok(Vec::new())
    }
}

async fn send(topic: &str, payload: &str) {
    producer()
        .send(
            FutureRecord::<(), _>::to(topic).payload(payload),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_partition_of_the_transactional_loop_is_named_until_it_moves() {
    let metrics = sluice_telemetry::prometheus_handle().unwrap();
    let stack = Stack::get();
    let input = TestTopic::create("stall-input", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "stall-dlq", 1).await;
    let group = unique_name("stall-group");
    let settings = TransactionalSettings {
        group_id: group.clone(),
        topics: vec![input.name.clone()],
        transactional_id: unique_name("stall-tx"),
        max_batch: 10,
        batch_linger: Duration::from_millis(20),
        retry: no_retries(),
        abort_backoff: Duration::from_millis(100),
        transaction_timeout: Duration::from_secs(30),
        stall_after: Duration::from_secs(1),
    };
    let dead_letters = DeadLetterPublisher::new(
        producer(),
        Arc::new(AvroCodec::new(stack.registry_settings())),
        &dlq.name,
        "stall-test",
        "0.0.0",
    );
    let away = Arc::new(AtomicBool::new(false));
    let transformer = Holder {
        away: Arc::clone(&away),
    };
    let kafka = KafkaConfig::new(&stack.kafka_bootstrap);
    let running = TransactionalLoop::new(&kafka, settings, transformer, &dead_letters).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(running.run(async { stopped.await.unwrap_or(()) }));
    let committed = |offset: i64| {
        let group = group.clone();
        let topic = input.name.clone();
        move || {
            let done = committed_offsets(&group, &topic, 1).get(&0) == Some(&offset);
            async move { done.then_some(()) }
        }
    };
    send(&input.name, "a").await;
    eventually("offset 0 committed", WAIT, committed(1)).await;

    away.store(true, Ordering::SeqCst);
    send(&input.name, "b").await;
    send(&input.name, "c").await;
    let labels = [
        ("topic", input.name.as_str()),
        ("partition", "0"),
        ("reason", "handler"),
    ];
    let stalled = || metric(&metrics.render(), "sluice_partition_stalled", &labels);
    eventually("the stall at offset 1", WAIT, || {
        let value = stalled();
        async move { (value == 1.0).then_some(()) }
    })
    .await;

    away.store(false, Ordering::SeqCst);
    eventually("both committed", WAIT, committed(3)).await;
    eventually("the stall cleared", WAIT, || {
        let value = stalled();
        async move { (value == -1.0).then_some(()) }
    })
    .await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
}
