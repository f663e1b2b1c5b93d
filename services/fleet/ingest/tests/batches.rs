//! Batches and retries from careless and unlucky clients: a batch is on
//! Kafka whole or not at all, a refusal no retry changes is a 4xx naming the
//! event, and a retried request writes the same event ids.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{OTHER_TOKEN, SCOPED_TOKEN, TOKEN, kafka, order_placed, serve, serve_routes};
use rdkafka::Message;
use rdkafka::message::Headers;
use serde_json::{Value, json};
use sluice_testkit::{Stack, TestTopic, committed_messages, register_value_schema, unique_name};
use sqlx::postgres::PgPoolOptions;

/// Posts `body` to `path` with `token` and, when given, an Idempotency-Key.
async fn post(
    base: &str,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// `count` orders without ids of their own, so ingest assigns them.
fn orders(count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| {
            let mut event = order_placed();
            event.as_object_mut().unwrap().remove("event_id");
            event["aggregate_id"] = json!(format!("order-{i}"));
            event
        })
        .collect()
}

fn event_ids(messages: &[rdkafka::message::OwnedMessage]) -> Vec<String> {
    header_values(messages, "sluice.event_id")
}

fn header_values(messages: &[rdkafka::message::OwnedMessage], key: &str) -> Vec<String> {
    messages
        .iter()
        .map(|message| {
            let header = message
                .headers()
                .unwrap()
                .iter()
                .find(|h| h.key == key)
                .unwrap();
            String::from_utf8(header.value.unwrap().to_vec()).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn an_event_its_topic_can_never_take_is_413_naming_it_and_nothing_of_the_batch_is_written() {
    let topic = TestTopic::with_schema_configured(
        "orders.events.v1",
        "ingest-small",
        1,
        &[("max.message.bytes", "4096")],
    )
    .await;
    let base = serve(&topic.name, kafka()).await;
    let mut events = orders(2);
    events[1]["payload"]["customer"]["name"] = json!("x".repeat(8 * 1024));
    let batch = json!({ "events": events });
    let key = unique_name("too-large");
    for attempt in ["first", "retry"] {
        let (status, body) = post(&base, "/v1/events/batch", TOKEN, Some(&key), &batch).await;
        assert_eq!(status, 413, "{attempt}: {body}");
        assert_eq!(body["field"], "events[1]", "{attempt}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains("max.message.bytes") && error.contains(&topic.name),
            "{error}"
        );
    }
    assert!(
        committed_messages(&topic.name).await.is_empty(),
        "the first event of a refused batch reached readers"
    );
}

/// Text that lz4 cannot shrink, so records keep their size on the wire.
fn incompressible(bytes: usize) -> String {
    (0..bytes.div_ceil(32))
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect::<String>()[..bytes]
        .to_owned()
}

/// Records that each fit their topic but not two together: librdkafka puts
/// records of one partition into one MessageSet and, unlike Java's
/// producer, does not split one the broker refuses as too large. Neither a
/// batch's events nor concurrent single events may be refused for their sum.
#[tokio::test]
async fn events_that_each_fit_their_topic_are_not_refused_for_their_sum() {
    let topic = TestTopic::with_schema_configured(
        "orders.events.v1",
        "ingest-sum",
        1,
        &[("max.message.bytes", "4096")],
    )
    .await;
    let base = serve(&topic.name, kafka()).await;
    let mut events = orders(8);
    for event in &mut events {
        event["payload"]["customer"]["name"] = json!(incompressible(2500));
    }
    let (status, body) = post(
        &base,
        "/v1/events/batch",
        TOKEN,
        None,
        &json!({ "events": events }),
    )
    .await;
    assert_eq!(status, 202, "the batch: {body}");
    let singles = events
        .iter()
        .map(|event| post(&base, "/v1/events", TOKEN, None, event));
    for (index, (status, body)) in futures::future::join_all(singles)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(status, 202, "single event {index}: {body}");
    }
    assert_eq!(committed_messages(&topic.name).await.len(), 16);
}

#[tokio::test]
async fn a_batch_that_fails_midway_leaves_nothing_for_readers() {
    let orders_topic = TestTopic::with_schema_of("orders.events.v1", "ingest-midway", 1).await;
    // The second event's topic has a schema but no partitions: Kafka takes
    // the first event and never the second.
    let missing = unique_name("ingest-missing");
    register_value_schema("requests.events.v1", &missing).await;
    let base = serve_routes(
        &[("orders", &orders_topic.name), ("requests", &missing)],
        kafka(),
    )
    .await;
    let request = json!({
        "aggregate_type": "requests",
        "aggregate_id": "req-1",
        "event_type": "RequestCreated",
        "payload": {
            "requester_email": "ada@example.org",
            "subject": "refund",
            "description": "the tea was cold",
            "priority": "HIGH",
            "category": null
        }
    });
    let batch = json!({ "events": [orders(1)[0], request] });
    let (status, body) = post(&base, "/v1/events/batch", TOKEN, None, &batch).await;
    assert_eq!(status, 503, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        !error.contains("librdkafka") && !error.contains("Local:"),
        "the answer carries Kafka's internals: {error}"
    );
    assert!(
        committed_messages(&orders_topic.name).await.is_empty(),
        "a batch answered 503 left its first event for readers"
    );
}

#[tokio::test]
async fn a_retry_after_a_lost_answer_writes_the_same_event_ids() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-same-ids", 1).await;
    let base = serve(&topic.name, kafka()).await;
    let batch = json!({ "events": orders(2) });
    let key = unique_name("lost-answer");
    let (status, first) = post(&base, "/v1/events/batch", TOKEN, Some(&key), &batch).await;
    assert_eq!(status, 202, "{first}");
    // The instance that took the request died before its answer was kept
    // (or the key expired): the retry is handled anew.
    let pool = PgPoolOptions::new()
        .connect(&Stack::get().database_url)
        .await
        .unwrap();
    let forgotten = sqlx::query("DELETE FROM ingest_idempotency WHERE key = $1")
        .bind(&key)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(forgotten.rows_affected(), 1);
    let (status, retried) = post(&base, "/v1/events/batch", TOKEN, Some(&key), &batch).await;
    assert_eq!(status, 202, "{retried}");
    assert_eq!(retried, first, "the retry assigned other event ids");
    let ids = event_ids(&committed_messages(&topic.name).await);
    assert_eq!(ids.len(), 4, "both attempts are on Kafka: {ids:?}");
    assert_eq!(ids[..2], ids[2..], "a reader cannot tell the copies apart");
}

#[tokio::test]
async fn an_idempotency_key_belongs_to_the_token_that_sent_it() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-key-scope", 1).await;
    let base = serve(&topic.name, kafka()).await;
    let event = orders(1).remove(0);
    let key = unique_name("shared-key");
    let (status, mine) = post(&base, "/v1/events", TOKEN, Some(&key), &event).await;
    assert_eq!(status, 202, "{mine}");
    let mut theirs_event = event.clone();
    theirs_event["aggregate_id"] = json!("order-of-another-client");
    let (status, theirs) = post(&base, "/v1/events", OTHER_TOKEN, Some(&key), &theirs_event).await;
    assert_eq!(
        status, 202,
        "another client's key collided with this one: {theirs}"
    );
    assert_ne!(theirs["event_id"], mine["event_id"]);
    assert_eq!(committed_messages(&topic.name).await.len(), 2);
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_400_naming_the_header() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-bad-key", 1).await;
    let base = serve(&topic.name, kafka()).await;
    let event = orders(1).remove(0);
    for key in ["has space".to_owned(), "k".repeat(256)] {
        let (status, body) = post(&base, "/v1/events", TOKEN, Some(&key), &event).await;
        assert_eq!(status, 400, "{key:?}: {body}");
        assert_eq!(body["field"], "header Idempotency-Key", "{body}");
    }
    assert!(committed_messages(&topic.name).await.is_empty());
}

