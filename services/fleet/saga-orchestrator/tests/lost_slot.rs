//! The outbox's slot lost while its publication exists (a failover, a
//! manual drop): the orchestrator does not make a new one that would start
//! after the rows written since; it refuses, naming the slot and what to
//! do, until told to start over.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Fleet;
use secrecy::SecretString;
use sluice_saga_orchestrator::{Sagas, StoreError};

const SAGA: &str = "order-fulfilment";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_outbox_slot_is_not_silently_recreated() {
    let fleet = Fleet::new("lost-slot").await;
    let sagas = Sagas::lazy(&SecretString::from(fleet.database_url.clone()), 2).unwrap();
    let name = sluice_testkit::unique_name("lost_slot").replace('-', "_");
    let (publication, slot) = (&format!("{name}_pub"), &format!("{name}_slot"));
    sagas.prepare(SAGA, publication, slot, false).await.unwrap();
    sqlx::query("SELECT pg_drop_replication_slot($1)")
        .bind(slot)
        .execute(&fleet.pool)
        .await
        .unwrap();

    let err = sagas
        .prepare(SAGA, publication, slot, false)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::SlotLost { .. }), "{err}");
    assert!(err.to_string().contains("--recreate-lost-slot"), "{err}");
    let slots: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1")
            .bind(slot)
            .fetch_one(&fleet.pool)
            .await
            .unwrap();
    assert_eq!(slots, 0, "a new slot was made");

    sagas.prepare(SAGA, publication, slot, true).await.unwrap();
    sqlx::query("SELECT pg_drop_replication_slot($1)")
        .bind(slot)
        .execute(&fleet.pool)
        .await
        .unwrap();
}

/// A database holding another saga's sagas (a second saga pointed at the
/// first one's database, or the saga renamed): refused, naming both, before
/// the outboxes and the replies of the two could mix or the renamed
/// saga's sagas in flight stop moving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_holding_another_sagas_sagas_is_refused() {
    let fleet = Fleet::new("other-sagas").await;
    let sagas = Sagas::lazy(&SecretString::from(fleet.database_url.clone()), 2).unwrap();
    let name = sluice_testkit::unique_name("other_sagas").replace('-', "_");
    let (publication, slot) = (&format!("{name}_pub"), &format!("{name}_slot"));
    sagas.prepare(SAGA, publication, slot, false).await.unwrap();
    sqlx::query(
        "INSERT INTO saga.sagas (saga_id, saga_type, business_key, state, step, attempt, data, version)
         VALUES (gen_random_uuid(), 'invoice-booking', 'INV-1', 'RUNNING', 'book-in-erp', 1, '{}', 1)",
    )
    .execute(&fleet.pool)
    .await
    .unwrap();

    let err = sagas
        .prepare(SAGA, publication, slot, false)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::OtherSagas { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("\"invoice-booking\"") && text.contains("\"order-fulfilment\""),
        "{text}"
    );
    // The saga whose rows they are starts.
    sagas
        .prepare("invoice-booking", publication, slot, false)
        .await
        .unwrap();
    sqlx::query("SELECT pg_drop_replication_slot($1)")
        .bind(slot)
        .execute(&fleet.pool)
        .await
        .unwrap();
}
