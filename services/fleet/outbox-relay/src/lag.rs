//! The slot-lag gauge: how much WAL Postgres keeps for the relay.

use std::convert::Infallible;
use std::time::Duration;

use sqlx::PgPool;

use crate::metrics::SLOT_LAG;

/// How often the lag is read.
const EVERY: Duration = Duration::from_secs(5);

/// Sets the slot-lag gauge every few seconds; never returns. A slot not yet
/// created or a database out of reach leaves the last value.
pub(crate) async fn report(pool: PgPool, slot: String) -> Infallible {
    let gauge = metrics::gauge!(SLOT_LAG, "slot" => slot.clone());
    let mut ticker = tokio::time::interval(EVERY);
    loop {
        ticker.tick().await;
        let lag: Result<Option<Option<i64>>, sqlx::Error> = sqlx::query_scalar(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint \
             FROM pg_replication_slots WHERE slot_name = $1",
        )
        .bind(&slot)
        .fetch_optional(&pool)
        .await;
        match lag {
            #[allow(clippy::cast_precision_loss)] // a gauge; exact to 2^53 bytes
            Ok(Some(Some(bytes))) => gauge.set(bytes as f64),
            Ok(_) => {}
            Err(err) => tracing::debug!(error = %err, slot, "slot lag not read"),
        }
    }
}
