//! `Idempotency-Key`: the first answer to a key is kept in Postgres and
//! returned to every retry, which produces nothing new.

use std::time::Duration;

use serde_json::Value;
use sqlx::{PgPool, Row};

/// What a request with an `Idempotency-Key` may do.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// The key is new (or abandoned): handle the request, then complete it.
    New,
    /// The key was answered before: return this answer.
    Replay {
        /// Its HTTP status.
        status: u16,
        /// Its JSON body.
        body: Value,
    },
    /// A request with this key is being handled right now.
    InProgress,
    /// The key was used for a different request body.
    Mismatch,
}

/// Keys and their answers, shared by every ingest replica.
#[derive(Debug, Clone)]
pub struct IdempotencyStore {
    pool: PgPool,
    /// A pending claim older than this was abandoned by a crashed instance.
    abandoned_after: Duration,
}

impl IdempotencyStore {
    /// A store in `pool`'s database.
    pub fn new(pool: PgPool, abandoned_after: Duration) -> Self {
        Self {
            pool,
            abandoned_after,
        }
    }

    /// Creates or updates the table.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        sqlx::migrate!("./migrations").run(&self.pool).await
    }

    /// Claims `key` for a request whose body hashes to `request_sha256`.
    pub async fn claim(&self, key: &str, request_sha256: &[u8]) -> Result<Claim, sqlx::Error> {
        let claimed = sqlx::query(
            "INSERT INTO ingest_idempotency (key, request_sha256, state) VALUES ($1, $2, 'pending')
             ON CONFLICT (key) DO UPDATE SET request_sha256 = EXCLUDED.request_sha256, claimed_at = now()
               WHERE ingest_idempotency.state = 'pending'
                 AND ingest_idempotency.claimed_at < now() - make_interval(secs => $3)
             RETURNING key",
        )
        .bind(key)
        .bind(request_sha256)
        .bind(self.abandoned_after.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        if claimed.is_some() {
            return Ok(Claim::New);
        }
        let row = sqlx::query(
            "SELECT request_sha256, state, status, response FROM ingest_idempotency WHERE key = $1",
        )
        .bind(key)
        .fetch_one(&self.pool)
        .await?;
        if row.get::<Vec<u8>, _>("request_sha256") != request_sha256 {
            return Ok(Claim::Mismatch);
        }
        match (
            row.get::<String, _>("state").as_str(),
            row.get::<Option<i16>, _>("status"),
        ) {
            ("done", Some(status)) => Ok(Claim::Replay {
                status: u16::try_from(status).unwrap_or(500),
                body: row
                    .get::<Option<Value>, _>("response")
                    .unwrap_or(Value::Null),
            }),
            _ => Ok(Claim::InProgress),
        }
    }

    /// Keeps the answer to a claimed key.
    pub async fn complete(&self, key: &str, status: u16, body: &Value) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE ingest_idempotency SET state = 'done', status = $2, response = $3 WHERE key = $1")
            .bind(key)
            .bind(i16::try_from(status).unwrap_or(500))
            .bind(body)
            .execute(&self.pool)
            .await
            .map(drop)
    }

    /// Gives a claimed key back after a failure, so a retry is handled anew.
    pub async fn release(&self, key: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM ingest_idempotency WHERE key = $1 AND state = 'pending'")
            .bind(key)
            .execute(&self.pool)
            .await
            .map(drop)
    }
}
