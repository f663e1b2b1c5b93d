//! `committed_offsets` answers while a transaction holding offsets of the
//! group is open, as a SIGKILLed transactional member leaves one until its
//! transaction.timeout.ms. A stable read (librdkafka's default,
//! read_committed) is withheld by the broker meanwhile: the helper timed
//! out right after such a kill once in CI.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use sluice_testkit::{Stack, TestTopic, committed_offsets, unique_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_answer_beside_an_open_transaction_of_the_group() {
    let topic = TestTopic::create("committed-open-txn", 1).await;
    let group = unique_name("committed-open-txn");
    let stack = Stack::get();
    let consumer: BaseConsumer = stack
        .kafka_config()
        .set("group.id", &group)
        .create()
        .unwrap();
    let producer: BaseProducer = stack
        .kafka_config()
        .set("transactional.id", unique_name("committed-open-txn"))
        .create()
        .unwrap();
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout).unwrap();
    producer.begin_transaction().unwrap();
    producer
        .send(BaseRecord::<(), str>::to(&topic.name).payload("x"))
        .map_err(|(err, _)| err)
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&topic.name, 0, Offset::Offset(1))
        .unwrap();
    producer
        .send_offsets_to_transaction(&offsets, &consumer.group_metadata().unwrap(), timeout)
        .unwrap();
    // The transaction stays open, as a killed member's does.
    let started = Instant::now();
    let committed = committed_offsets(&group, &topic.name, 1);
    assert!(
        committed.is_empty(),
        "a pending offset was read as committed: {committed:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Dropped open: the broker aborts it at its timeout.
    drop(producer);
}
