//! The relay against the real Postgres, Kafka and registry: committed rows
//! (and outbox logical messages) arrive once each, in commit order per
//! aggregate; rolled-back rows never; a row that does not fit its contract is
//! dead-lettered and the rows after it still flow.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{WAIT, drop_slot, message_prefix, outbox_table, pool, relay, start, streaming};
use rdkafka::Message;
use rdkafka::message::Headers;
use serde_json::json;
use sluice_avro::AvroCodec;
use sluice_contracts::types::{DeadLetter, DeadLetterClass, OrderEvent, OrderPayload};
use sluice_outbox_relay::OutboxFormat;
use sluice_testkit::{Stack, TestTopic, consume_exactly, message_count, unique_name};
use sqlx::{AssertSqlSafe, PgPool};

async fn insert(
    pool: &PgPool,
    table: &str,
    id: &str,
    order: &str,
    event_type: &str,
    payload: serde_json::Value,
) {
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload) VALUES ($1::uuid, 'orders', $2, $3, $4)"
    )))
    .bind(id)
    .bind(order)
    .bind(event_type)
    .bind(payload)
    .execute(pool)
    .await
    .unwrap();
}

fn status(from: &str, to: &str) -> serde_json::Value {
    json!({ "from_status": from, "to_status": to })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_rows_arrive_once_in_order_and_bad_ones_are_dead_lettered() {
    let stack = Stack::get();
    let pool = pool(3).await;
    let name = outbox_table(&pool, "outbox").await;
    let topic = TestTopic::with_schema_of("orders.events.v1", "relay-orders", 3).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "relay-dlq", 1).await;
    let relay = relay(pool.clone(), &name, &topic.name, &dlq.name);
    relay.prepare().await.unwrap();

    // Committed: three events of order-1, in one transaction.
    let mut tx = pool.begin().await.unwrap();
    for (i, (from, to)) in [
        ("PLACED", "CONFIRMED"),
        ("CONFIRMED", "SHIPPED"),
        ("SHIPPED", "DELIVERED"),
    ]
    .into_iter()
    .enumerate()
    {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {name} (id, aggregate_type, aggregate_id, event_type, payload) VALUES ($1::uuid, 'orders', 'order-1', 'OrderStatusChanged', $2)"
        )))
        .bind(format!("00000000-0000-4000-8000-00000000000{i}"))
        .bind(status(from, to))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    // Rolled back: never relayed.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {name} (id, aggregate_type, aggregate_id, event_type, payload) VALUES ('00000000-0000-4000-8000-0000000000ff', 'orders', 'order-9', 'OrderCancelled', '{{\"reason\":\"r\",\"cancelled_by\":\"c\"}}')"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    // Inserted and deleted in one transaction: still relayed.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {name} (id, aggregate_type, aggregate_id, event_type, payload) VALUES ('00000000-0000-4000-8000-000000000010', 'orders', 'order-2', 'OrderCancelled', '{{\"reason\":\"duplicate\",\"cancelled_by\":\"ops\"}}')"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM {name} WHERE id = '00000000-0000-4000-8000-000000000010'"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // Does not fit OrderStatusChanged (a status that does not exist), then a good row after it.
    insert(
        &pool,
        &name,
        "00000000-0000-4000-8000-000000000020",
        "order-3",
        "OrderStatusChanged",
        status("PLACED", "TELEPORTED"),
    )
    .await;
    insert(
        &pool,
        &name,
        "00000000-0000-4000-8000-000000000021",
        "order-3",
        "OrderStatusChanged",
        status("PLACED", "CONFIRMED"),
    )
    .await;
    // A logical message instead of a row.
    let message = json!({
        "id": "00000000-0000-4000-8000-000000000030", "aggregate_type": "orders", "aggregate_id": "order-4",
        "event_type": "OrderCancelled", "payload": {"reason": "r", "cancelled_by": "c"}, "occurred_at": 1_763_900_000_000_i64,
        "correlation_id": "checkout-4"
    });
    sqlx::query("SELECT pg_logical_emit_message(true, $1, $2)")
        .bind(message_prefix(&name))
        .bind(message.to_string())
        .execute(&pool)
        .await
        .unwrap();

    let running = start(relay);
    let messages = consume_exactly(&topic.name, 6, WAIT).await;
    let dead = consume_exactly(&dlq.name, 1, WAIT).await;

    let decoder = AvroCodec::new(stack.registry_settings());
    let mut events = Vec::new();
    for message in &messages {
        let event: OrderEvent = decoder.decode(message.payload().unwrap()).await.unwrap();
        assert_eq!(message.key(), Some(event.aggregate_id.as_bytes()));
        events.push(event);
    }
    let ids_of = |order: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.aggregate_id == order)
            .map(|e| e.event_id.clone())
            .collect()
    };
    assert_eq!(
        ids_of("order-1"),
        [
            "00000000-0000-4000-8000-000000000000",
            "00000000-0000-4000-8000-000000000001",
            "00000000-0000-4000-8000-000000000002"
        ],
        "committed order per aggregate"
    );
    assert_eq!(
        ids_of("order-2").len(),
        1,
        "inserted and deleted in one transaction still counts"
    );
    assert_eq!(ids_of("order-3"), ["00000000-0000-4000-8000-000000000021"]);
    assert_eq!(ids_of("order-4").len(), 1, "the logical message");
    // Its correlation id also in a header, for the log lines and commands after it.
    let correlation = |order: &str| {
        let message = messages
            .iter()
            .find(|m| m.key() == Some(order.as_bytes()))
            .unwrap();
        message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "sluice.correlation_id"))
            .and_then(|h| h.value.map(<[u8]>::to_vec))
    };
    assert_eq!(correlation("order-4").as_deref(), Some(&b"checkout-4"[..]));
    assert_eq!(correlation("order-3"), None, "a row without one");
    assert!(ids_of("order-9").is_empty(), "rolled back");
    let OrderPayload::OrderStatusChanged(changed) = &events
        .iter()
        .find(|e| e.aggregate_id == "order-3")
        .unwrap()
        .payload
    else {
        panic!()
    };
    assert_eq!(format!("{:?}", changed.to_status), "Confirmed");

    let letter: DeadLetter = decoder.decode(dead[0].payload().unwrap()).await.unwrap();
    assert_eq!(letter.error_class, DeadLetterClass::Validation);
    assert!(
        letter
            .error_message
            .starts_with("payload.OrderStatusChanged.to_status: \"TELEPORTED\" is not one of"),
        "{}",
        letter.error_message
    );
    assert_eq!(letter.original_key.as_deref(), Some(&b"order-3"[..]));
    // The row as it came: its columns by name, values as Postgres' text.
    let row: serde_json::Value =
        serde_json::from_slice(letter.original_value.as_deref().unwrap()).unwrap();
    assert_eq!(
        (&row["aggregate_id"], &row["event_type"]),
        (&json!("order-3"), &json!("OrderStatusChanged"))
    );
    let payload: serde_json::Value =
        serde_json::from_str(row["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["to_status"], "TELEPORTED");

    running.stop().await;

    // A restarted relay resumes after what was confirmed: only the new row
    // arrives, nothing is replayed.
    let running = start(common::relay(pool.clone(), &name, &topic.name, &dlq.name));
    insert(
        &pool,
        &name,
        "00000000-0000-4000-8000-000000000040",
        "order-5",
        "OrderStatusChanged",
        status("PLACED", "CONFIRMED"),
    )
    .await;
    let after_restart = consume_exactly(&topic.name, 7, WAIT).await;
    let newest = after_restart
        .iter()
        .filter(|m| m.key() == Some(&b"order-5"[..]))
        .count();
    assert_eq!(
        newest, 1,
        "the new row once; the 6 before it were not replayed (consume_exactly checked there are 7)"
    );
    running.stop().await;

    drop_slot(&pool, &name).await;
}

/// `pg_logical_emit_message(true, 'outbox', …)` is a domain event for the
/// relay of domain events. The relay of an addressed outbox (the saga's,
/// beside it on the same database in every deployment) streams the same
/// WAL and must not relay it a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logical_message_is_relayed_once_beside_an_addressed_relay() {
    let stack = Stack::get();
    let pool = pool(4).await;
    let topic = TestTopic::with_schema_of("orders.events.v1", "relay-once", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "relay-once-dlq", 1).await;
    let events = outbox_table(&pool, "relay_once_events").await;
    let addressed = unique_name("relay_once_addressed").replace('-', "_");
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE {addressed} (id uuid PRIMARY KEY, topic text NOT NULL, \
         message_key text NOT NULL, value bytea NOT NULL, headers jsonb)"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let mut saga_relay = relay(pool.clone(), &addressed, &topic.name, &dlq.name);
    saga_relay.source.format = OutboxFormat::Addressed;
    saga_relay.source.message_prefix = OutboxFormat::Addressed
        .default_message_prefix()
        .map(str::to_owned);
    let both = [
        start(relay(pool.clone(), &events, &topic.name, &dlq.name)),
        start(saga_relay),
    ];
    for table in [&events, &addressed] {
        streaming(&pool, &format!("{table}_slot")).await;
    }

    let message = json!({
        "id": "00000000-0000-4000-8000-000000000040", "aggregate_type": "orders", "aggregate_id": "order-5",
        "event_type": "OrderCancelled", "payload": {"reason": "r", "cancelled_by": "c"}, "occurred_at": 1_763_900_000_000_i64,
        "correlation_id": "checkout-4"
    });
    sqlx::query("SELECT pg_logical_emit_message(true, $1, $2)")
        .bind(message_prefix(&events))
        .bind(message.to_string())
        .execute(&pool)
        .await
        .unwrap();
    // After it, on the same partition, one row of each relay's own. Each
    // relay produces in WAL order, so once both are on the topic, any copy
    // of the message either relay made is there before them.
    insert(
        &pool,
        &events,
        "00000000-0000-4000-8000-000000000041",
        "order-5",
        "OrderCancelled",
        json!({"reason": "r", "cancelled_by": "c"}),
    )
    .await;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {addressed} (id, topic, message_key, value) \
         VALUES (gen_random_uuid(), $1, 'order-5', 'marker'::bytea)"
    )))
    .bind(&topic.name)
    .execute(&pool)
    .await
    .unwrap();
    let codec = AvroCodec::new(stack.registry_settings());
    let mut seen = Vec::new();
    for message in consume_exactly(&topic.name, 3, WAIT).await {
        let value = message.payload().unwrap();
        if value == b"marker" {
            seen.push("marker".to_owned());
        } else {
            let event: OrderEvent = codec.decode(value).await.unwrap();
            seen.push(event.event_id);
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "00000000-0000-4000-8000-000000000040",
            "00000000-0000-4000-8000-000000000041",
            "marker"
        ],
        "the message once, each relay's own row once"
    );
    assert_eq!(message_count(&topic.name), 3, "no second copy");

    for running in both {
        running.stop().await;
    }
    drop_slot(&pool, &events).await;
    drop_slot(&pool, &addressed).await;
}

