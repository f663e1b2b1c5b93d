//! Poison inputs — bytes that are not Avro, a schema id the registry does
//! not know, an event whose mapping fails — each land once in the
//! dead-letter topic with the original bytes and the reason, and the events
//! after them on the same partition are still mapped.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    Topics, cancelled_row_rule, decode, event_bytes, mapper, send, start, transactional_id,
};
use serde_json::json;
use sluice_contracts::types::{DeadLetter, DeadLetterClass, SheetRowUpsert};
use sluice_testkit::{consume_exactly, unique_name};

const WAIT: Duration = Duration::from_secs(60);

/// Cancelled orders' rows, the reason looked up in a table.
fn rules() -> String {
    let rule = cancelled_row_rule(
        "cancelled-row",
        &[
            r#"{ column = "Order", value = { copy = "aggregate_id" } }"#,
            r#"{ column = "Reason", value = { lookup = "payload.reason", table = "known" } }"#,
        ],
    );
    format!("[lookups.known]\nEUR = \"euro\"\n\n{rule}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_dead_lettered_once_and_the_partition_flows_on() {
    let topics = Topics::new("poison", 1).await;
    let (stop, running) = start(
        mapper(&rules(), &topics.names()),
        &topics.names(),
        &unique_name("poison"),
        &transactional_id(),
    );
    let orders = &topics.orders.name;
    let cancelled = |reason: &str| json!({"reason": reason, "cancelled_by": "ops"});

    let not_avro = b"{\"this\": \"is JSON, not Avro\"}".to_vec();
    send(orders, "order-1", &not_avro).await;
    // Magic byte 0, then schema id 2147483647, which no registry holds.
    let unknown_schema = vec![0, 0x7f, 0xff, 0xff, 0xff, 2, 4, 6];
    send(orders, "order-2", &unknown_schema).await;
    let unmappable = event_bytes(
        orders,
        "orders",
        "7b000000-0000-4000-8000-000000000003",
        "order-3",
        "OrderCancelled",
        1_795_437_296_789,
        &cancelled("not in the table"),
    )
    .await;
    send(orders, "order-3", &unmappable).await;
    let good = event_bytes(
        orders,
        "orders",
        "7b000000-0000-4000-8000-000000000004",
        "order-4",
        "OrderCancelled",
        1_795_437_296_790,
        &cancelled("EUR"),
    )
    .await;
    send(orders, "order-4", &good).await;

    let rows = consume_exactly(&topics.sheets.name, 1, WAIT).await;
    let row: SheetRowUpsert = decode(&rows[0]).await;
    assert_eq!(
        row.row_key, "order-4",
        "the event after the poison is mapped"
    );

    let letters = consume_exactly(&topics.dlq.name, 3, WAIT).await;
    let mut letters: Vec<DeadLetter> = futures::future::join_all(letters.iter().map(decode)).await;
    letters.sort_by_key(|letter| letter.original_offset);
    let summary: Vec<(i64, DeadLetterClass)> = letters
        .iter()
        .map(|l| (l.original_offset, l.error_class))
        .collect();
    assert_eq!(
        summary,
        [
            (0, DeadLetterClass::Decode),
            (1, DeadLetterClass::Decode),
            (2, DeadLetterClass::Mapping)
        ]
    );
    for (letter, original) in letters
        .iter()
        .zip([&not_avro, &unknown_schema, &unmappable])
    {
        assert_eq!(letter.original_topic, *orders);
        assert_eq!(
            letter.original_value.as_ref(),
            Some(original),
            "bytes kept as they were"
        );
        assert_eq!(letter.service, "transformer");
    }
    assert!(
        letters[0]
            .error_message
            .contains("not in the Confluent wire format"),
        "{}",
        letters[0].error_message
    );
    assert!(
        letters[1].error_message.contains("2147483647"),
        "{}",
        letters[1].error_message
    );
    assert_eq!(
        letters[2].error_message,
        "rule \"cancelled-row\": \"Reason\": payload.reason: \"not in the table\" is not in lookup table \"known\" and the rule gives no default"
    );
    stop.send(()).unwrap();
    running.await.unwrap();
}

/// A rule that copies a large field twice makes a command larger than Kafka
/// takes (the producer's message.max.bytes, 1 000 000 by default): the
/// event is dead-lettered with the size and what to change, and the events
/// after it are mapped (the refused send had aborted and retried the
/// transaction for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_command_kafka_refuses_as_too_large_is_dead_lettered() {
    let twice = cancelled_row_rule(
        "twice",
        &[
            r#"{ column = "Reason", value = { copy = "payload.reason" } }"#,
            r#"{ column = "Again", value = { copy = "payload.reason" } }"#,
        ],
    );
    let topics = Topics::new("too-large", 1).await;
    let (stop, running) = start(
        mapper(&twice, &topics.names()),
        &topics.names(),
        &unique_name("too-large"),
        &transactional_id(),
    );
    let orders = &topics.orders.name;
    for (n, reason) in [(1, "x".repeat(600_000)), (2, "fits".to_owned())] {
        let event = event_bytes(
            orders,
            "orders",
            &format!("7c000000-0000-4000-8000-00000000000{n}"),
            &format!("order-{n}"),
            "OrderCancelled",
            1_795_437_296_789,
            &json!({"reason": reason, "cancelled_by": "ops"}),
        )
        .await;
        send(orders, &format!("order-{n}"), &event).await;
    }

    let rows = consume_exactly(&topics.sheets.name, 1, WAIT).await;
    let row: SheetRowUpsert = decode(&rows[0]).await;
    assert_eq!(row.row_key, "order-2", "the event after it is mapped");
    let letters = consume_exactly(&topics.dlq.name, 1, WAIT).await;
    let letter: DeadLetter = decode(&letters[0]).await;
    assert_eq!(letter.original_offset, 0);
    assert_eq!(letter.error_class, DeadLetterClass::Permanent);
    assert!(
        letter.error_message.contains("message.max.bytes"),
        "the reason says what to change: {}",
        letter.error_message
    );
    stop.send(()).unwrap();
    running.await.unwrap();
}
