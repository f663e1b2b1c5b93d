//! The outbox's slot lost while its publication exists (a failover, a
//! manual drop): the orchestrator does not make a new one that would start
//! after the rows written since; it refuses, naming the slot and what to
//! do, until told to start over.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Fleet;
use secrecy::SecretString;
use sluice_saga_orchestrator::{Sagas, StoreError};

const SAGA: &str = "order-fulfilment";

/// A fleet's database prepared for the order saga, with a publication and
/// slot of the test's own.
struct Prepared {
    fleet: Fleet,
    sagas: Sagas,
    publication: String,
    slot: String,
}

impl Prepared {
    async fn new(test: &str) -> Self {
        let fleet = Fleet::new(test).await;
        let sagas = Sagas::lazy(&SecretString::from(fleet.database_url.clone()), 2).unwrap();
        let name = sluice_testkit::unique_name(test).replace('-', "_");
        let (publication, slot) = (format!("{name}_pub"), format!("{name}_slot"));
        sagas
            .prepare(SAGA, &publication, &slot, false)
            .await
            .unwrap();
        Self {
            fleet,
            sagas,
            publication,
            slot,
        }
    }

    async fn prepare(&self, saga: &str, recreate: bool) -> Result<(), StoreError> {
        let (publication, slot) = (&self.publication, &self.slot);
        self.sagas.prepare(saga, publication, slot, recreate).await
    }

    /// Makes the slot `after` a while on a task of its own, as the saga
    /// outbox's relay does.
    fn make_slot_after(&self, after: Duration) -> tokio::task::JoinHandle<()> {
        let (pool, slot) = (self.fleet.pool.clone(), self.slot.clone());
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            sqlx::query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')")
                .bind(&slot)
                .execute(&pool)
                .await
                .unwrap();
        })
    }

    async fn drop_slot(&self) {
        sqlx::query("SELECT pg_drop_replication_slot($1)")
            .bind(&self.slot)
            .execute(&self.fleet.pool)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_outbox_slot_is_not_silently_recreated() {
    let prepared = Prepared::new("lost-slot").await;
    prepared.drop_slot().await;

    let err = prepared.prepare(SAGA, false).await.unwrap_err();
    assert!(matches!(err, StoreError::SlotLost { .. }), "{err}");
    assert!(err.to_string().contains("--recreate-lost-slot"), "{err}");
    let slots: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1")
            .bind(&prepared.slot)
            .fetch_one(&prepared.fleet.pool)
            .await
            .unwrap();
    assert_eq!(slots, 0, "a new slot was made");

    prepared.prepare(SAGA, true).await.unwrap();
    prepared.drop_slot().await;
}

/// The saga outbox's relay, started beside the orchestrator on a fresh
/// database, makes the publication and, a moment later, the slot: the
/// orchestrator, between the two, waits for the slot rather than calling
/// it lost (a fresh stack's end-to-end benchmark crashed on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_made_just_after_its_publication_is_not_lost() {
    let prepared = Prepared::new("slot-after").await;
    prepared.drop_slot().await;
    let relay = prepared.make_slot_after(Duration::from_millis(500));
    prepared.prepare(SAGA, false).await.unwrap();
    relay.await.unwrap();
    prepared.drop_slot().await;
}

/// A slot still being made (its creation waits for the transactions open
/// when it began) is listed before it can stream: a row committed before
/// it is made is never streamed from it. The orchestrator, finding the
/// relay making it, waits for it to be made before it writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_once_prepared_are_streamed_from_a_slot_being_made() {
    let prepared = Prepared::new("slot-making").await;
    prepared.drop_slot().await;
    let pool = prepared.fleet.pool.clone();
    // A transaction open elsewhere, with an id: the slot's creation waits
    // for it to end.
    let mut open = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *open)
        .await
        .unwrap();
    let relay = prepared.make_slot_after(Duration::ZERO);
    let listed = || async {
        sqlx::query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1")
            .bind(&prepared.slot)
            .fetch_optional(&pool)
            .await
            .unwrap()
            .map(|_| ())
    };
    let within = Duration::from_secs(30);
    sluice_testkit::eventually("the slot's creation to begin", within, listed).await;
    let closing = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        open.commit().await.unwrap();
    });

    prepared.prepare(SAGA, false).await.unwrap();
    sqlx::query(
        "INSERT INTO saga.outbox (id, topic, message_key, value, saga_id, step)
         VALUES (gen_random_uuid(), 'erp.commands.v1', 'SO-1', '\\x00', gen_random_uuid(), 'reserve')",
    )
    .execute(&pool)
    .await
    .unwrap();
    closing.await.unwrap();
    relay.await.unwrap();

    // pgoutput's insert messages begin with 'I'.
    let inserts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
             'proto_version', '1', 'publication_names', $2)
         WHERE get_byte(data, 0) = 73",
    )
    .bind(&prepared.slot)
    .bind(&prepared.publication)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        inserts, 1,
        "the row written once prepared is not in the slot"
    );
    prepared.drop_slot().await;
}

/// The outbox's slot name taken by a physical slot (a standby's, say),
/// which never has a confirmed position: refused by name, not waited for
/// as a slot being made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_physical_slot_of_the_outbox_slots_name_is_refused() {
    let prepared = Prepared::new("physical-slot").await;
    prepared.drop_slot().await;
    sqlx::query("SELECT pg_create_physical_replication_slot($1)")
        .bind(&prepared.slot)
        .execute(&prepared.fleet.pool)
        .await
        .unwrap();

    let within = Duration::from_secs(30);
    let prepared_or_not = tokio::time::timeout(within, prepared.prepare(SAGA, false)).await;
    prepared.drop_slot().await;
    let err = prepared_or_not
        .expect("prepare still waiting after 30 s")
        .unwrap_err();
    assert!(matches!(err, StoreError::SlotNotOutbox { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("a physical slot") && text.contains("--outbox-slot"),
        "{text}"
    );
}

/// A database holding another saga's sagas (a second saga pointed at the
/// first one's database, or the saga renamed): refused, naming both, before
/// the outboxes and the replies of the two could mix or the renamed
/// saga's sagas in flight stop moving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_holding_another_sagas_sagas_is_refused() {
    let prepared = Prepared::new("other-sagas").await;
    sqlx::query(
        "INSERT INTO saga.sagas (saga_id, saga_type, business_key, state, step, attempt, data, version)
         VALUES (gen_random_uuid(), 'invoice-booking', 'INV-1', 'RUNNING', 'book-in-erp', 1, '{}', 1)",
    )
    .execute(&prepared.fleet.pool)
    .await
    .unwrap();

    let err = prepared.prepare(SAGA, false).await.unwrap_err();
    assert!(matches!(err, StoreError::OtherSagas { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("\"invoice-booking\"") && text.contains("\"order-fulfilment\""),
        "{text}"
    );
    // The saga whose rows they are starts.
    prepared.prepare("invoice-booking", false).await.unwrap();
    prepared.drop_slot().await;
}