/// A relay of an addressed outbox table of its own (named after `prefix`),
/// streaming; returns the table and the relay.
async fn start_addressed(
    pool: &PgPool,
    prefix: &str,
    topic: &str,
    dlq: &str,
) -> (String, common::Running) {
    let table = unique_name(prefix).replace('-', "_");
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE {table} (id uuid PRIMARY KEY, topic text NOT NULL, \
         message_key text NOT NULL, value bytea NOT NULL, headers jsonb)"
    )))
    .execute(pool)
    .await
    .unwrap();
    let mut addressed = relay(pool.clone(), &table, topic, dlq);
    addressed.source.format = OutboxFormat::Addressed;
    addressed.source.message_prefix = None;
    let running = start(addressed);
    streaming(pool, &format!("{table}_slot")).await;
    (table, running)
}

/// An addressed row may only name the deployment's own topics: one naming
/// any other (another team's, Kafka's internal ones) is dead-lettered with
/// the reason, and the rows after it flow on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_addressed_row_naming_an_undeclared_topic_is_dead_lettered() {
    let pool = pool(2).await;
    let topic = TestTopic::with_schema_of("orders.events.v1", "relay-addressed", 1).await;
    let elsewhere = TestTopic::create("relay-not-ours", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "relay-addressed-dlq", 1).await;
    let (table, running) = start_addressed(&pool, "relay_addressed", &topic.name, &dlq.name).await;
    for target in [&elsewhere.name, &topic.name] {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} (id, topic, message_key, value) \
             VALUES (gen_random_uuid(), $1, 'k', 'bytes'::bytea)"
        )))
        .bind(target)
        .execute(&pool)
        .await
        .unwrap();
    }
    consume_exactly(&topic.name, 1, WAIT).await;
    let letters = consume_exactly(&dlq.name, 1, WAIT).await;
    let letter: DeadLetter = AvroCodec::new(Stack::get().registry_settings())
        .decode(letters[0].payload().unwrap())
        .await
        .unwrap();
    assert!(
        letter.error_message.contains(&elsewhere.name)
            && letter.error_message.contains("not in topics.toml"),
        "{}",
        letter.error_message
    );
    assert_eq!(message_count(&elsewhere.name), 0);
    running.stop().await;
    drop_slot(&pool, &table).await;
}

