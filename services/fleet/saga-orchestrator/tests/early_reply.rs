//! A reply can reach the orchestrator before the saga it answers is
//! visible in Postgres: outbox-relay streams a transaction once its commit
//! is in the WAL, a moment before the backend that committed it makes it
//! visible, and on busy cores a sink answered within that moment (the saga
//! benchmark, one saga in 7 405). Here the moment is held open: a start is
//! made as the orchestrator makes one (its start lock taken, its row
//! written) in a transaction left open while its saga's reply is produced.
//! The orchestrator must apply the reply once that start has ended, not
//! pass it over as another saga's: the saga would wait out its 180 s step
//! timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Fleet;
use rdkafka::producer::FutureRecord;
use sluice_avro::AvroCodec;
use sluice_contracts::types::{ErpOperation, ErpOutcome, ErpResult, SagaStep};
use sluice_testkit::{Stack, eventually, metric, producer};
use sqlx::{Connection, PgConnection, Row};
use uuid::Uuid;

const STEP: &str = "reserve-in-erp";

/// The orchestrator's count of replies it did nothing with.
async fn ignored(port: u16) -> f64 {
    metric(
        &Fleet::metrics(port).await,
        "sluice_saga_replies_ignored_total",
        &[("saga", "order-fulfilment")],
    )
}

/// The class of the advisory lock a start holds on its saga until it is
/// visible (`START_LOCK` in src/store.rs).
const START_LOCK: i32 = 0x5a6a;

/// How a start lock is taken: by a start, or by a reply waiting for one.
enum Mode {
    Exclusive,
    Shared,
}

/// Takes `saga_id`'s start lock in the open transaction `tx`.
async fn start_lock(tx: &mut PgConnection, saga_id: Uuid, mode: Mode) {
    let statement = match mode {
        Mode::Exclusive => "SELECT pg_advisory_xact_lock($1, hashtext($2::text))",
        Mode::Shared => "SELECT pg_advisory_xact_lock_shared($1, hashtext($2::text))",
    };
    sqlx::query(statement)
        .bind(START_LOCK)
        .bind(saga_id)
        .execute(tx)
        .await
        .unwrap();
}

/// Whether a session of the database waits for an advisory lock: the
/// orchestrator, for the start the test holds open.
async fn waiting_for_the_start(fleet: &Fleet) -> bool {
    sqlx::query(
        "SELECT count(*) FROM pg_locks
         WHERE locktype = 'advisory' AND NOT granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&fleet.pool)
    .await
    .map(|row| row.get::<i64, _>(0) > 0)
    .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reply_before_its_saga_is_visible_is_applied_once_it_is() {
    let fleet = Fleet::new("early_reply").await;
    let (_orchestrator, port) = fleet.orchestrator("orchestrator", &[]).await;
    let relay = fleet.relay().await;
    // No erp-sink: the reservation waits, and the test answers it.
    let first = "order-early-1";
    fleet.place(&[(first.into(), "Ada Lovelace".into())]).await;
    eventually(
        "the first saga at its reservation",
        Duration::from_secs(60),
        || async {
            let log = fleet.step_log().await;
            log.contains_key(&(first.into(), STEP.into(), 1, "command_sent".into()))
                .then_some(())
        },
    )
    .await;

    // A second saga's start in flight, as the orchestrator makes one: its
    // start lock taken, its row (the first's, under another id and key)
    // written, the transaction not yet ended.
    let second = Uuid::new_v4();
    let mut writer = PgConnection::connect(&fleet.database_url).await.unwrap();
    let mut open = writer.begin().await.unwrap();
    start_lock(&mut open, second, Mode::Exclusive).await;
    sqlx::query(
        "INSERT INTO saga.sagas (saga_id, saga_type, business_key, state, step, attempt, data,
                                 failure, version, deadline, started_at, step_started_at,
                                 updated_at, finished_at)
         SELECT $1, saga_type, 'order-early-2', state, step, attempt, data, failure, version,
                deadline, started_at, step_started_at, updated_at, finished_at
         FROM saga.sagas WHERE business_key = $2",
    )
    .bind(second)
    .bind(first)
    .execute(&mut *open)
    .await
    .unwrap();

    let ignored_before = ignored(port).await;
    let reply = ErpResult {
        command_id: Uuid::new_v5(&second, format!("{STEP}/do").as_bytes()).to_string(),
        model: "sale.order".into(),
        operation: ErpOperation::Create,
        external_ref: "order-early-2".into(),
        outcome: ErpOutcome::Applied,
        erp_record_id: Some(7),
        error: None,
        attempts: 1,
        completed_at: 0,
        saga: Some(SagaStep {
            saga_id: second.to_string(),
            step: STEP.into(),
            attempt: 1,
        }),
        correlation_id: None,
        causation_id: None,
    };
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let payload = codec
        .encode(&fleet.topics.erp_results, &reply)
        .await
        .unwrap();
    producer()
        .send(
            FutureRecord::to(&fleet.topics.erp_results)
                .key("order-early-2")
                .payload(&payload),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    // The orchestrator has the reply in hand: it passed it over, or it
    // waits for the start.
    eventually(
        "the reply handled or waiting",
        Duration::from_secs(30),
        || async {
            (ignored(port).await > ignored_before || waiting_for_the_start(&fleet).await)
                .then_some(())
        },
    )
    .await;
    open.commit().await.unwrap();

    eventually(
        "the second saga past its reservation",
        Duration::from_secs(30),
        || async {
            let log = fleet.step_log().await;
            log.contains_key(&("order-early-2".into(), STEP.into(), 1, "succeeded".into()))
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        ignored(port).await,
        ignored_before,
        "the reply was applied, not passed over"
    );
    fleet.finish(relay).await;
}

/// The other half of the bargain: a start holds its saga's start lock, so
/// a reply that finds no saga has something to wait for. The test holds
/// the lock shared, as such a reply does; the order's start waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_start_takes_its_sagas_start_lock() {
    let fleet = Fleet::new("start_lock").await;
    let (_orchestrator, _port) = fleet.orchestrator("orchestrator", &[]).await;
    let relay = fleet.relay().await;
    let order = "order-locked-1";
    let saga_id = Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("order-fulfilment/{order}").as_bytes(),
    );
    let mut reader = PgConnection::connect(&fleet.database_url).await.unwrap();
    let mut held = reader.begin().await.unwrap();
    start_lock(&mut held, saga_id, Mode::Shared).await;
    fleet.place(&[(order.into(), "Ada Lovelace".into())]).await;
    eventually(
        "the start waiting for its lock",
        Duration::from_secs(30),
        || async { waiting_for_the_start(&fleet).await.then_some(()) },
    )
    .await;
    assert!(
        fleet.states().await.is_empty(),
        "no saga while its start waits"
    );
    held.commit().await.unwrap();
    eventually("the saga started", Duration::from_secs(30), || async {
        let log = fleet.step_log().await;
        log.contains_key(&(order.into(), STEP.into(), 1, "command_sent".into()))
            .then_some(())
    })
    .await;
    fleet.finish(relay).await;
}
