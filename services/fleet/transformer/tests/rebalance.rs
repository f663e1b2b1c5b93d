//! Two transformer instances in one consumer group: the second joins in the
//! middle of the stream and the first leaves before its end — two
//! rebalances — and a `read_committed` reader still sees every command
//! exactly once, in order per key. Both instances did part of the work.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Names, Topics, decode, mapper, produce_cancellations, start, transactional_id};
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use sluice_contracts::types::{ScalarValue, SheetRowUpsert};
use sluice_kafka::{OutputRecord, Transformer};
use sluice_testkit::{consume_exactly, eventually, unique_name};
use sluice_transformer::{MapError, Mapper};

const EVENTS: usize = 20_000;
const AGGREGATES: usize = 120;
const WAIT: Duration = Duration::from_secs(180);

const RULES: &str = r#"
[[rules]]
id = "row"
aggregate = "orders"
event_type = "OrderCancelled"
[rules.sheet]
spreadsheet = "s"
sheet = "Shared"
key = { copy = "aggregate_id" }
columns = [{ column = "Seq", value = { copy = "payload.reason" } }]
"#;

/// The mapper, counting the events this instance handled.
struct Counted {
    mapper: Mapper,
    handled: Arc<AtomicUsize>,
}

impl Transformer for Counted {
    type Error = MapError;

    async fn transform(&self, message: &OwnedMessage) -> Result<Vec<OutputRecord>, MapError> {
        self.handled.fetch_add(1, Ordering::Relaxed);
        self.mapper.transform(message).await
    }
}

fn counted(names: &Names) -> (Counted, Arc<AtomicUsize>) {
    let handled = Arc::new(AtomicUsize::new(0));
    (
        Counted {
            mapper: mapper(RULES, names),
            handled: Arc::clone(&handled),
        },
        handled,
    )
}

async fn produce(names: &Names, range: std::ops::Range<usize>) {
    produce_cancellations(names, range, "9d000000", AGGREGATES, |_| "shop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_mid_stream_keeps_exactly_once() {
    let topics = Topics::new("transformer-rebalance", 6).await;
    let names = topics.names();
    let group = unique_name("transformer-rebalance");
    // Events keep coming for a while (about 1 000/s), so both instances
    // have work while the group changes.
    let producing = {
        let names = names.clone();
        tokio::spawn(async move {
            for start in (0..EVENTS).step_by(100) {
                produce(&names, start..start + 100).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let (first, first_handled) = counted(&names);
    let (stop_first, first_running) = start(first, &names, &group, &transactional_id());
    eventually("the first instance under way", WAIT, || {
        let handled = first_handled.load(Ordering::Relaxed);
        async move { (handled >= 1_000).then_some(()) }
    })
    .await;
    // The second joins while the first is busy: the group rebalances.
    let (second, second_handled) = counted(&names);
    let (stop_second, second_running) = start(second, &names, &group, &transactional_id());
    eventually("the second instance under way", WAIT, || {
        let handled = second_handled.load(Ordering::Relaxed);
        async move { (handled >= 1_000).then_some(()) }
    })
    .await;
    // The first leaves mid-stream: the group rebalances again.
    stop_first.send(()).unwrap();
    first_running.await.unwrap();
    let left_at = second_handled.load(Ordering::Relaxed);
    producing.await.unwrap();

    let rows = consume_exactly(&names.sheets, EVENTS, WAIT).await;
    stop_second.send(()).unwrap();
    second_running.await.unwrap();
    let mut seen: Vec<(String, usize)> = Vec::with_capacity(EVENTS);
    for message in &rows {
        let row: SheetRowUpsert = decode(message).await;
        let ScalarValue::String(seq) = &row.cells[0].value else {
            panic!("seq {:?}", row.cells[0].value);
        };
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        seen.push((key, seq.parse().unwrap()));
    }
    let seqs: HashSet<usize> = seen.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(seqs.len(), EVENTS, "every event's row, each once");
    let mut last: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, seq) in &seen {
        if let Some(previous) = last.insert(key, *seq) {
            assert!(previous < *seq, "{key}: {seq} after {previous}");
        }
    }
    let (first, second) = (
        first_handled.load(Ordering::Relaxed),
        second_handled.load(Ordering::Relaxed),
    );
    assert!(
        first > 0 && second > left_at,
        "both instances worked, the second after the first left: {first}, {second}"
    );
    eprintln!(
        "{EVENTS} events, two rebalances: {} rows read committed; events handled: first {first}, second {second} (more than {EVENTS} in all only if a transaction was redone)",
        rows.len()
    );
}
