//! The events API against the real broker and registry: an accepted event is
//! on Kafka before the 202, and a refused one never is.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TOKEN, WEBHOOK_SECRET, kafka, order_placed, post, serve};
use hmac::{Hmac, KeyInit, Mac};
use rdkafka::Message;
use rdkafka::message::Headers;
use schema_registry_converter::async_impl::schema_registry::get_schema_by_subject_and_version;
use serde_json::{Value, json};
use sha2::Sha256;
use sluice_avro::AvroCodec;
use sluice_contracts::Catalog;
use sluice_contracts::types::{OrderEvent, OrderPayload};
use sluice_kafka::KafkaConfig;
use sluice_testkit::{
    Stack, TestTopic, confluent_produce, consume_exactly, message_count, unique_name,
};

#[tokio::test]
async fn an_accepted_event_is_on_kafka_as_avro() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-ok", 1).await;
    let base = serve(&topic.name, kafka()).await;
    let mut event = order_placed();
    event["correlation_id"] = json!("checkout-77");
    let (status, body) = post(&base, Some(TOKEN), &event).await;
    assert_eq!(
        (status, &body["event_id"]),
        (202, &json!("1b4e28ba-2fa1-41d2-883f-0016d3cca427")),
        "{body}"
    );

    let message = consume_exactly(&topic.name, 1, Duration::from_secs(30))
        .await
        .remove(0);
    assert_eq!(message.key(), Some(&b"order-77"[..]));
    let header = |name: &str| {
        message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == name))
            .and_then(|h| h.value)
    };
    assert_eq!(header("sluice.event_type"), Some(&b"OrderPlaced"[..]));
    // The flow's id, for every log line and command after it.
    assert_eq!(header("sluice.correlation_id"), Some(&b"checkout-77"[..]));
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let event: OrderEvent = codec.decode(message.payload().unwrap()).await.unwrap();
    assert_eq!(event.event_id, "1b4e28ba-2fa1-41d2-883f-0016d3cca427");
    let OrderPayload::OrderPlaced(placed) = event.payload else {
        panic!("{:?}", event.payload)
    };
    assert_eq!((placed.lines[0].quantity, placed.total_minor), (3, 1950));
}

#[tokio::test]
async fn a_bad_field_is_400_naming_it_and_nothing_is_produced() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-bad", 1).await;
    let base = serve(&topic.name, kafka()).await;
    let mut event = order_placed();
    event["payload"]["lines"][0]["quantity"] = json!("three");
    let (status, body) = post(&base, Some(TOKEN), &event).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["field"], "payload.OrderPlaced.lines[0].quantity",
        "{body}"
    );
    assert_eq!(
        body["error"],
        "expected an int (32-bit whole number), got \"three\""
    );

    let mut event = order_placed();
    event["aggregate_type"] = json!("invoices");
    let (status, body) = post(&base, Some(TOKEN), &event).await;
    assert_eq!(
        (status, &body["field"]),
        (400, &json!("aggregate_type")),
        "{body}"
    );

    let mut event = order_placed();
    event.as_object_mut().unwrap().remove("aggregate_id");
    let (status, body) = post(&base, Some(TOKEN), &event).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("missing field `aggregate_id`"),
        "{body}"
    );

    // A time in microseconds, past the hour ahead, or in seconds: it would
    // win over (or lose to) every other event of the aggregate in a sheet.
    let now_ms = sluice_contracts::now_millis();
    for wrong in [now_ms * 1000, now_ms + 2 * 3_600_000, now_ms / 1000] {
        let mut event = order_placed();
        event["occurred_at"] = json!(wrong);
        let (status, body) = post(&base, Some(TOKEN), &event).await;
        assert_eq!(
            (status, &body["field"]),
            (400, &json!("occurred_at")),
            "{body}"
        );
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains("ahead of") || error.contains("seconds rather than milliseconds"),
            "{body}"
        );
    }
    assert_eq!(message_count(&topic.name), 0);
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_401_and_nothing_is_produced() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-auth", 1).await;
    let base = serve(&topic.name, kafka()).await;
    assert_eq!(post(&base, None, &order_placed()).await.0, 401);
    assert_eq!(post(&base, Some("guess"), &order_placed()).await.0, 401);
    assert_eq!(message_count(&topic.name), 0);
}

