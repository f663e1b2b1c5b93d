//! 100 000 events through a transformer process SIGKILLed three times
//! mid-stream: a `read_committed` reader of the outputs sees every expected
//! command exactly once — count and set compared — in event order per key.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Names, Topics, header, mapper, numbered_id, produce_cancellations, start};
use futures::StreamExt;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use sluice_avro::AvroCodec;
use sluice_contracts::types::{ErpCommand, ScalarValue, SheetRowUpsert};
use sluice_testkit::{Stack, eventually, message_count, unique_name};

const EVENTS: usize = 100_000;
const AGGREGATES: usize = 300;
/// Every 4th event is also booked in the ERP.
const ERP_EVERY: usize = 4;
const KILLS: [i64; 3] = [15_000, 45_000, 75_000];
const WAIT: Duration = Duration::from_secs(300);

/// A row per cancelled order carrying its sequence number; ERP cancels for
/// the ones cancelled by "erp".
const RULES: &str = r#"
[[rules]]
id = "row"
aggregate = "orders"
event_type = "OrderCancelled"
[rules.sheet]
spreadsheet = "s"
sheet = "Load"
key = { copy = "aggregate_id" }
columns = [{ column = "Seq", value = { copy = "payload.reason" } }]

[[rules]]
id = "erp"
aggregate = "orders"
event_type = "OrderCancelled"
when = [{ field = "payload.cancelled_by", equals = "erp" }]
[rules.erp]
model = "sale.order"
operation = "CANCEL"
external_ref = { copy = "aggregate_id" }
fields = [{ name = "seq", value = { copy = "payload.reason" } }]
"#;

/// The transformer process. Run by the test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of sigkill_mid_stream_keeps_exactly_once"]
async fn transformer_child() {
    let names = Names::from_env();
    let group = std::env::var("GROUP").unwrap();
    let (_stop, running) = start(
        mapper(RULES, &names),
        &names,
        &group,
        &std::env::var("TRANSACTIONAL_ID").unwrap(),
    );
    running.await.unwrap();
}

fn spawn(names: &Names, group: &str, transactional_id: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .stdout(Stdio::null())
        .args(["--exact", "transformer_child", "--ignored", "--nocapture"])
        .envs(names.env())
        .env("GROUP", group)
        .env("TRANSACTIONAL_ID", transactional_id)
        .spawn()
        .unwrap()
}

/// Reads `topics` `read_committed` until `expected` messages came, and a
/// little longer to catch any extra; returns (key, seq, event id) per message.
async fn read_committed(topics: &[&str], expected: usize) -> Vec<(String, usize, String)> {
    let consumer: StreamConsumer = Stack::get()
        .kafka_config()
        .set("group.id", unique_name("transformer-kill-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    consumer.subscribe(topics).unwrap();
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let mut seen = Vec::with_capacity(expected);
    let mut stream = consumer.stream();
    let seq_of = |value: &ScalarValue| match value {
        ScalarValue::String(text) => text.parse::<usize>().unwrap(),
        other => panic!("seq {other:?}"),
    };
    loop {
        let wait = if seen.len() < expected {
            WAIT
        } else {
            Duration::from_secs(3)
        };
        let Ok(next) = tokio::time::timeout(wait, stream.next()).await else {
            break;
        };
        let message = next.unwrap().unwrap().detach();
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        let command = header(&message, "sluice.command_id").unwrap();
        let payload = message.payload().unwrap();
        let seq = if header(&message, "sluice.rule").as_deref() == Some("row") {
            let row: SheetRowUpsert = codec.decode(payload).await.unwrap();
            seq_of(&row.cells[0].value)
        } else {
            let cancel: ErpCommand = codec.decode(payload).await.unwrap();
            seq_of(&cancel.fields[0].value)
        };
        seen.push((format!("{}:{key}", message.topic()), seq, command));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_keeps_exactly_once() {
    let topics = Topics::new("transformer-kill", 3).await;
    let names = topics.names();
    // The input: event n belongs to order n % AGGREGATES and carries n.
    for start in (0..EVENTS).step_by(5_000) {
        produce_cancellations(&names, start..start + 5_000, "8c000000", AGGREGATES, |n| {
            if n % ERP_EVERY == 0 { "erp" } else { "shop" }
        })
        .await;
    }

    let group = unique_name("transformer-kill");
    let transactional_id = unique_name("transformer-kill-tx");
    for threshold in KILLS {
        let mut child = spawn(&names, &group, &transactional_id);
        eventually(&format!("{threshold} rows written"), WAIT, || {
            let count = message_count(&names.sheets);
            async move { (count >= threshold).then_some(()) }
        })
        .await;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let mut child = spawn(&names, &group, &transactional_id);
    let expected_erp = EVENTS.div_ceil(ERP_EVERY);
    let seen = read_committed(&[&names.sheets, &names.erp], EVENTS + expected_erp).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let commands: HashSet<&str> = seen.iter().map(|(_, _, id)| id.as_str()).collect();
    assert_eq!(
        (seen.len(), commands.len()),
        (EVENTS + expected_erp, EVENTS + expected_erp),
        "every command, each once"
    );
    let expected: HashSet<String> = (0..EVENTS)
        .flat_map(|n| {
            let id = numbered_id("8c000000", n);
            let mut ids = vec![sluice_transformer::command_id(&id, "row")];
            if n % ERP_EVERY == 0 {
                ids.push(sluice_transformer::command_id(&id, "erp"));
            }
            ids
        })
        .collect();
    assert!(
        commands.iter().all(|id| expected.contains(*id)),
        "the set of commands is the expected one"
    );
    // Per key (topic and order), sequence numbers only grow.
    let mut last: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, seq, _) in &seen {
        if let Some(previous) = last.insert(key, *seq) {
            assert!(previous < *seq, "{key}: {seq} after {previous}");
        }
    }
    let written = message_count(&names.sheets) + message_count(&names.erp);
    eprintln!(
        "{EVENTS} events, transformer SIGKILLed at {KILLS:?} rows: {} commands read committed, \
         {written} offsets used in all (aborted writes and transaction markers included)",
        seen.len()
    );
}
