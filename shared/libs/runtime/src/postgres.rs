//! `/readyz` check: Postgres answers a query; and which Postgres failures
//! pass by themselves.

use std::future::Future;
use std::pin::Pin;

use sluice_telemetry::ReadinessCheck;
use sqlx::PgPool;
use sqlx::migrate::MigrateError;
use sqlx::postgres::PgPoolOptions;

/// Whether a Postgres failure may pass by itself: the server unreachable,
/// restarting or out of connections — not a refusal (a wrong password, a
/// missing database, a failed statement), which waits for a person.
pub fn transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE classes 08 (connection exception), 53 (insufficient
        // resources: too many connections) and 57P (shutting down, starting
        // up: "the database system is starting up" is 57P03).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| ["08", "53", "57P"].iter().any(|c| code.starts_with(c))),
        sqlx::Error::Migrate(err) => transient_migration(err),
        _ => false,
    }
}

/// [`transient`] for migrations: only their statements' failures can pass;
/// a migration changed or missing since it was applied is for a person.
pub fn transient_migration(err: &MigrateError) -> bool {
    match err {
        MigrateError::Execute(err) | MigrateError::ExecuteMigration(err, _) => transient(err),
        _ => false,
    }
}

/// A pool of at most `max_connections` that connects when first used: the
/// service starts, and reports on /readyz, before Postgres answers.
pub fn lazy_pool(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_lazy(url)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_is_transient_and_refusals_are_not() {
        let refused = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(transient(&sqlx::Error::Io(refused())));
        assert!(transient(&sqlx::Error::PoolTimedOut));
        assert!(!transient(&sqlx::Error::RowNotFound));
        assert!(!transient(&sqlx::Error::Configuration("bad url".into())));
        assert!(transient_migration(&MigrateError::Execute(
            sqlx::Error::Io(refused())
        )));
        assert!(!transient_migration(&MigrateError::VersionMismatch(3)));
    }
}