#[tokio::test]
async fn outcome_events_only_sluice_emits_are_403_naming_the_event_type() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-reserved", 1).await;
    let base = serve(&topic.name, kafka()).await;
    let mut confirmed = orders(1).remove(0);
    confirmed["event_type"] = json!("OrderConfirmed");
    confirmed["payload"] = json!({
        "saga_id": "5b1e7f0c-2a51-4a89-9c43-7d0f3e1e9a10",
        "erp_reference": "S00042"
    });
    let (status, body) = post(&base, "/v1/events", TOKEN, None, &confirmed).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["field"], "event_type", "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("OrderConfirmed"),
        "{body}"
    );

    let batch = json!({ "events": [orders(1)[0], confirmed] });
    let (status, body) = post(&base, "/v1/events/batch", TOKEN, None, &batch).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["field"], "events[1].event_type", "{body}");
    assert!(committed_messages(&topic.name).await.is_empty());
}

#[tokio::test]
async fn a_scoped_token_posts_only_what_its_scopes_name() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "ingest-scoped", 1).await;
    let base = serve(&topic.name, kafka()).await;
    let placed = orders(1).remove(0);
    let mut cancelled = orders(2).remove(1);
    cancelled["event_type"] = json!("OrderCancelled");
    cancelled["payload"] = json!({"reason": "changed my mind", "cancelled_by": "c-9"});

    let (status, body) = post(&base, "/v1/events", SCOPED_TOKEN, None, &placed).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["field"], "event_type", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("this sender may not post OrderPlaced events of orders"),
        "{body}"
    );
    // An aggregate outside its scopes is named as such, before its contract
    // is looked at: the token learns nothing of aggregates it may not post.
    let mut elsewhere = cancelled.clone();
    elsewhere["aggregate_type"] = json!("invoices");
    let (status, body) = post(&base, "/v1/events", SCOPED_TOKEN, None, &elsewhere).await;
    assert_eq!(
        (status, &body["field"]),
        (403, &json!("aggregate_type")),
        "{body}"
    );
    // A batch is refused whole, naming the event out of scope.
    let batch = json!({ "events": [cancelled, placed] });
    let (status, body) = post(&base, "/v1/events/batch", SCOPED_TOKEN, None, &batch).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["field"], "events[1].event_type", "{body}");
    assert!(committed_messages(&topic.name).await.is_empty());

    // What its scopes name is accepted; an unscoped token posts the rest.
    let (status, body) = post(&base, "/v1/events", SCOPED_TOKEN, None, &cancelled).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = post(&base, "/v1/events", TOKEN, None, &placed).await;
    assert_eq!(status, 202, "{body}");
    let mut types = header_values(&committed_messages(&topic.name).await, "sluice.event_type");
    types.sort();
    assert_eq!(types, ["OrderCancelled", "OrderPlaced"]);
}

