//! 100 000 outbox rows written by concurrent transactions (some rolled
//! back) while the relay is SIGKILLed three times: afterwards every committed
//! row is on Kafka, none of the rolled-back ones, first arrivals in commit
//! order per aggregate, and every message a restarted relay sent comes from
//! after the slot position confirmed before the kill (so only those rows
//! can arrive twice; they are counted).
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{WAIT, confirmed_when_released, drop_slot, outbox_table, pool, reader, relay};
use futures::StreamExt;
use pgwire_replication::Lsn;
use rdkafka::Message;
use rdkafka::message::Headers;
use sluice_avro::AvroCodec;
use sluice_contracts::types::{OrderEvent, OrderPayload};
use sluice_outbox_relay::LSN_HEADER;
use sluice_testkit::{Stack, TestTopic, eventually, message_count};
use sqlx::{AssertSqlSafe, PgPool};

const ROWS: usize = 100_000;
const WRITERS: usize = 4;
const AGGREGATES: usize = 200;
/// Relayed-message counts at which the relay is killed.
const KILLS: [i64; 3] = [15_000, 45_000, 75_000];

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
}

/// The relay process. Run by the test below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of concurrent_rows_through_three_sigkills"]
async fn relay_child() {
    relay(
        pool(2).await,
        &var("TABLE"),
        &var("TOPIC"),
        &var("DLQ_TOPIC"),
    )
    .run(std::future::pending())
    .await
    .unwrap();
}

fn spawn_relay(table: &str, topic: &str, dlq: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .stdout(Stdio::null())
        .args(["--exact", "relay_child", "--ignored", "--nocapture"])
        .env("TABLE", table)
        .env("TOPIC", topic)
        .env("DLQ_TOPIC", dlq)
        .spawn()
        .unwrap()
}

/// One business writer: transactions of 1–20 rows for one aggregate, each
/// numbered by a per-aggregate counter row locked until commit (so numbers
/// follow commit order); every 10th transaction rolls back, its rows
/// marked `doomed`. Returns the committed rows per aggregate.
async fn write(pool: PgPool, table: String, writer: usize, rows: usize) -> HashMap<String, i64> {
    let mut committed: HashMap<String, i64> = HashMap::new();
    let mut written = 0;
    let mut t = 0usize;
    while written < rows {
        t += 1;
        let size = ((t * 7919 + writer) % 20 + 1).min(rows - written);
        let aggregate = format!("order-{}", (t * 31 + writer * 17) % AGGREGATES);
        let doomed = t.is_multiple_of(10);
        let mut tx = pool.begin().await.unwrap();
        let last: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "UPDATE {table}_seq SET seq = seq + $2 WHERE aggregate = $1 RETURNING seq"
        )))
        .bind(&aggregate)
        .bind(i64::try_from(size).unwrap())
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        let first = last - i64::try_from(size).unwrap() + 1;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload) \
             SELECT gen_random_uuid(), 'orders', $1, 'OrderCancelled', \
                    jsonb_build_object('reason', $4 || s, 'cancelled_by', 'writer') \
             FROM generate_series($2::bigint, $3::bigint) AS s"
        )))
        .bind(&aggregate)
        .bind(first)
        .bind(last)
        .bind(if doomed { "doomed " } else { "seq " })
        .execute(&mut *tx)
        .await
        .unwrap();
        if doomed {
            tx.rollback().await.unwrap();
        } else {
            tx.commit().await.unwrap();
            *committed.entry(aggregate).or_default() += i64::try_from(size).unwrap();
            written += size;
        }
    }
    committed
}

