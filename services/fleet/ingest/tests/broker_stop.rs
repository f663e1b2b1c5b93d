//! The broker stopped and started again while clients post events: every
//! event ingest answered 202 for is on Kafka afterwards; while the broker is
//! down the answer is 503 (Retry-After), never a 202; once it is back, 202s
//! again. In a test binary of its
//! own, as it stops the shared broker.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{TOKEN, order_placed, post, serve};
use futures::StreamExt;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use sluice_kafka::KafkaConfig;
use sluice_testkit::{Stack, TestTopic, eventually, unique_name};

const CLIENTS: usize = 4;

fn kafka(action: &str) {
    let status = Command::new("bash")
        .arg(Stack::get().path("deploy/local/kafka.sh"))
        .arg(action)
        .status()
        .unwrap();
    assert!(status.success(), "kafka.sh {action}");
}

/// Posts events with fresh ids until `stop`, counting 202s in `accepted`;
/// returns (event id, status) of each.
async fn client(
    base: String,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
) -> Vec<(String, u16)> {
    let mut answers = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let id = uuid::Uuid::new_v4().to_string();
        let mut event = order_placed();
        event["event_id"] = id.clone().into();
        let (status, _) = post(&base, Some(TOKEN), &event).await;
        if status == 202 {
            accepted.fetch_add(1, Ordering::Relaxed);
        }
        answers.push((id, status));
        if status != 202 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_202_for_an_event_the_stopped_broker_does_not_have() {
    let stack = Stack::get();
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-broker-stop", 1).await;
    // As ingest's main builds it: acks=all, idempotent, a delivery that is
    // not acknowledged within the ack timeout fails rather than lands later.
    let base = serve(&topic.name, KafkaConfig::new(&stack.kafka_bootstrap)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let accepted_count = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(client(
                base.clone(),
                Arc::clone(&stop),
                Arc::clone(&accepted_count),
            ))
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    kafka("stop");
    tokio::time::sleep(Duration::from_secs(6)).await;
    kafka("start");
    // Accepted again once the producer has found the broker back.
    let before = accepted_count.load(Ordering::Relaxed);
    eventually(
        "posts accepted again after the restart",
        Duration::from_secs(90),
        || {
            let accepted = accepted_count.load(Ordering::Relaxed);
            async move { (accepted >= before + 20).then_some(()) }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for client in clients {
        answers.extend(client.await.unwrap());
    }
    let accepted: HashSet<&str> = answers
        .iter()
        .filter(|(_, status)| *status == 202)
        .map(|(id, _)| id.as_str())
        .collect();
    let refused = answers.iter().filter(|(_, status)| *status == 503).count();
    assert!(refused > 0, "the broker was down: some posts must get 503");
    assert!(
        answers
            .iter()
            .all(|(_, status)| matches!(status, 202 | 503)),
        "only 202 or 503"
    );

    // Everything on the topic, read back by event id.
    let consumer: StreamConsumer = stack
        .kafka_config()
        .set("group.id", unique_name("ingest-broker-stop"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic.name]).unwrap();
    let mut on_kafka: HashSet<String> = HashSet::new();
    let mut messages = consumer.stream();
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while !accepted.iter().all(|id| on_kafka.contains(*id)) {
            let message = messages.next().await.unwrap().unwrap();
            let id = message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "sluice.event_id"))
                .and_then(|h| h.value)
                .unwrap();
            on_kafka.insert(String::from_utf8(id.to_vec()).unwrap());
        }
    })
    .await;
    let missing: Vec<&&str> = accepted
        .iter()
        .filter(|id| !on_kafka.contains(**id))
        .collect();
    assert!(
        missing.is_empty(),
        "202 given but not on Kafka: {missing:?}"
    );
    let refused_but_there = answers
        .iter()
        .filter(|(id, status)| *status == 503 && on_kafka.contains(id))
        .count();
    eprintln!(
        "{} posts: {} accepted (all on Kafka), {refused} refused with 503 ({refused_but_there} of them on Kafka anyway; a client's retry with the same event id is deduplicated downstream)",
        answers.len(),
        accepted.len()
    );
}
