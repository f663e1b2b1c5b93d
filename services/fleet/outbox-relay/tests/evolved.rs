//! Another team evolves the order events from outside: Confluent's Python
//! client registers v2 and v3 (optional fields added) and produces with
//! them. A relay started after that relays an outbox row with its own
//! schema's id, not the latest, and every record on the topic decodes.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::{WAIT, drop_slot, outbox_table, pool, relay, start, streaming};
use rdkafka::Message;
use serde_json::json;
use sluice_avro::AvroCodec;
use sluice_contracts::types::{OrderEvent, OrderPayload};
use sluice_testkit::{Stack, TestTopic, confluent_produce, consume_exactly, evolved_schema};
use sqlx::AssertSqlSafe;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_started_after_outside_evolution_writes_its_own_schema() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "relay-evolved", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "relay-evolved-dlq", 1).await;
    let cancelled = |order: &str, extra: serde_json::Value| {
        let mut value = json!({
            "event_id": "6a000000-0000-4000-8000-0000000000e1", "event_type": "OrderCancelled",
            "occurred_at": 1_795_437_296_789_i64, "aggregate_id": order,
            "correlation_id": null, "causation_id": null,
            "payload": {"-type": "dev.sluice.orders.OrderCancelled", "reason": "outside", "cancelled_by": "customer"}
        });
        value
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({ "key": order, "value": value })
    };
    for (fields, extra) in [
        (vec!["tenant"], json!({"tenant": "acme"})),
        (
            vec!["tenant", "channel"],
            json!({"tenant": "acme", "channel": "web"}),
        ),
    ] {
        let schema = evolved_schema("orders.events.v1", &fields);
        confluent_produce(
            &topic.name,
            Some(&schema),
            &[cancelled("order-outside", extra)],
        )
        .unwrap();
        std::fs::remove_file(schema).unwrap();
    }

    let pool = pool(4).await;
    let table = outbox_table(&pool, "relay_evolved").await;
    let running = start(relay(pool.clone(), &table, &topic.name, &dlq.name));
    streaming(&pool, &format!("{table}_slot")).await;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload) \
         VALUES (gen_random_uuid(), 'orders', 'order-relayed', 'OrderStatusChanged', $1)"
    )))
    .bind(json!({"from_status": "PLACED", "to_status": "CONFIRMED"}))
    .execute(&pool)
    .await
    .unwrap();
    let messages = consume_exactly(&topic.name, 3, WAIT).await;
    running.stop().await;

    let id = |bytes: &[u8]| u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let ids: BTreeSet<u32> = messages.iter().map(|m| id(m.payload().unwrap())).collect();
    assert_eq!(ids.len(), 3, "v2, v3 and the relay's own v1: {ids:?}");
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let relayed = messages
        .iter()
        .find(|m| m.key() == Some(b"order-relayed".as_slice()))
        .unwrap();
    let outside: BTreeSet<u32> = messages
        .iter()
        .filter(|m| m.key() == Some(b"order-outside".as_slice()))
        .map(|m| id(m.payload().unwrap()))
        .collect();
    assert_eq!(outside.len(), 2, "v2 and v3 from outside");
    assert!(
        !outside.contains(&id(relayed.payload().unwrap())),
        "the relay wrote neither v2 nor v3"
    );
    for message in &messages {
        let event: OrderEvent = codec.decode(message.payload().unwrap()).await.unwrap();
        assert!(matches!(
            event.payload,
            OrderPayload::OrderCancelled(_) | OrderPayload::OrderStatusChanged(_)
        ));
    }
    drop_slot(&pool, &table).await;
}
