//! `Idempotency-Key`: the first answer to a key is kept in Postgres and
//! returned to every retry, which produces nothing new. A key belongs to the
//! token that sent it and lives for the configured lifetime.

use std::time::Duration;

use serde_json::Value;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::error::ApiError;

/// Longest key accepted; Stripe's limit, which clients are built for.
const MAX_KEY_LEN: usize = 255;

/// A checked key, scoped to the token that sent it.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    token_sha256: [u8; 32],
    key: String,
}

impl IdempotencyKey {
    /// The header's value, or a 400 saying what is wrong with it: a key
    /// that is silently ignored would make a retry produce twice.
    pub fn parse(token_sha256: [u8; 32], header: &[u8]) -> Result<Self, ApiError> {
        let refuse = |reason: String| ApiError::bad_request("header Idempotency-Key", reason);
        if header.is_empty() || header.len() > MAX_KEY_LEN {
            return Err(refuse(format!(
                "must be 1 to {MAX_KEY_LEN} characters, is {}",
                header.len()
            )));
        }
        if let Some(at) = header.iter().position(|b| !b.is_ascii_graphic()) {
            return Err(refuse(format!(
                "character {at} is not printable ASCII (use a UUID or another printable token)"
            )));
        }
        Ok(Self {
            token_sha256,
            key: String::from_utf8_lossy(header).into_owned(),
        })
    }

    /// The key of a webhook delivery: scoped to its source, the sender's
    /// delivery id (or signature) hashed to a key of fixed length.
    pub fn delivery(source: &str, delivery: &str) -> Self {
        use sha2::{Digest, Sha256};
        Self {
            token_sha256: Sha256::digest(format!("webhook/{source}")).into(),
            key: hex::encode(Sha256::digest(delivery)),
        }
    }

    /// The key as sent.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// The token it belongs to.
    pub fn token_sha256(&self) -> &[u8; 32] {
        &self.token_sha256
    }
}

/// What a request with an `Idempotency-Key` may do.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// The key is new (or abandoned, or expired): handle the request, then
    /// complete or release this claim.
    New(Uuid),
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
    /// How long an answer is kept for retries.
    lifetime: Duration,
}

impl IdempotencyStore {
    /// A store in `pool`'s database.
    pub fn new(pool: PgPool, abandoned_after: Duration, lifetime: Duration) -> Self {
        Self {
            pool,
            abandoned_after,
            lifetime,
        }
    }

    /// Creates or updates the table.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        sqlx::migrate!("./migrations").run(&self.pool).await
    }

    /// Claims `key` for a request whose body hashes to `request_sha256`.
    pub async fn claim(
        &self,
        key: &IdempotencyKey,
        request_sha256: &[u8],
    ) -> Result<Claim, sqlx::Error> {
        let claim_id = Uuid::new_v4();
        let claimed = sqlx::query(
            "INSERT INTO ingest_idempotency (token_sha256, key, request_sha256, state, claim_id)
               VALUES ($1, $2, $3, 'pending', $4)
             ON CONFLICT (token_sha256, key) DO UPDATE
               SET request_sha256 = EXCLUDED.request_sha256, state = 'pending', status = NULL,
                   response = NULL, claim_id = EXCLUDED.claim_id, claimed_at = now()
               WHERE (ingest_idempotency.state = 'pending'
                      AND ingest_idempotency.claimed_at < now() - make_interval(secs => $5))
                  OR ingest_idempotency.claimed_at < now() - make_interval(secs => $6)
             RETURNING key",
        )
        .bind(key.token_sha256.as_slice())
        .bind(&key.key)
        .bind(request_sha256)
        .bind(claim_id)
        .bind(self.abandoned_after.as_secs_f64())
        .bind(self.lifetime.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        if claimed.is_some() {
            return Ok(Claim::New(claim_id));
        }
        let row = sqlx::query(
            "SELECT request_sha256, state, status, response FROM ingest_idempotency
             WHERE token_sha256 = $1 AND key = $2",
        )
        .bind(key.token_sha256.as_slice())
        .bind(&key.key)
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

    /// Keeps the answer to a key this request claimed; `false` when the
    /// claim was taken over meanwhile (it was held past the abandon time).
    pub async fn complete(
        &self,
        key: &IdempotencyKey,
        claim_id: Uuid,
        status: u16,
        body: &Value,
    ) -> Result<bool, sqlx::Error> {
        sqlx::query(
            "UPDATE ingest_idempotency SET state = 'done', status = $4, response = $5
             WHERE token_sha256 = $1 AND key = $2 AND claim_id = $3 AND state = 'pending'",
        )
        .bind(key.token_sha256.as_slice())
        .bind(&key.key)
        .bind(claim_id)
        .bind(i16::try_from(status).unwrap_or(500))
        .bind(body)
        .execute(&self.pool)
        .await
        .map(|done| done.rows_affected() == 1)
    }

    /// Marks a claim this request holds as still held, so that a request
    /// outliving the abandon time (a commit Kafka takes long to decide) is
    /// not taken for abandoned and its key handled a second time.
    /// `false` when the claim is no longer this request's.
    pub async fn renew(&self, key: &IdempotencyKey, claim_id: Uuid) -> Result<bool, sqlx::Error> {
        self.on_own_claim(
            "UPDATE ingest_idempotency SET claimed_at = now()",
            key,
            claim_id,
        )
        .await
        .map(|renewed| renewed == 1)
    }

    /// How often a held claim is renewed: well within the abandon time.
    pub fn renew_every(&self) -> Duration {
        self.abandoned_after / 3
    }

    /// Gives a key this request claimed back after a failure, so a retry is
    /// handled anew.
    pub async fn release(&self, key: &IdempotencyKey, claim_id: Uuid) -> Result<(), sqlx::Error> {
        self.on_own_claim("DELETE FROM ingest_idempotency", key, claim_id)
            .await
            .map(drop)
    }

    /// Runs `statement` on `key`'s row while `claim_id` holds it (pending);
    /// returns how many rows it touched.
    async fn on_own_claim(
        &self,
        statement: &'static str,
        key: &IdempotencyKey,
        claim_id: Uuid,
    ) -> Result<u64, sqlx::Error> {
        // `statement` is one of this module's constants.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{statement} WHERE token_sha256 = $1 AND key = $2 AND claim_id = $3 AND state = 'pending'"
        )))
        .bind(key.token_sha256.as_slice())
        .bind(&key.key)
        .bind(claim_id)
        .execute(&self.pool)
        .await
        .map(|done| done.rows_affected())
    }

    /// Deletes the answers older than the key lifetime; returns how many.
    pub async fn prune(&self) -> Result<u64, sqlx::Error> {
        sqlx::query(
            "DELETE FROM ingest_idempotency WHERE claimed_at < now() - make_interval(secs => $1)",
        )
        .bind(self.lifetime.as_secs_f64())
        .execute(&self.pool)
        .await
        .map(|deleted| deleted.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_ascii_of_bounded_length() {
        assert!(IdempotencyKey::parse([0; 32], b"order-77:attempt/1").is_ok());
        for bad in [
            &b""[..],
            &[b'k'; 256],
            b"with space",
            b"tab\there",
            "caf\u{e9}".as_bytes(),
        ] {
            let err = IdempotencyKey::parse([0; 32], bad).unwrap_err();
            assert!(
                err.to_string().starts_with("header Idempotency-Key: "),
                "{err}"
            );
        }
    }
}
