//! saga-orchestrator started while its Postgres is down, as when both
//! restart at once: it waits for the database instead of exiting, says on
//! /readyz what it waits for, and once Postgres is back it prepares its
//! tables and slot and runs sagas to their end. In a test binary of its own,
//! as it stops the shared Postgres (and restarts the registry, whose storage
//! it is).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Fleet, orders_by};
use sluice_testkit::{PostgresOutage, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_orchestrator_started_before_postgres_waits_for_it() {
    let fleet = Fleet::new("postgres-away").await;
    let outage = PostgresOutage::begin();
    let started = Instant::now();
    let (mut orchestrator, port) = fleet.start_orchestrator("orchestrator", &[]).await;

    let readyz = format!("http://127.0.0.1:{port}/readyz");
    let (status, body) = eventually("an answer on /readyz", Duration::from_secs(60), || {
        let readyz = readyz.clone();
        async move {
            let response = reqwest::get(&readyz).await.ok()?;
            Some((response.status().as_u16(), response.text().await.ok()?))
        }
    })
    .await;
    let postgres = body.lines().find(|line| line.starts_with("postgres: "));
    assert_eq!(status, 503, "{body}");
    assert!(
        postgres.is_some_and(|line| line != "postgres: ok"),
        "/readyz names Postgres as what it waits for:\n{body}"
    );
    // Beyond a connection attempt's 10 s timeout, which used to end it.
    while started.elapsed() < Duration::from_secs(15) {
        orchestrator.assert_running("while Postgres was down");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    outage.end();
    // The sagas are counted from their table, which the waiting process
    // makes once Postgres is back.
    fleet.until_prepared().await;
    let relay = fleet.relay().await;
    let _erp = fleet.erp_sink(500).await;
    let _sheets = fleet.sheets_sink().await;
    let orders = orders_by("order", 5, "Grace Hopper");
    fleet.place(&orders).await;
    let states = fleet.until_finished(5, Duration::from_secs(120)).await;
    assert_eq!(states.get("COMPLETED"), Some(&5), "{states:?}");
    assert_eq!(fleet.erp_records().await.len(), 5);
    // The process that waited is the one that did the work.
    orchestrator.assert_running("after Postgres came back");
    fleet.finish(relay).await;
}
