//! Records users' own clients write to an event topic, as they write them —
//! Confluent's Python client and Kafka's console producer, not Sluice: each
//! one is mapped, skipped by design or dead-lettered with its reason, and
//! the partition flows on past every one of them.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Topics, cancelled_row_rule, decode, event_bytes, mapper, start, transactional_id};
use rdkafka::Message;
use serde_json::{Value, json};
use sluice_contracts::types::{DeadLetter, DeadLetterClass, SheetRowUpsert};
use sluice_testkit::{
    committed_total, confluent_send, console_produce, consume_exactly, eventually, evolved_schema,
    kcat_produce, message_count, process_metrics, unique_name,
};
use sluice_transformer::command_id;

const WAIT: Duration = Duration::from_secs(60);

/// The id of case `n`'s event.
fn event_id(n: u32) -> String {
    format!("75000000-0000-4000-8000-{n:012}")
}

/// Case `n`: an OrderCancelled of order `order-<n>` as the user's service
/// writes it (fastavro's JSON for the order schema), keyed by its order,
/// with `extra` record fields (headers, a timestamp, a transaction) and
/// envelope fields of a newer schema in `envelope`.
fn cancelled(n: u32, extra: Value, envelope: Value) -> Value {
    let mut event = json!({
        "event_id": event_id(n),
        "event_type": "OrderCancelled",
        "occurred_at": 1_795_437_296_789_i64,
        "aggregate_id": format!("order-{n}"),
        "correlation_id": null,
        "causation_id": null,
        "payload": {
            "-type": "dev.sluice.orders.OrderCancelled",
            "reason": format!("case {n}"),
            "cancelled_by": "a user's service"
        }
    });
    event
        .as_object_mut()
        .unwrap()
        .extend(envelope.as_object().unwrap().clone());
    let mut record = json!({ "key": format!("order-{n}"), "value": event });
    record
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    record
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_a_users_client_writes_is_mapped_skipped_or_dead_lettered() {
    let topics = Topics::new("users-records", 1).await;
    let orders = topics.orders.name.clone();
    let v1 = evolved_schema("orders.events.v1", &[]);
    let none = json!({});

    // The order schema as the user's serializer registers it (the one the
    // fleet provisioned).
    let large = "x".repeat(64 * 1024);
    let mut many: Vec<Value> = (0..100)
        .map(|h| json!({ "name": format!("h-{h}"), "value": format!("{h}") }))
        .collect();
    many.push(json!({ "name": "large", "value": large }));
    many.push(json!({ "name": "no-value", "value": null }));
    many.push(json!({ "name": "traceparent", "value": "not a trace context" }));
    let future = now_ms() + 2 * 24 * 3_600_000;
    let first = vec![
        cancelled(1, none.clone(), none.clone()),
        cancelled(3, json!({ "key": null }), none.clone()),
        cancelled(
            4,
            json!({ "key": null, "key_hex": "fffe00c3" }),
            none.clone(),
        ),
        cancelled(5, json!({ "transaction": "commit" }), none.clone()),
        cancelled(6, json!({ "transaction": "commit" }), none.clone()),
        cancelled(7, json!({ "transaction": "abort" }), none.clone()),
        cancelled(8, json!({ "headers": many }), none.clone()),
        cancelled(10, json!({ "timestamp": 1 }), none.clone()),
        cancelled(11, json!({ "timestamp": future }), none.clone()),
        cancelled(12, json!({ "key": "not-the-order" }), none.clone()),
    ];
    let delivery = confluent_send(&orders, Some((&v1, None)), &first);
    let refused: Vec<usize> = (0..first.len())
        .filter(|&i| delivery.errors[i].is_some())
        .collect();
    assert_eq!(
        refused,
        [8],
        "only the record from the future is refused: {:?}",
        delivery.errors
    );
    let refusal = delivery.errors[8].as_deref().unwrap();
    assert!(refusal.contains("INVALID_TIMESTAMP"), "{refusal}");

    // Header names that are not UTF-8 (Java's client cannot write them;
    // kcat and librdkafka can): on an event, and on bytes that are not one.
    let not_utf8 = b"\xff\xfename";
    let event = event_bytes(
        &orders,
        "orders",
        &event_id(9),
        "order-9",
        "OrderCancelled",
        1_795_437_296_789,
        &json!({"reason": "case 9", "cancelled_by": "kcat"}),
    )
    .await;
    kcat_produce(&orders, "order-9", &[(not_utf8, b"\xfe\xff")], &event);
    kcat_produce(&orders, "order-17", &[(not_utf8, b"v")], b"not Avro");

    // A tombstone, as Kafka's console producer writes one.
    console_produce(
        &orders,
        &["parse.key=true", "null.marker=NULL"],
        &["order-2\tNULL"],
    );

    // A newer schema of the orders, registered by the user's serializer
    // under the topic's subject, and another under a subject of its own.
    let v2 = evolved_schema("orders.events.v1", &["tenant"]);
    confluent_send(
        &orders,
        Some((&v2, None)),
        &[cancelled(13, none.clone(), json!({ "tenant": "acme" }))],
    );
    let elsewhere = evolved_schema("orders.events.v1", &["channel"]);
    confluent_send(
        &orders,
        Some((&elsewhere, Some(&unique_name("another-team-orders-value")))),
        &[cancelled(14, none.clone(), json!({ "channel": "web" }))],
    );

    // Another team's record in the wire format, its schema id from a
    // subject of theirs: not an event.
    let clicks = std::env::temp_dir().join(format!("{}.avsc", unique_name("clicks")));
    std::fs::write(
        &clicks,
        r#"{"type": "record", "name": "Click", "namespace": "com.example",
            "fields": [{"name": "url", "type": "string"}]}"#,
    )
    .unwrap();
    let foreign = confluent_send(
        &orders,
        Some((&clicks, Some(&unique_name("clicks-value")))),
        &[json!({ "key": "order-15", "value": { "url": "https://example.test/" } })],
    );
    assert!(foreign.schema_id.is_some());
    confluent_send(
        &orders,
        Some((&v1, None)),
        &[cancelled(16, none.clone(), none.clone())],
    );

    let group = unique_name("users-records");
    let (stop, running) = start(
        mapper(
            &cancelled_row_rule(
                "cancelled-row",
                &[
                    r#"{ column = "Order", value = { copy = "aggregate_id" } }"#,
                    r#"{ column = "Reason", value = { copy = "payload.reason" } }"#,
                ],
            ),
            &topics.names(),
        ),
        &topics.names(),
        &group,
        &transactional_id(),
    );

    let mapped = [1, 3, 4, 5, 6, 8, 9, 10, 12, 13, 14, 16];
    let rows = consume_exactly(&topics.sheets.name, mapped.len(), WAIT).await;
    let mut seen = BTreeSet::new();
    for message in &rows {
        let row: SheetRowUpsert = decode(message).await;
        let n: u32 = row.row_key.trim_start_matches("order-").parse().unwrap();
        assert_eq!(row.source_event_id, event_id(n));
        assert_eq!(row.command_id, command_id(&event_id(n), "cancelled-row"));
        assert_eq!(
            message.key(),
            Some(format!("s/Cancelled/{}", row.row_key).as_bytes()),
            "keyed by the order's row, whatever the record's key was"
        );
        assert!(seen.insert(n), "case {n} mapped twice");
    }
    assert_eq!(
        seen,
        BTreeSet::from(mapped),
        "mapped: every case but the tombstone (2), the aborted one (7), the refused one (11), the foreign record (15) and the bytes (17)"
    );

    let letters = consume_exactly(&topics.dlq.name, 2, WAIT).await;
    let mut letters: Vec<DeadLetter> = futures::future::join_all(letters.iter().map(decode)).await;
    letters.sort_by(|a, b| a.original_key.cmp(&b.original_key));
    let [foreign, not_avro] = &letters[..] else {
        panic!("two dead letters: {letters:?}")
    };
    assert_eq!(foreign.error_class, DeadLetterClass::Decode);
    assert_eq!(foreign.original_key.as_deref(), Some(&b"order-15"[..]));
    assert_eq!(
        foreign.error_message,
        "event envelope: the value is not an event: it has no event_id (its fields: url)",
    );
    assert_eq!(not_avro.original_key.as_deref(), Some(&b"order-17"[..]));
    assert_eq!(not_avro.original_value.as_deref(), Some(&b"not Avro"[..]));
    let names: Vec<&str> = not_avro
        .original_headers
        .iter()
        .map(|h| h.key.as_str())
        .collect();
    assert_eq!(
        names,
        ["\u{fffd}\u{fffd}name"],
        "a name that is not UTF-8 kept as Java's client reads it"
    );

    // Every record handled, the tombstone and the transaction markers too.
    let end = message_count(&orders);
    eventually("the group committed the end of the log", WAIT, || {
        let group = group.clone();
        let orders = orders.clone();
        async move { (committed_total(&group, &orders, 1).await == end).then_some(()) }
    })
    .await;
    let skipped = process_metrics()
        .lines()
        .find(|line| {
            line.starts_with("sluice_records_skipped_total")
                && line.contains(&format!("topic=\"{orders}\""))
                && line.contains("reason=\"tombstone\"")
        })
        .map(|line| line.rsplit(' ').next().unwrap().to_owned());
    assert_eq!(
        skipped.as_deref(),
        Some("1"),
        "the tombstone counted as skipped"
    );

    stop.send(()).unwrap();
    running.await.unwrap();
    for file in [v1, v2, elsewhere, clicks] {
        std::fs::remove_file(file).unwrap();
    }
}
