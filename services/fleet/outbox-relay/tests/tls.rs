//! The relay over TLS, as managed Postgres services demand it (RDS with
//! rds.force_ssl, Azure with require_secure_transport): with
//! `sslmode=verify-full` in the database URL both its replication stream and
//! its pool run over TLS checked against the stack's CA, and a CA that did
//! not sign the server's certificate is refused with an error that says so.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};

use common::{WAIT, drop_slot, outbox_table, reader, relay, start};
use futures::StreamExt;
use sluice_outbox_relay::ReplicationConnection;
use sluice_testkit::{Stack, TestTopic, free_port, logged, readiness_status, unique_name};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};

async fn ssl_in_use(pool: &PgPool, query: &str, bind: &str) -> Option<bool> {
    sqlx::query_scalar(AssertSqlSafe(query.to_owned()))
        .bind(bind.to_owned())
        .fetch_optional(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_is_relayed_over_verified_tls() {
    let stack = Stack::get();
    let url = stack.database_url_verified_by(&stack.tls_ca);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .unwrap();
    let own = ssl_in_use(
        &pool,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND $1 <> ''",
        "x",
    );
    assert_eq!(own.await, Some(true), "the pool's connection is TLS");

    let table = outbox_table(&pool, "outbox_tls").await;
    let topic = TestTopic::with_schema_of("orders.events.v1", "relay-tls", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.outbox-relay.v1", "relay-tls-dlq", 1).await;
    let mut relay = relay(pool.clone(), &table, &topic.name, &dlq.name);
    relay.source.connection = ReplicationConnection::from_url(&url).unwrap();
    let slot = relay.source.slot.clone();
    relay.prepare().await.unwrap();
    let running = start(relay);

    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload) \
         SELECT gen_random_uuid(), 'orders', 'order-' || s, 'OrderCancelled', \
                '{{\"reason\":\"r\",\"cancelled_by\":\"c\"}}' FROM generate_series(1, 3) AS s"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let consumer = reader(&topic.name);
    let read: Vec<_> = tokio::time::timeout(WAIT, consumer.stream().take(3).collect())
        .await
        .expect("three rows relayed over TLS");
    assert!(read.iter().all(Result::is_ok));
    let stream_ssl = ssl_in_use(
        &pool,
        "SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) \
         WHERE r.application_name = 'sluice-outbox-relay/' || $1",
        &slot,
    );
    assert_eq!(
        stream_ssl.await,
        Some(true),
        "the replication stream is TLS"
    );

    running.stop().await;
    drop_slot(&pool, &table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_another_ca_is_refused() {
    let stack = Stack::get();
    let url = stack.database_url_verified_by(&stack.wrong_ca);
    let refused = PgPoolOptions::new().connect(&url).await.unwrap_err();
    assert!(
        refused.to_string().contains("certificate verify failed"),
        "the pool says why: {refused}"
    );

    // The binary, configured so: not ready, and its log names the problem.
    let port = free_port();
    let log = std::env::temp_dir().join(unique_name("relay-wrong-ca.log"));
    let table = unique_name("outbox_wrong_ca").replace('-', "_");
    let mut child = sluice_testkit::KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
            .env("SLUICE_DATABASE_URL", &url)
            .env("SLUICE_KAFKA_BOOTSTRAP", &stack.kafka_bootstrap)
            .env("SLUICE_SCHEMA_REGISTRY_URL", &stack.schema_registry_url)
            .env("SLUICE_HTTP_LISTEN", format!("127.0.0.1:{port}"))
            .env("SLUICE_LOG", "info")
            .args(["--outbox-table", &table])
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap(),
    );
    let said = logged(&log, "certificate verify failed").await;
    let status = readiness_status(port).await;
    assert_eq!(
        status, 503,
        "not ready with a server it cannot trust:\n{said}"
    );
    child.assert_running("the relay waits for a server it can trust");
}