#[tokio::test]
async fn no_202_without_kafka_acknowledging_the_event() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-down", 1).await;
    // A broker nobody runs: the event can never be acknowledged.
    let base = serve(&topic.name, KafkaConfig::new("127.0.0.1:1")).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .bearer_auth(TOKEN)
        .json(&order_placed())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(message_count(&topic.name), 0);
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-big", 1).await;
    let base = serve(&topic.name, kafka()).await;
    let mut event = order_placed();
    event["payload"]["customer"]["name"] = json!("x".repeat(100 * 1024));
    assert_eq!(post(&base, Some(TOKEN), &event).await.0, 413);
}

async fn post_with_key(base: &str, key: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .bearer_auth(TOKEN)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retried_request_gets_the_first_answer_and_produces_nothing_new() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-idem", 1).await;
    let base = serve(&topic.name, kafka()).await;
    let key = unique_name("idem");
    let mut event = order_placed();
    event.as_object_mut().unwrap().remove("event_id");

    let first = post_with_key(&base, &key, &event).await;
    assert_eq!(first.status().as_u16(), 202);
    let first: Value = first.json().await.unwrap();
    let retried = post_with_key(&base, &key, &event).await;
    assert_eq!(retried.status().as_u16(), 202);
    assert_eq!(retried.headers()["idempotent-replayed"], "true");
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(
        retried, first,
        "the same generated event id, not a second event"
    );
    assert_eq!(message_count(&topic.name), 1);

    let mut other = event.clone();
    other["aggregate_id"] = json!("order-78");
    let reused = post_with_key(&base, &key, &other).await;
    assert_eq!(reused.status().as_u16(), 422);
    assert_eq!(message_count(&topic.name), 1);
}

