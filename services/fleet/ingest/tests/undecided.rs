//! A batch's commit whose outcome is open when the ack timeout passes: the
//! broker went silent after taking the commit request. The answer must say
//! what readers will see — never "not accepted" of events that land.
//! Alone in its binary: it cuts the shared broker off.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, Producer};
use sluice_ingest::{Outgoing, Publisher};
use sluice_kafka::KafkaConfig;
use sluice_testkit::{KafkaCutOff, Stack, TestTopic, committed_messages, unique_name};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Cuts the broker off the moment the publisher starts a commit, so the
/// commit request reaches a broker that answers only once it runs again.
struct CutOffAtCommit(Mutex<Option<KafkaCutOff>>);

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for CutOffAtCommit {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        if message.0 == "committing a batch's transaction" {
            let mut cut = self.0.lock().unwrap();
            if cut.is_none() {
                *cut = Some(KafkaCutOff::begin());
            }
        }
    }
}

fn outgoing(topic: &str, key: &str) -> Outgoing {
    Outgoing {
        topic: topic.to_owned(),
        key: key.to_owned(),
        value: key.as_bytes().to_vec(),
        headers: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_still_open_at_the_ack_timeout_is_answered_as_it_ends() {
    let topic = TestTopic::create("ingest-undecided", 1).await;
    let ack_timeout = Duration::from_secs(2);
    let prefix = unique_name("ingest-undecided");
    let publisher = Publisher::new(
        &KafkaConfig::new(&Stack::get().kafka_bootstrap),
        &prefix,
        1,
        ack_timeout,
    )
    .unwrap();
    let cut = std::sync::Arc::new(CutOffAtCommit(Mutex::new(None)));
    let layer = std::sync::Arc::clone(&cut);
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Forward(layer)))
        .unwrap();

    let events = [outgoing(&topic.name, "a"), outgoing(&topic.name, "b")];
    let publishing = tokio::spawn(async move { publisher.publish(&events).await });
    // Past the ack timeout and what an abort would wait, well within the
    // transaction timeout (twice the ack timeout), after which the
    // coordinator itself would abort it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let taken = cut.0.lock().unwrap().take();
    taken.expect("the publisher never started a commit").end();
    let answer = publishing.await.unwrap();
    // Whatever the publisher left open ends now: a producer with its
    // transactional id completes a commit the coordinator took, or aborts.
    let successor: BaseProducer = Stack::get()
        .kafka_config()
        .set("transactional.id", format!("{prefix}-0"))
        .create()
        .unwrap();
    successor
        .init_transactions(Duration::from_secs(30))
        .unwrap();

    // The coordinator had the commit request before the cut, and the cut
    // ended inside the transaction timeout: the commit lands, and so the
    // answer must be that it did.
    let seen = committed_messages(&topic.name).await.len();
    match answer {
        Ok(()) => assert_eq!(seen, 2, "answered accepted, readers see {seen} of 2"),
        Err(err) => panic!("answered {err}, and readers see {seen} of 2"),
    }
}

/// The layer behind an `Arc`, so the test keeps a handle on it.
struct Forward(std::sync::Arc<CutOffAtCommit>);

impl<S: tracing::Subscriber> Layer<S> for Forward {
    fn on_event(&self, event: &tracing::Event<'_>, context: Context<'_, S>) {
        self.0.on_event(event, context);
    }
}
