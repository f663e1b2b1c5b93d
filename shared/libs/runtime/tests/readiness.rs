//! `/readyz` of a service that needs the registry and Postgres: ready while
//! both answer, unready (503, naming the one that does not) otherwise.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use schema_registry_converter::async_impl::schema_registry::SrSettings;
use sluice_avro::RegistryReadiness;
use sluice_runtime::PostgresReadiness;
use sluice_telemetry::{ReadinessCheck, health_router, prometheus_handle, serve_health};
use sluice_testkit::Stack;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;

async fn readyz(checks: Vec<Arc<dyn ReadinessCheck>>) -> (u16, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = health_router(prometheus_handle().unwrap(), checks);
    tokio::spawn(serve_health(listener, router, std::future::pending()));
    let response = reqwest::get(format!("http://{address}/readyz"))
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn ready_only_while_registry_and_postgres_answer() {
    let stack = Stack::get();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&stack.database_url)
        .await
        .unwrap();
    let registry: Arc<dyn ReadinessCheck> =
        Arc::new(RegistryReadiness::new(stack.registry_settings()));
    let postgres: Arc<dyn ReadinessCheck> = Arc::new(PostgresReadiness::new(pool));
    assert_eq!(
        readyz(vec![Arc::clone(&registry), Arc::clone(&postgres)]).await,
        (200, "schema-registry: ok\npostgres: ok\n".into())
    );

    let mut unreachable = SrSettings::new_builder("http://127.0.0.1:1/apis/ccompat/v7".into());
    unreachable.set_timeout(Duration::from_secs(2));
    let dead_registry: Arc<dyn ReadinessCheck> =
        Arc::new(RegistryReadiness::new(unreachable.build().unwrap()));
    let dead_pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy("postgres://sluice:sluice@127.0.0.1:1/sluice")
        .unwrap();
    let dead_postgres: Arc<dyn ReadinessCheck> = Arc::new(PostgresReadiness::new(dead_pool));
    let (status, body) = readyz(vec![registry, dead_registry, postgres, dead_postgres]).await;
    assert_eq!(status, 503);
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "schema-registry: ok");
    assert!(
        lines[1].starts_with("schema-registry: ") && lines[1] != "schema-registry: ok",
        "{body}"
    );
    assert_eq!(lines[2], "postgres: ok");
    assert!(
        lines[3].starts_with("postgres: ") && lines[3] != "postgres: ok",
        "{body}"
    );
}