/// A relayed message as the checks need it.
struct Arrival {
    event_id: String,
    aggregate: String,
    seq: i64,
    lsn: Lsn,
    produced_ms: i64,
}

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rows_through_three_sigkills() {
    let stack = Stack::get();
    let pool = pool(WRITERS as u32 + 2).await;
    let table = outbox_table(&pool, "outbox_stream").await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE {table}_seq (aggregate text PRIMARY KEY, seq bigint NOT NULL); \
         INSERT INTO {table}_seq SELECT 'order-' || n, 0 FROM generate_series(0, {}) AS n",
        AGGREGATES - 1
    )))
    .execute(&pool)
    .await
    .unwrap();
    let topic = TestTopic::with_schema_of("orders.events.v1", "relay-stream", 3).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "relay-stream-dlq", 1).await;
    relay(pool.clone(), &table, &topic.name, &dlq.name)
        .prepare()
        .await
        .unwrap();

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(write(pool.clone(), table.clone(), w, ROWS / WRITERS)))
        .collect();

    // Kill the relay while it streams; after each kill, note when and the
    // slot position a restart resumes from.
    let slot = format!("{table}_slot");
    let mut kills: Vec<(i64, Lsn)> = Vec::new();
    for threshold in KILLS {
        let mut child = spawn_relay(&table, &topic.name, &dlq.name);
        eventually(&format!("{threshold} events relayed"), WAIT, || {
            let count = message_count(&topic.name);
            async move { (count >= threshold).then_some(()) }
        })
        .await;
        child.kill().unwrap();
        child.wait().unwrap();
        let confirmed = confirmed_when_released(&pool, &slot).await;
        kills.push((now_ms(), Lsn::parse(&confirmed).unwrap()));
    }
    let mut expected: HashMap<String, i64> = HashMap::new();
    for writer in writers {
        for (aggregate, rows) in writer.await.unwrap() {
            *expected.entry(aggregate).or_default() += rows;
        }
    }
    assert_eq!(expected.values().sum::<i64>(), ROWS as i64);

    // A last relay finishes the stream.
    let mut child = spawn_relay(&table, &topic.name, &dlq.name);
    let codec = AvroCodec::new(stack.registry_settings());
    let consumer = reader(&topic.name);
    let mut stream = consumer.stream();
    let mut arrivals: Vec<Arrival> = Vec::with_capacity(ROWS);
    let mut ids: HashSet<String> = HashSet::with_capacity(ROWS);
    let read = tokio::time::timeout(WAIT * 2, async {
        while ids.len() < ROWS {
            let message = stream.next().await.unwrap().unwrap();
            let event: OrderEvent = codec.decode(message.payload().unwrap()).await.unwrap();
            let OrderPayload::OrderCancelled(cancelled) = event.payload else {
                panic!("unexpected payload in {}", event.event_id);
            };
            let lsn = message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == LSN_HEADER))
                .and_then(|h| h.value)
                .map(|v| Lsn::parse(std::str::from_utf8(v).unwrap()).unwrap())
                .expect("every relayed event names its LSN");
            assert!(
                !cancelled.reason.starts_with("doomed"),
                "{} is from a rolled-back transaction",
                event.event_id
            );
            let seq = cancelled.reason.trim_start_matches("seq ").parse().unwrap();
            ids.insert(event.event_id.clone());
            arrivals.push(Arrival {
                event_id: event.event_id,
                aggregate: event.aggregate_id,
                seq,
                lsn,
                produced_ms: message.timestamp().to_millis().unwrap(),
            });
        }
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        read.is_ok(),
        "only {} of {ROWS} committed rows reached Kafka",
        ids.len()
    );

    // First arrivals per aggregate are 1, 2, 3, … up to its committed rows:
    // commit order, none missing, none rolled back.
    let mut next: BTreeMap<&str, i64> = BTreeMap::new();
    let mut first_seen: HashSet<&str> = HashSet::with_capacity(ROWS);
    let mut duplicates_after_kill = vec![0usize; KILLS.len()];
    for arrival in &arrivals {
        // The session that sent it started after the last kill before it was
        // produced, from the slot position confirmed then.
        let session = kills.iter().rposition(|(at, _)| *at <= arrival.produced_ms);
        if let Some(kill) = session {
            assert!(
                arrival.lsn > kills[kill].1,
                "{} (LSN {}) resent from before the position {} confirmed at kill {}",
                arrival.event_id,
                arrival.lsn,
                kills[kill].1,
                kill + 1
            );
        }
        if !first_seen.insert(&arrival.event_id) {
            let kill = session.expect("a duplicate only after a kill");
            duplicates_after_kill[kill] += 1;
            continue;
        }
        let expected_seq = next.entry(&arrival.aggregate).or_insert(1);
        assert_eq!(
            arrival.seq, *expected_seq,
            "{}: row {} arrived where row {expected_seq} was due",
            arrival.aggregate, arrival.seq
        );
        *expected_seq += 1;
    }
    for (aggregate, rows) in &expected {
        assert_eq!(
            next.get(aggregate.as_str()).map(|n| n - 1),
            Some(*rows),
            "{aggregate}: every committed row"
        );
    }
    assert_eq!(message_count(&dlq.name), 0);
    eprintln!(
        "{ROWS} committed rows from {WRITERS} concurrent writers, relay SIGKILLed at {KILLS:?} \
         messages: {} messages, duplicates sent after each kill {duplicates_after_kill:?}",
        arrivals.len()
    );
    drop_slot(&pool, &table).await;
}
