//! The outbox's slot lost while its publication exists (a failover, a
//! manual drop): the orchestrator does not make a new one that would start
//! after the rows written since; it refuses, naming the slot and what to
//! do, until told to start over.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Fleet;
use secrecy::SecretString;
use sluice_saga_orchestrator::{Sagas, StoreError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_outbox_slot_is_not_silently_recreated() {
    let fleet = Fleet::new("lost-slot").await;
    let sagas = Sagas::lazy(&SecretString::from(fleet.database_url.clone()), 2).unwrap();
    let name = sluice_testkit::unique_name("lost_slot").replace('-', "_");
    let (publication, slot) = (&format!("{name}_pub"), &format!("{name}_slot"));
    sagas.prepare(publication, slot, false).await.unwrap();
    sqlx::query("SELECT pg_drop_replication_slot($1)")
        .bind(slot)
        .execute(&fleet.pool)
        .await
        .unwrap();

    let err = sagas.prepare(publication, slot, false).await.unwrap_err();
    assert!(matches!(err, StoreError::SlotLost { .. }), "{err}");
    assert!(err.to_string().contains("--recreate-lost-slot"), "{err}");
    let slots: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1")
            .bind(slot)
            .fetch_one(&fleet.pool)
            .await
            .unwrap();
    assert_eq!(slots, 0, "a new slot was made");

    sagas.prepare(publication, slot, true).await.unwrap();
    sqlx::query("SELECT pg_drop_replication_slot($1)")
        .bind(slot)
        .execute(&fleet.pool)
        .await
        .unwrap();
}
