//! What the relay benchmarks share: their sizes, the relay's release binary
//! as a process, rows to relay; outbox tables and slots as the tests make
//! and drop them.
// A benchmark program: any failure ends it with the panic's message.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

#[path = "../../tests/common/mod.rs"]
mod tests_common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sluice_testkit::{Stack, eventually, scaled, scaled_duration};
use sqlx::{AssertSqlSafe, PgPool};

pub use self::tests_common::{drop_slot, outbox_table};

/// How long a benchmark waits for any one thing.
pub const WAIT: Duration = Duration::from_secs(300);
/// Rows per transaction of the throughput backlog.
pub const ROWS_PER_TRANSACTION: usize = 100;
/// Fixed rate of the latency runs, rows per second.
pub const RATE: usize = 1_000;

/// Rows in the throughput backlog (200 000 at full scale).
pub fn backlog() -> usize {
    scaled(200_000, 2_000)
}

/// Length of the latency runs (20 s at full scale).
pub fn latency_run() -> Duration {
    scaled_duration(Duration::from_secs(20), Duration::from_secs(2))
}

/// The release binary, as a user runs it.
pub struct RelayProcess {
    child: Child,
    metrics_url: String,
}

impl RelayProcess {
    /// Starts the relay on `table`, routing orders to `topic`.
    pub fn start(table: &str, topic: &str, dlq: &str) -> Self {
        let stack = Stack::get();
        let port = sluice_testkit::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_outbox-relay"))
            .env("SLUICE_DATABASE_URL", &stack.database_url)
            .env("SLUICE_KAFKA_BOOTSTRAP", &stack.kafka_bootstrap)
            .env("SLUICE_SCHEMA_REGISTRY_URL", &stack.schema_registry_url)
            .env("SLUICE_HTTP_LISTEN", format!("127.0.0.1:{port}"))
            .env("SLUICE_LOG", "warn")
            .args(["--outbox-table", table])
            .args(["--outbox-slot", &format!("{table}_slot")])
            .args(["--outbox-publication", &format!("{table}_pub")])
            .args(["--route", &format!("orders={topic}")])
            .args(["--dlq-topic", dlq])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Self {
            child,
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
        }
    }

    /// A sample of the relay's /metrics: `name` and labels as printed.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = reqwest::get(&self.metrics_url)
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find(|line| line.starts_with(series))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    }

    pub async fn wait_streaming(&self) {
        eventually("the relay to stream", WAIT, || async {
            (self.metric("sluice_outbox_streaming{").await == Some(1.0)).then_some(())
        })
        .await;
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Inserts `rows` order events in one transaction.
pub async fn insert(pool: &PgPool, table: &str, rows: usize) {
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload) \
         SELECT gen_random_uuid(), 'orders', 'order-' || (s % 500), 'OrderCancelled', \
                '{{\"reason\":\"customer asked\",\"cancelled_by\":\"support\"}}' \
         FROM generate_series(1, $1) AS s"
    )))
    .bind(i32::try_from(rows).unwrap())
    .execute(pool)
    .await
    .unwrap();
}

/// The slot and publication of `table`, made before any row so the rows
/// are kept for whichever reader comes.
pub async fn slot_and_publication(pool: &PgPool, table: &str) {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE PUBLICATION {table}_pub FOR TABLE {table}"
    )))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')")
        .bind(format!("{table}_slot"))
        .execute(pool)
        .await
        .unwrap();
}