/// A row larger than Kafka takes (the producer's message.max.bytes, 1 000 000
/// by default, or the topic's max.message.bytes) is dead-lettered naming its
/// size and the limit — its bytes left out of the dead letter, which would
/// be as large — and the rows after it flow on (the relay sent it again and
/// again before, and nothing after it moved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_larger_than_kafka_takes_is_dead_lettered() {
    let pool = pool(2).await;
    let topic = TestTopic::with_schema_of("orders.events.v1", "relay-large", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "relay-large-dlq", 1).await;
    let (table, running) = start_addressed(&pool, "relay_large", &topic.name, &dlq.name).await;
    for (key, size) in [("large", 1_500_000), ("fits", 100)] {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} (id, topic, message_key, value) \
             VALUES (gen_random_uuid(), $1, $2, $3)"
        )))
        .bind(&topic.name)
        .bind(key)
        .bind(vec![b'x'; size])
        .execute(&pool)
        .await
        .unwrap();
    }
    let relayed = consume_exactly(&topic.name, 1, WAIT).await;
    assert_eq!(relayed[0].key(), Some(&b"fits"[..]));
    let letters = consume_exactly(&dlq.name, 1, WAIT).await;
    let letter: DeadLetter = AvroCodec::new(Stack::get().registry_settings())
        .decode(letters[0].payload().unwrap())
        .await
        .unwrap();
    assert_eq!(letter.original_key.as_deref(), Some(&b"large"[..]));
    assert!(
        letter.error_message.contains("message.max.bytes"),
        "{}",
        letter.error_message
    );
    assert_eq!(letter.original_value, None, "the bytes left out");
    running.stop().await;
    drop_slot(&pool, &table).await;
}

