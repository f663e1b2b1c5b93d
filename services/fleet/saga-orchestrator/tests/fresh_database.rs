//! Replicas starting together on a fresh database (a first install with
//! two replicas) all prepare it: one of two concurrent `CREATE SCHEMA IF
//! NOT EXISTS` fails in Postgres with a unique violation, which stopped the
//! second orchestrator ("duplicate key value violates unique constraint
//! pg_namespace_nspname_index").
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Fleet;
use secrecy::SecretString;
use sluice_saga_orchestrator::Sagas;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_preparing_a_fresh_database_together_all_start() {
    for round in 0..3 {
        let fleet = Fleet::new(&format!("fresh-{round}")).await;
        let url = SecretString::from(fleet.database_url.clone());
        let name = sluice_testkit::unique_name("fresh").replace('-', "_");
        let (publication, slot) = (format!("{name}_pub"), format!("{name}_slot"));
        let replicas = (0..6).map(|_| {
            let sagas = Sagas::lazy(&url, 2).unwrap();
            let (publication, slot) = (publication.clone(), slot.clone());
            tokio::spawn(async move {
                sagas
                    .prepare("order-fulfilment", &publication, &slot, false)
                    .await
            })
        });
        for prepared in futures::future::join_all(replicas).await {
            prepared.unwrap().unwrap();
        }
        sqlx::query("SELECT pg_drop_replication_slot($1)")
            .bind(&slot)
            .execute(&fleet.pool)
            .await
            .unwrap();
    }
}
