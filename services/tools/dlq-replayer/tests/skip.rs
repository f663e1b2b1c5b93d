//! A batch no client can read: erp-sink's partition is held at a gzip batch
//! whose bytes were corrupted on the broker's disk (librdkafka reports the
//! failed decompression and stays at that offset, as it did for zstd before
//! librdkafka had it). The stall metric names topic, partition and offset;
//! `dlq-replayer skip` refuses while the service runs, at any other
//! offset, a record that reads and a group that does not exist, then
//! records who skipped what and moves the group past it, and the restarted
//! service applies what came after — the command before it once.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{command, run, sandbox, start_erp_sink_in};
use rdkafka::Message;
use rdkafka::producer::FutureRecord;
use serde_json::{Map, Value};
use sluice_avro::AvroCodec;
use sluice_contracts::types::{DeadLetter, DeadLetterClass, ErpOperation};
use sluice_kafka::{KafkaConfig, idempotent_producer};
use sluice_testkit::{
    Stack, TestTopic, eventually, metric, process_metrics, producer, unique_name,
};

const WAIT: Duration = Duration::from_secs(60);

/// Overwrites bytes of the one gzip-compressed batch in the partition's
/// log segment, past the gzip header: the broker serves them as they are.
fn corrupt_the_gzip_batch(topic: &str) {
    use std::io::{Seek, SeekFrom, Write};
    let segment = Stack::get().local_dir.join(format!(
        "kafka/node-1/data/{topic}-0/00000000000000000000.log"
    ));
    let bytes = std::fs::read(&segment).unwrap();
    let gzip = bytes
        .windows(3)
        .position(|w| w == [0x1f, 0x8b, 0x08])
        .expect("a gzip stream in the segment");
    // In place, never truncated: the broker reads the same file.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.seek(SeekFrom::Start(u64::try_from(gzip + 12).unwrap()))
        .unwrap();
    file.write_all(&[0xff; 28]).unwrap();
}