/// The dead letters of `dlq`, decoded.
async fn dead_letters(dlq: &str, count: usize) -> Vec<DeadLetter> {
    let decoder = AvroCodec::new(Stack::get().registry_settings());
    let mut letters = Vec::new();
    for message in consume_exactly(dlq, count, WAIT).await {
        letters.push(decoder.decode(message.payload().unwrap()).await.unwrap());
    }
    letters
}

/// `pg_logical_emit_message(false, …)` is in the WAL whether or not the
/// transaction that emitted it commits: not an outbox event. It was
/// dropped without a trace; it is dead-lettered, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logical_message_outside_a_transaction_is_dead_lettered() {
    let pool = pool(2).await;
    let name = outbox_table(&pool, "outbox_untransacted").await;
    let topic = TestTopic::with_schema_of("orders.events.v1", "relay-untransacted", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "relay-untransacted-dlq", 1).await;
    let relay = relay(pool.clone(), &name, &topic.name, &dlq.name);
    relay.prepare().await.unwrap();
    let message = json!({
        "id": "00000000-0000-4000-8000-000000000050", "aggregate_type": "orders", "aggregate_id": "order-6",
        "event_type": "OrderCancelled", "payload": {"reason": "r", "cancelled_by": "c"}, "occurred_at": 1_763_900_000_000_i64
    });
    sqlx::query("SELECT pg_logical_emit_message(false, $1, $2)")
        .bind(message_prefix(&name))
        .bind(message.to_string())
        .execute(&pool)
        .await
        .unwrap();
    // A row after it: once it is relayed, the message was seen.
    insert(
        &pool,
        &name,
        "00000000-0000-4000-8000-000000000051",
        "order-7",
        "OrderStatusChanged",
        status("PLACED", "CONFIRMED"),
    )
    .await;

    let running = start(relay);
    let relayed = consume_exactly(&topic.name, 1, WAIT).await;
    assert_eq!(relayed[0].key(), Some(&b"order-7"[..]), "only the row");
    let letters = dead_letters(&dlq.name, 1).await;
    assert!(
        letters[0]
            .error_message
            .contains("pg_logical_emit_message(false"),
        "{}",
        letters[0].error_message
    );
    assert_eq!(letters[0].original_key.as_deref(), Some(&b"order-6"[..]));
    running.stop().await;
    drop_slot(&pool, &name).await;
}