#[tokio::test]
async fn a_batch_is_checked_whole_before_anything_is_produced() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-batch", 3).await;
    let base = serve(&topic.name, kafka()).await;
    let events: Vec<Value> = (0..3)
        .map(|i| {
            let mut event = order_placed();
            event.as_object_mut().unwrap().remove("event_id");
            event["aggregate_id"] = json!(format!("order-{i}"));
            event
        })
        .collect();
    let mut with_bad = events.clone();
    with_bad[1]["payload"]["total_minor"] = json!(-1.5);
    let client = reqwest::Client::new();
    let send = |body: Value| {
        client
            .post(format!("{base}/v1/events/batch"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    let refused = send(json!({ "events": with_bad })).await.unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(
        refused["field"], "events[1].payload.OrderPlaced.total_minor",
        "{refused}"
    );
    assert_eq!(
        message_count(&topic.name),
        0,
        "nothing of a refused batch is produced"
    );

    let accepted = send(json!({ "events": events })).await.unwrap();
    assert_eq!(accepted.status().as_u16(), 202);
    let accepted: Value = accepted.json().await.unwrap();
    assert_eq!(accepted["accepted"].as_array().unwrap().len(), 3);
    let keys: std::collections::BTreeSet<Vec<u8>> =
        consume_exactly(&topic.name, 3, Duration::from_secs(30))
            .await
            .iter()
            .map(|m| m.key().unwrap().to_vec())
            .collect();
    assert_eq!(keys.len(), 3);
}

fn signature(timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn signed_webhooks_become_events_and_unsigned_or_stale_ones_do_not() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-webhook", 1).await;
    let base = serve(&topic.name, kafka()).await;
    let webhook = json!({
        "delivery": "9a0f1c1e-3a55-4c8e-8b1e-1c2d3e4f5a6b",
        "order_id": 4711,
        "order": order_placed()["payload"].clone()
    });
    let body = serde_json::to_vec(&webhook).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let client = reqwest::Client::new();
    let deliver = |source: &str, timestamp: u64, signature: String| {
        client
            .post(format!("{base}/v1/webhooks/{source}"))
            .header("x-sluice-timestamp", timestamp.to_string())
            .header("x-sluice-signature", signature)
            .body(body.clone())
            .send()
    };
    let stale = now - 3600;
    // A signature over another body, a stale timestamp, an unknown source.
    for (source, timestamp, signed_body, expected) in [
        ("shop", now, &b"{}"[..], 401),
        ("shop", stale, &body[..], 401),
        ("nobody", now, &body[..], 401),
    ] {
        let response = deliver(
            source,
            timestamp,
            signature(&timestamp.to_string(), signed_body),
        )
        .await
        .unwrap();
        assert_eq!(
            response.status().as_u16(),
            expected,
            "{source} at {timestamp}"
        );
    }
    assert_eq!(message_count(&topic.name), 0);

    let accepted = deliver("shop", now, signature(&now.to_string(), &body))
        .await
        .unwrap();
    assert_eq!(accepted.status().as_u16(), 202);
    let message = consume_exactly(&topic.name, 1, Duration::from_secs(30))
        .await
        .remove(0);
    assert_eq!(message.key(), Some(&b"4711"[..]));
    let event: OrderEvent = AvroCodec::new(Stack::get().registry_settings())
        .decode(message.payload().unwrap())
        .await
        .unwrap();
    assert_eq!(
        event.event_id, "9a0f1c1e-3a55-4c8e-8b1e-1c2d3e4f5a6b",
        "the sender's delivery id"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-openapi", 1).await;
    let base = serve(&topic.name, kafka()).await;
    let document: Value = reqwest::get(format!("{base}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths: Vec<&String> = document["paths"].as_object().unwrap().keys().collect();
    assert_eq!(
        paths,
        ["/v1/events", "/v1/events/batch", "/v1/webhooks/{source}"]
    );
}

/// Another team evolves the order events with Confluent's own client: v2,
/// then v3 of the subject, each with one more optional envelope field, and
/// produces with each. An ingest started after that (a restart: a new codec)
/// accepts events and writes them with its own schema's id, and every record
/// on the topic, theirs and its own, decodes. Before, ingest encoded with the
/// latest version and answered 503 "There is no entry for 'tenant'".
#[tokio::test]
async fn an_ingest_started_after_outside_evolution_writes_its_own_schema() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-evolved", 1).await;
    let subject = format!("{}-value", topic.name);
    let v1_id =
        get_schema_by_subject_and_version(&Stack::get().registry_settings(), &subject, Some(1))
            .await
            .unwrap()
            .id;
    let catalog = Catalog::embedded().unwrap();
    let mut schema: Value = serde_json::from_str(
        catalog
            .topic("orders.events.v1")
            .unwrap()
            .value_schema_json(),
    )
    .unwrap();
    let dir = std::env::temp_dir().join(unique_name("ingest-evolved"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut written = Vec::new();
    for (version, field) in [("v2", "tenant"), ("v3", "channel")] {
        schema["fields"].as_array_mut().unwrap().push(json!(
            { "name": field, "type": ["null", "string"], "default": null }
        ));
        let path = dir.join(format!("{version}.avsc"));
        std::fs::write(&path, schema.to_string()).unwrap();
        let order = format!("order-{version}");
        let mut value = json!({
            "event_id": "9a1d2c3e-4f50-4a6b-8c7d-0e1f2a3b4c5d",
            "event_type": "OrderCancelled",
            "occurred_at": 1_763_900_000_000_i64,
            "aggregate_id": order,
            "correlation_id": null,
            "causation_id": null,
            "payload": {
                "-type": "dev.sluice.orders.OrderCancelled",
                "reason": "changed mind",
                "cancelled_by": "customer"
            },
        });
        value[field] = json!("acme");
        let id = confluent_produce(
            &topic.name,
            Some(&path),
            &[json!({ "key": order, "value": value })],
        )
        .unwrap();
        written.push(id);
    }
    assert!(
        written[0] != v1_id && written[1] != written[0],
        "v2 and v3 are new versions: {v1_id}, {written:?}"
    );

    let base = serve(&topic.name, kafka()).await;
    let (status, body) = post(&base, Some(TOKEN), &order_placed()).await;
    assert_eq!(status, 202, "{body}");

    let codec = AvroCodec::new(Stack::get().registry_settings());
    let mut read = Vec::new();
    for message in consume_exactly(&topic.name, 3, Duration::from_secs(30)).await {
        let bytes = message.payload().unwrap();
        let event: OrderEvent = codec.decode(bytes).await.unwrap();
        let id = u32::from_be_bytes(bytes[1..5].try_into().unwrap());
        read.push((event.aggregate_id, id));
    }
    assert_eq!(
        read,
        [
            ("order-v2".to_owned(), written[0]),
            ("order-v3".to_owned(), written[1]),
            ("order-77".to_owned(), v1_id),
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
