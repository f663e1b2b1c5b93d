//! The slot's confirmed position: it never passes a transaction Kafka has
//! not acknowledged, and it keeps moving while the outbox is idle and the
//! rest of the database is busy (so Postgres can recycle that WAL).
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    WAIT, confirmed_when_released, drop_slot, outbox_ddl, outbox_table, pool, relay, start,
    streaming,
};
use pgwire_replication::Lsn;
use rdkafka::ClientConfig;
use sluice_testkit::{TestTopic, consume_exactly, eventually};
use sqlx::{AssertSqlSafe, PgPool};

async fn current_lsn(pool: &PgPool) -> Lsn {
    let text: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(pool)
        .await
        .unwrap();
    Lsn::parse(&text).unwrap()
}

async fn confirmed(pool: &PgPool, slot: &str) -> Lsn {
    let text: String = sqlx::query_scalar(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_one(pool)
    .await
    .unwrap();
    Lsn::parse(&text).unwrap()
}

async fn insert_orders(pool: &PgPool, table: &str, rows: usize) {
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload) \
         SELECT gen_random_uuid(), 'orders', 'order-' || s, 'OrderCancelled', \
                '{{\"reason\":\"r\",\"cancelled_by\":\"c\"}}' \
         FROM generate_series(1, $1) AS s"
    )))
    .bind(i32::try_from(rows).unwrap())
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slot_does_not_pass_what_kafka_has_not_acknowledged() {
    let pool = pool(2).await;
    let table = outbox_table(&pool, "outbox_unacked").await;
    let slot = format!("{table}_slot");
    let topic = TestTopic::with_schema_of("orders.events.v1", "relay-unacked", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "relay-unacked-dlq", 1).await;

    // A relay whose broker never answers: rows are encoded and handed to the
    // producer, and stay unacknowledged.
    let mut stalled = relay(pool.clone(), &table, &topic.name, &dlq.name);
    stalled.producer = ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9")
        .set("enable.idempotence", "true")
        .create_with_context(sluice_telemetry::liveness::LivenessContext)
        .unwrap();
    stalled.prepare().await.unwrap();
    let running = start(stalled);
    insert_orders(&pool, &table, 3).await;
    let committed = current_lsn(&pool).await;
    // Well past several standby status intervals (200 ms).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        confirmed(&pool, &slot).await < committed,
        "the slot moved past rows Kafka never acknowledged"
    );
    running.stop().await;

    // A relay that reaches Kafka resumes from the slot and delivers them.
    let running = start(relay(pool.clone(), &table, &topic.name, &dlq.name));
    assert_eq!(consume_exactly(&topic.name, 3, WAIT).await.len(), 3);
    eventually("the slot past the delivered rows", WAIT, || {
        let pool = &pool;
        let slot = &slot;
        async move { (confirmed(pool, slot).await >= committed).then_some(()) }
    })
    .await;
    running.stop().await;
    drop_slot(&pool, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_outbox_on_a_busy_database_does_not_hold_wal() {
    let pool = pool(2).await;
    let table = outbox_table(&pool, "outbox_idle").await;
    let slot = format!("{table}_slot");
    let topic = TestTopic::with_schema_of("orders.events.v1", "relay-idle", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "relay-idle-dlq", 1).await;
    let relay = relay(pool.clone(), &table, &topic.name, &dlq.name);
    relay.prepare().await.unwrap();
    let running = start(relay);

    // The rest of the database writes ~10 MB of WAL; the outbox nothing.
    let busy = format!("{table}_busy");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE {busy} (n int, filler text); \
         INSERT INTO {busy} SELECT n, repeat('x', 100) FROM generate_series(1, 60000) AS n"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let written = current_lsn(&pool).await;
    let before = confirmed(&pool, &slot).await;
    assert!(before < written);
    eventually("the idle slot to follow the busy database", WAIT, || {
        let pool = &pool;
        let slot = &slot;
        async move { (confirmed(pool, slot).await >= written).then_some(()) }
    })
    .await;

    running.stop().await;
    drop_slot(&pool, &table).await;
}

/// A relay that streamed before (its publication is there) and finds its
/// slot gone, after a failover or a manual drop, does not make a new slot
/// that would start after what was lost: it refuses, naming the slot and
/// what to do, until it is told to start over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_slot_is_not_silently_recreated() {
    let pool = pool(2).await;
    let topic = TestTopic::with_schema_of("orders.events.v1", "relay-lost-slot", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "relay-lost-slot-dlq", 1).await;
    let table = outbox_table(&pool, "relay_lost").await;
    relay(pool.clone(), &table, &topic.name, &dlq.name)
        .prepare()
        .await
        .unwrap();
    drop_slot(&pool, &table).await;

    let err = relay(pool.clone(), &table, &topic.name, &dlq.name)
        .prepare()
        .await
        .unwrap_err();
    let slot = format!("{table}_slot");
    assert!(
        matches!(&err, sluice_outbox_relay::RelayError::SlotLost { slot: lost, .. } if *lost == slot),
        "{err}"
    );
    assert!(err.to_string().contains("--recreate-lost-slot"), "{err}");
    let slots: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1")
            .bind(&slot)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(slots, 0, "a new slot was made");

    let mut told = relay(pool.clone(), &table, &topic.name, &dlq.name);
    told.source.recreate_lost_slot = true;
    told.prepare().await.unwrap();
    drop_slot(&pool, &table).await;
}

