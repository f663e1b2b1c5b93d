//! A batch's commit whose outcome is open when the ack timeout passes: the
//! broker is cut off (SIGSTOP) the moment the commit starts, so its commit
//! request waits in the silent broker's socket until it runs again, inside
//! the transaction timeout. The answer must say what readers then see —
//! never "not accepted" of events that land. Alone in its binary: it cuts
//! the shared (single) broker off.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use sluice_ingest::{Outgoing, Publisher};
use sluice_kafka::KafkaConfig;
use sluice_testkit::{KafkaCutOff, Stack, TestTopic, committed_messages, unique_name};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

const COMMITTING: &str = "committing a batch's transaction";
const STILL_OPEN: &str = "a batch's commit is still undecided; asking again";

/// Watches the publisher's log: cuts the broker off once, when armed, as a
/// commit starts, handing the cut to the test; notes a commit left open.
struct Watch {
    armed: AtomicBool,
    cut: Mutex<Option<mpsc::Sender<KafkaCutOff>>>,
    left_open: AtomicBool,
}

fn watch() -> &'static Watch {
    static WATCH: OnceLock<Watch> = OnceLock::new();
    WATCH.get_or_init(|| Watch {
        armed: AtomicBool::new(false),
        cut: Mutex::new(None),
        left_open: AtomicBool::new(false),
    })
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

struct WatchLayer;

impl<S: tracing::Subscriber> Layer<S> for WatchLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        let watch = watch();
        if message.0 == STILL_OPEN {
            watch.left_open.store(true, Ordering::SeqCst);
        }
        if message.0 == COMMITTING && watch.armed.swap(false, Ordering::SeqCst) {
            let cut = KafkaCutOff::begin();
            // The test owns the cut from here: it ends it, or its drop does.
            if let Some(to_test) = watch.cut.lock().unwrap().as_ref() {
                let _ = to_test.send(cut);
            }
        }
    }
}

/// Disarms the watch however the test ends, so no later commit cuts the
/// broker off with nobody left to let it run again.
struct Disarm;

impl Drop for Disarm {
    fn drop(&mut self) {
        watch().armed.store(false, Ordering::SeqCst);
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

/// One committed transaction on `topic` by another id first: the
/// transaction log exists and its coordinator answers before the cut.
fn warm_up(topic: &str) {
    let producer: BaseProducer = Stack::get()
        .kafka_config()
        .set("transactional.id", unique_name("ingest-undecided-warm"))
        .create()
        .unwrap();
    producer.init_transactions(Duration::from_secs(60)).unwrap();
    producer.begin_transaction().unwrap();
    producer
        .send(BaseRecord::to(topic).key("warm").payload("warm"))
        .map_err(|(err, _)| err)
        .unwrap();
    producer
        .commit_transaction(Duration::from_secs(60))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_still_open_at_the_ack_timeout_is_answered_as_it_ends() {
    let topic = TestTopic::create("ingest-undecided", 1).await;
    let name = topic.name.clone();
    tokio::task::spawn_blocking(move || warm_up(&name))
        .await
        .unwrap();
    let ack_timeout = Duration::from_secs(2);
    let prefix = unique_name("ingest-undecided");
    let publisher = Publisher::new(
        &KafkaConfig::new(&Stack::get().kafka_bootstrap),
        &prefix,
        1,
        ack_timeout,
    )
    .unwrap();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(WatchLayer))
        .unwrap();
    let (to_test, cuts) = mpsc::channel();
    *watch().cut.lock().unwrap() = Some(to_test);
    let _disarm = Disarm;
    watch().armed.store(true, Ordering::SeqCst);

    let events = [outgoing(&topic.name, "a"), outgoing(&topic.name, "b")];
    let publishing = tokio::spawn(async move { publisher.publish(&events).await });
    let cut = tokio::task::spawn_blocking(move || cuts.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("the publisher never started a commit");
    // Past the ack timeout (and what an abort would wait), inside the
    // transaction timeout (twice the ack timeout, counted from the first
    // send just before), after which the coordinator would abort it.
    tokio::time::sleep(ack_timeout + Duration::from_secs(1)).await;
    cut.end();
    let answer = publishing.await.unwrap();
    // Whatever the publisher left open ends now: a producer with its
    // transactional id completes a commit the coordinator prepared, or aborts.
    let successor: BaseProducer = Stack::get()
        .kafka_config()
        .set("transactional.id", format!("{prefix}-0"))
        .create()
        .unwrap();
    successor
        .init_transactions(Duration::from_secs(30))
        .unwrap();

    // The warm-up's record and, the commit having been taken once the
    // broker ran again, the batch's two.
    let seen = committed_messages(&topic.name).await.len() - 1;
    match answer {
        Ok(()) => assert_eq!(seen, 2, "answered accepted, readers see {seen} of 2"),
        Err(err) => panic!("answered {err}, and readers see {seen} of 2"),
    }
    assert!(
        watch().left_open.load(Ordering::SeqCst),
        "the commit was never left open: the cut did not hold it past the ack timeout"
    );
}