/// The sale orders the ERP holds for `reference`.
fn orders_of(records: &[Map<String, Value>], reference: &str) -> usize {
    records
        .iter()
        .filter(|r| r["x_sluice_external_ref"] == reference)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_no_client_can_read_is_skipped_by_an_operator_and_recorded() {
    process_metrics();
    let sandbox = sandbox().await;
    let commands = TestTopic::with_schema_of("erp.commands.v1", "skip-commands", 1).await;
    let results = TestTopic::with_schema_of("erp.results.v1", "skip-results", 1).await;
    let dlq = common::dlq_topic("skip-erp").await;
    let codec = AvroCodec::new(Stack::get().registry_settings());

    // so-1 plain, so-2 in a gzip batch of its own, so-3 plain.
    let gzip = idempotent_producer(
        &KafkaConfig::new(&Stack::get().kafka_bootstrap).with_property("compression.type", "gzip"),
    )
    .unwrap();
    for (n, reference) in [(1, "so-1"), (2, "so-2"), (3, "so-3")] {
        // Compressible, or librdkafka sends the batch uncompressed.
        let note = "corrupt me ".repeat(if n == 2 { 200 } else { 1 });
        let bytes = codec
            .encode(
                &commands.name,
                &command(n, ErpOperation::Create, reference, &note),
            )
            .await
            .unwrap();
        let record = FutureRecord::to(&commands.name)
            .key(reference)
            .payload(&bytes);
        let sent = if n == 2 {
            gzip.send(record, Duration::from_secs(30)).await
        } else {
            producer().send(record, Duration::from_secs(30)).await
        };
        sent.unwrap();
    }
    corrupt_the_gzip_batch(&commands.name);

    let group = unique_name("skip-erp");
    let start = || {
        start_erp_sink_in(
            &group,
            Duration::from_secs(2),
            &sandbox.base,
            &commands.name,
            &results.name,
            &dlq.name,
        )
    };
    let (stop, running) = start().await;
    let labels = [
        ("topic", commands.name.as_str()),
        ("partition", "0"),
        ("reason", "consumer-error"),
    ];
    eventually(
        "the partition named stalled at the corrupt batch",
        WAIT,
        || {
            let stalled = metric(&process_metrics(), "sluice_partition_stalled", &labels);
            async move { (stalled == 1.0).then_some(()) }
        },
    )
    .await;
    let records = sandbox.records("sale.order").await.unwrap();
    assert_eq!(
        orders_of(&records, "so-1"),
        1,
        "the command before it applied"
    );
    assert_eq!(orders_of(&records, "so-3"), 0, "the command after it held");

    let skip = |at: String| {
        let (group, dlq) = (group.clone(), dlq.name.clone());
        async move {
            run(&[
                "skip",
                "--group",
                &group,
                "--at",
                &at,
                "--dlq-topic",
                &dlq,
                "--reason",
                "gzip batch corrupt on disk",
                "--actor",
                "alice",
            ])
            .await
        }
    };
    let at = |offset: i64| format!("{}:0:{offset}", commands.name);
    let running_member = skip(at(1)).await;
    assert_eq!(running_member.code, 1, "{}", running_member.stderr);
    assert!(
        running_member.stderr.contains("running member"),
        "{}",
        running_member.stderr
    );
    stop.send(()).unwrap();
    running.await.unwrap();

    let elsewhere = skip(at(2)).await;
    assert_eq!(elsewhere.code, 1);
    assert!(
        elsewhere.stderr.contains("stands at offset 1"),
        "{}",
        elsewhere.stderr
    );
    let skipped = skip(at(1)).await;
    assert_eq!(skipped.code, 0, "{}", skipped.stderr);
    let again = skip(at(1)).await;
    assert_eq!(again.code, 1, "a second skip finds the group moved on");
    assert!(
        again.stderr.contains("stands at offset 2"),
        "{}",
        again.stderr
    );
    let readable = skip(at(2)).await;
    assert_eq!(readable.code, 1);
    assert!(
        readable.stderr.contains("reads"),
        "a record that reads is not skipped: {}",
        readable.stderr
    );
    let no_group = run(&[
        "skip",
        "--group",
        &unique_name("no-such-group"),
        "--at",
        &at(0),
        "--dlq-topic",
        &dlq.name,
        "--reason",
        "a typo",
    ])
    .await;
    assert_eq!(no_group.code, 1);
    assert!(
        no_group.stderr.contains("there is no consumer group"),
        "{}",
        no_group.stderr
    );

    let letters = sluice_testkit::consume_exactly(&dlq.name, 1, WAIT).await;
    let letter: DeadLetter = codec.decode(letters[0].payload().unwrap()).await.unwrap();
    assert_eq!(
        (
            letter.original_topic.as_str(),
            letter.original_partition,
            letter.original_offset
        ),
        (commands.name.as_str(), 0, 1)
    );
    assert_eq!(letter.original_value, None, "its bytes could not be had");
    assert_eq!(letter.error_class, DeadLetterClass::Decode);
    let prefix =
        format!("skipped by alice for group {group}: gzip batch corrupt on disk (librdkafka: ");
    assert!(
        letter.error_message.starts_with(&prefix)
            && letter.error_message.contains("BadCompression"),
        "{}",
        letter.error_message
    );
    assert_eq!(letter.service, "dlq-replayer");

    let (stop, running) = start().await;
    eventually("the command after the skip applied", WAIT, || {
        let sandbox = &sandbox;
        async move {
            let records = sandbox.records("sale.order").await.unwrap();
            (orders_of(&records, "so-3") == 1).then_some(records)
        }
    })
    .await;
    stop.send(()).unwrap();
    running.await.unwrap();
    let records = sandbox.records("sale.order").await.unwrap();
    assert_eq!(orders_of(&records, "so-1"), 1, "nothing before it again");
    assert_eq!(orders_of(&records, "so-2"), 0);
}