/// A transaction whose refused row comes before a row the registry cannot
/// encode yet (its topic's subject not registered): the transaction is held
/// until it is, and the refused row is dead-lettered once, not again with
/// every retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_transaction_dead_letters_its_refused_row_once() {
    let pool = pool(2).await;
    let name = outbox_table(&pool, "outbox_held").await;
    let topic = TestTopic::create("relay-held", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "relay-held-dlq", 1).await;
    let relay = relay(pool.clone(), &name, &topic.name, &dlq.name);
    relay.prepare().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    for (id, to) in [
        ("00000000-0000-4000-8000-000000000060", "TELEPORTED"),
        ("00000000-0000-4000-8000-000000000061", "CONFIRMED"),
    ] {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {name} (id, aggregate_type, aggregate_id, event_type, payload) VALUES ($1::uuid, 'orders', 'order-8', 'OrderStatusChanged', $2)"
        )))
        .bind(id)
        .bind(status("PLACED", to))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    let running = start(relay);
    // Held: tries at 200 ms, 400, 800, 1.6 s… while nothing can be encoded.
    common::streaming(&pool, &format!("{name}_slot")).await;
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(message_count(&topic.name), 0, "held until registered");
    sluice_testkit::register_value_schema("orders.events.v1", &topic.name).await;
    let relayed = consume_exactly(&topic.name, 1, WAIT).await;
    assert_eq!(relayed[0].key(), Some(&b"order-8"[..]));
    let letters = dead_letters(&dlq.name, 1).await;
    assert!(
        letters[0].error_message.contains("TELEPORTED"),
        "{}",
        letters[0].error_message
    );
    running.stop().await;
    drop_slot(&pool, &name).await;
}

/// A database whose DBA changed how values are written out (`ALTER
/// DATABASE … SET datestyle, timezone, bytea_output`): pgoutput writes the
/// rows' text in the replication session's settings, so the relay pins
/// them, and reads the row as on any other database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_its_own_date_style_is_read_the_same() {
    let stack = Stack::get();
    let admin = pool(1).await;
    let database = unique_name("relay_styled").replace('-', "_");
    for statement in [
        format!("CREATE DATABASE {database}"),
        format!("ALTER DATABASE {database} SET datestyle = 'SQL, DMY'"),
        format!("ALTER DATABASE {database} SET timezone = 'Asia/Kolkata'"),
        format!("ALTER DATABASE {database} SET bytea_output = 'escape'"),
    ] {
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&admin)
            .await
            .unwrap();
    }
    let url = stack
        .database_url
        .rsplit_once('/')
        .map(|(server, _)| format!("{server}/{database}"))
        .unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let name = outbox_table(&pool, "outbox_styled").await;
    let topic = TestTopic::with_schema_of("orders.events.v1", "relay-styled", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "relay-styled-dlq", 1).await;
    let mut relay = relay(pool.clone(), &name, &topic.name, &dlq.name);
    relay.source.connection = sluice_outbox_relay::ReplicationConnection::from_url(&url).unwrap();
    relay.prepare().await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {name} (id, aggregate_type, aggregate_id, event_type, payload, occurred_at) \
         VALUES ('00000000-0000-4000-8000-000000000070', 'orders', 'order-10', 'OrderCancelled', \
                 '{{\"reason\":\"r\",\"cancelled_by\":\"c\"}}', '2026-12-06 10:00:00.123+00')"
    )))
    .execute(&pool)
    .await
    .unwrap();

    let running = start(relay);
    let relayed = consume_exactly(&topic.name, 1, WAIT).await;
    let decoder = AvroCodec::new(stack.registry_settings());
    let event: OrderEvent = decoder.decode(relayed[0].payload().unwrap()).await.unwrap();
    assert_eq!(
        event.occurred_at, 1_796_551_200_123,
        "2026-12-06 10:00:00.123 UTC"
    );
    assert_eq!(message_count(&dlq.name), 0, "nothing dead-lettered");
    running.stop().await;
    drop_slot(&pool, &name).await;
    pool.close().await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE {database} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
}