#[tokio::test]
async fn a_claim_is_completed_only_by_the_request_that_holds_it_and_keys_expire() {
    let pool = PgPoolOptions::new()
        .connect(&Stack::get().database_url)
        .await
        .unwrap();
    let store = sluice_ingest::IdempotencyStore::new(
        pool.clone(),
        std::time::Duration::from_secs(10),
        std::time::Duration::from_secs(3600),
    );
    store.migrate().await.unwrap();
    let key =
        sluice_ingest::IdempotencyKey::parse([7; 32], unique_name("claim").as_bytes()).unwrap();
    let body = b"request";
    let sluice_ingest::Claim::New(slow) = store.claim(&key, body).await.unwrap() else {
        panic!("a new key is not claimable")
    };
    let age = |seconds: i64| {
        sqlx::query(
            "UPDATE ingest_idempotency SET claimed_at = now() - make_interval(secs => $2) WHERE key = $1",
        )
        .bind(key.as_str())
        .bind(seconds as f64)
        .execute(&pool)
    };
    // A request still at work (a commit Kafka is slow to decide) renews its
    // claim: it is not taken for abandoned.
    age(60).await.unwrap();
    assert!(store.renew(&key, slow).await.unwrap());
    assert_eq!(
        store.claim(&key, body).await.unwrap(),
        sluice_ingest::Claim::InProgress
    );
    // The slow request's claim is abandoned; another takes the key over.
    age(60).await.unwrap();
    let sluice_ingest::Claim::New(fast) = store.claim(&key, body).await.unwrap() else {
        panic!("an abandoned claim is not taken over")
    };
    assert!(
        !store.renew(&key, slow).await.unwrap(),
        "a claim taken over was renewed by its old holder"
    );
    assert!(
        !store
            .complete(&key, slow, 202, &json!({"by": "slow"}))
            .await
            .unwrap()
    );
    store.release(&key, slow).await.unwrap();
    assert!(
        store
            .complete(&key, fast, 202, &json!({"by": "fast"}))
            .await
            .unwrap()
    );
    assert_eq!(
        store.claim(&key, body).await.unwrap(),
        sluice_ingest::Claim::Replay {
            status: 202,
            body: json!({"by": "fast"})
        }
    );
    // Past the key lifetime the answer is pruned and the key is new again.
    age(7200).await.unwrap();
    assert!(store.prune().await.unwrap() >= 1);
    assert!(matches!(
        store.claim(&key, body).await.unwrap(),
        sluice_ingest::Claim::New(_)
    ));
}
