//! `/readyz` check: Postgres answers a query.

use std::future::Future;
use std::pin::Pin;

use sluice_telemetry::ReadinessCheck;
use sqlx::PgPool;

/// Ready when the pool's database answers `SELECT 1`.
#[derive(Debug, Clone)]
pub struct PostgresReadiness {
    pool: PgPool,
}

impl PostgresReadiness {
    /// A check through `pool` (the service's own, so a full pool shows too).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

impl ReadinessCheck for PostgresReadiness {
    fn name(&self) -> &str {
        "postgres"
    }

    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map(drop)
                .map_err(|err| err.to_string())
        })
    }
}