/// `table` dropped and made again, as a migration may: the new table is in
/// no publication, so Postgres decodes none of its rows.
async fn make_again(pool: &PgPool, table: &str) {
    let ddl = format!("DROP TABLE {table}; {}", outbox_ddl(table));
    sqlx::raw_sql(AssertSqlSafe(ddl))
        .execute(pool)
        .await
        .unwrap();
}

/// Whether a session streams `slot`.
async fn slot_active(pool: &PgPool, slot: &str) -> bool {
    sqlx::query_scalar("SELECT active FROM pg_replication_slots WHERE slot_name = $1")
        .bind(slot)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// An outbox table its publication does not publish (made for another
/// table, or the table dropped and made again, which takes it out) would
/// stream nothing while the relay looked healthy and moved its slot past
/// the rows. At start the relay refuses, naming the publication, the table
/// and the fix; while streaming it stops (the slot left, which the alerts
/// see) and streams again once the table is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_its_publication_leaves_out_is_not_streamed_silently() {
    let pool = pool(2).await;
    let topic = TestTopic::with_schema_of("orders.events.v1", "relay-unpublished", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "relay-unpublished-dlq", 1).await;
    let table = outbox_table(&pool, "relay_unpublished").await;
    let (slot, publication) = (format!("{table}_slot"), format!("{table}_pub"));
    relay(pool.clone(), &table, &topic.name, &dlq.name)
        .prepare()
        .await
        .unwrap();

    // At start.
    make_again(&pool, &table).await;
    let err = relay(pool.clone(), &table, &topic.name, &dlq.name)
        .prepare()
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, sluice_outbox_relay::RelayError::NotPublished { .. }),
        "{message}"
    );
    for part in [
        publication.as_str(),
        table.as_str(),
        &format!("ALTER PUBLICATION {publication} ADD TABLE {table}"),
    ] {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
    let add = format!("ALTER PUBLICATION {publication} ADD TABLE {table}");
    sqlx::raw_sql(AssertSqlSafe(add.clone()))
        .execute(&pool)
        .await
        .unwrap();
    // A publication of the table that leaves its inserts out.
    let publish = |what: &str| format!("ALTER PUBLICATION {publication} SET (publish = '{what}')");
    sqlx::raw_sql(AssertSqlSafe(publish("update, delete")))
        .execute(&pool)
        .await
        .unwrap();
    let err = relay(pool.clone(), &table, &topic.name, &dlq.name)
        .prepare()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            sluice_outbox_relay::RelayError::InsertsNotPublished { .. }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("does not publish inserts"),
        "{err}"
    );
    sqlx::raw_sql(AssertSqlSafe(publish("insert, update, delete, truncate")))
        .execute(&pool)
        .await
        .unwrap();

    // While streaming.
    let running = start(relay(pool.clone(), &table, &topic.name, &dlq.name));
    streaming(&pool, &slot).await;
    insert_orders(&pool, &table, 1).await;
    assert_eq!(consume_exactly(&topic.name, 1, WAIT).await.len(), 1);
    make_again(&pool, &table).await;
    eventually("the relay to stop streaming", WAIT, || {
        let (pool, slot) = (&pool, &slot);
        async move { (!slot_active(pool, slot).await).then_some(()) }
    })
    .await;
    sqlx::raw_sql(AssertSqlSafe(add))
        .execute(&pool)
        .await
        .unwrap();
    streaming(&pool, &slot).await;
    insert_orders(&pool, &table, 2).await;
    assert_eq!(consume_exactly(&topic.name, 3, WAIT).await.len(), 3);

    running.stop().await;
    drop_slot(&pool, &table).await;
}

/// An outbox partitioned (say by hash, or by time for cheap retention):
/// the relay's publication sends its rows under the table's name, so they
/// stream; a publication of its own that names the partitions instead is
/// refused with the setting to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_outbox_streams_under_its_name() {
    let pool = pool(2).await;
    let topic = TestTopic::with_schema_of("orders.events.v1", "relay-partitioned", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "relay-partitioned-dlq", 1).await;
    let table = sluice_testkit::unique_name("relay_partitioned").replace('-', "_");
    let ddl = outbox_ddl(&table).replace(
            "-- W3C trace context, carried as a Kafka header\n);",
            &format!(
                ") PARTITION BY HASH (id); \
                 CREATE TABLE {table}_p0 PARTITION OF {table} FOR VALUES WITH (MODULUS 2, REMAINDER 0); \
                 CREATE TABLE {table}_p1 PARTITION OF {table} FOR VALUES WITH (MODULUS 2, REMAINDER 1);"
            ),
        );
    assert!(ddl.contains("PARTITION BY"), "the migration's end moved");
    sqlx::raw_sql(AssertSqlSafe(ddl))
        .execute(&pool)
        .await
        .unwrap();
    let (slot, publication) = (format!("{table}_slot"), format!("{table}_pub"));

    let running = start(relay(pool.clone(), &table, &topic.name, &dlq.name));
    streaming(&pool, &slot).await;
    insert_orders(&pool, &table, 4).await;
    assert_eq!(consume_exactly(&topic.name, 4, WAIT).await.len(), 4);
    running.stop().await;

    let by_partition = |on: bool| {
        format!("ALTER PUBLICATION {publication} SET (publish_via_partition_root = {on})")
    };
    sqlx::raw_sql(AssertSqlSafe(by_partition(false)))
        .execute(&pool)
        .await
        .unwrap();
    confirmed_when_released(&pool, &slot).await;
    let err = relay(pool.clone(), &table, &topic.name, &dlq.name)
        .prepare()
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&by_partition(true)), "{err}");
    drop_slot(&pool, &table).await;
}
