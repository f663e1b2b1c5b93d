//! Sagas in Postgres. Every change of a saga — its row, its step log
//! entries and the messages it sends (into the orchestrator's outbox) — is
//! one transaction, taken under the saga row's lock: two replicas handling
//! the same saga take turns, and the second sees the first's change.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use sluice_avro::{AvroCodec, CodecError};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Executor, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::definition::{Failure, Payload, Saga};
use crate::engine::{Engine, Instance, Phase, Reply, Transition};
use crate::metrics;

/// The orchestrator's own schema (and its connections' search path).
const CREATE_SCHEMA: &str = "CREATE SCHEMA IF NOT EXISTS saga";
/// The advisory lock replicas prepare the database under (any fixed key;
/// advisory locks are per database).
const PREPARE_LOCK: i64 = 0x5a6a_0001;
const SET_SEARCH_PATH: &str = "SET search_path TO saga";

/// What one round of [`Store::fire_due`] took.
#[derive(Debug, Default)]
pub struct Fired {
    /// Rows taken, fired or not.
    pub rows: usize,
    /// The rows this definition could not read, and why.
    pub unreadable: Vec<(Uuid, String)>,
}

/// Why a saga could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Postgres failed or was unreachable.
    #[error("sagas (Postgres) {doing}: {source}")]
    Database {
        /// What was being done.
        doing: &'static str,
        /// sqlx's error.
        source: sqlx::Error,
    },
    /// The migrations failed.
    #[error("sagas (Postgres) migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A message could not be encoded (the registry is away, say).
    #[error("encoding a message for {topic}: {source}")]
    Encode {
        /// Its topic.
        topic: String,
        /// The codec's error.
        source: CodecError,
    },
    /// The outbox's publication is there but its slot is gone (a failover,
    /// a manual drop): a new slot would start after the rows written since
    /// the lost one's position, and outbox-relay would never send them.
    #[error(
        "the outbox's replication slot {slot} is gone while publication {publication} exists: a new \
         slot would skip the saga.outbox rows written since (a failover, a manual drop). Send those \
         rows again (they are in saga.outbox), then start with --recreate-lost-slot"
    )]
    SlotLost {
        /// The slot.
        slot: String,
        /// Its publication.
        publication: String,
    },
    /// The database holds sagas of another type: each saga runs in a
    /// database of its own (their outboxes and replies would mix).
    #[error(
        "the database holds {count} saga(s) of type {other:?}, and this orchestrator runs {ours:?}: \
         run each saga in a database of its own (a renamed saga too: its sagas in flight would \
         never move again)"
    )]
    OtherSagas {
        /// The saga this orchestrator runs.
        ours: String,
        /// One it found.
        other: String,
        /// How many of those.
        count: i64,
    },
    /// A stored saga does not fit its definition (changed since?).
    #[error("saga {saga_id}: {reason}")]
    Corrupt {
        /// The saga.
        saga_id: Uuid,
        /// What does not fit.
        reason: String,
    },
}

impl StoreError {
    /// Whether it may pass by itself (Postgres unreachable or restarting).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database { source, .. } => sluice_runtime::transient(source),
            Self::Migrate(err) => sluice_runtime::transient_migration(err),
            _ => false,
        }
    }
}

fn failed(doing: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Database { doing, source }
}

/// What a reply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyEffect {
    /// The saga moved on.
    Applied,
    /// Nothing: a duplicate or late reply.
    Ignored,
    /// Nothing: a reply to another saga's step (the sinks' results topics
    /// carry every saga's replies; each saga has a database of its own).
    NotOurs,
}

/// One saga, for operators.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Its id.
    pub saga_id: Uuid,
    /// Its type.
    pub saga_type: String,
    /// What it is about.
    pub business_key: String,
    /// Its state.
    pub state: String,
    /// Step being run, compensated, or the last.
    pub step: String,
    /// Attempt of that step.
    pub attempt: i32,
    /// Why it compensated.
    pub failure: Option<Json>,
    /// Changes so far.
    pub version: i32,
    /// When the step times out.
    pub deadline: Option<chrono::DateTime<chrono::Utc>>,
    /// When it started.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// When it ended.
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One line of a saga's step log.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// The change it belongs to.
    pub version: i32,
    /// The step.
    pub step: String,
    /// Its attempt.
    pub attempt: i32,
    /// What happened.
    pub event: String,
    /// More.
    pub detail: Option<String>,
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
}

/// The sagas' tables, for reading (operators, the census).
#[derive(Debug, Clone)]
pub struct Sagas {
    pool: PgPool,
}

/// Drives sagas: starts them, applies replies, fires timeouts.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    codec: Arc<AvroCodec>,
}

/// A saga row locked for a change, with how long its step and itself ran.
struct Locked<D> {
    instance: Instance<D>,
    version: i32,
    step_seconds: f64,
    saga_seconds: f64,
}

impl Sagas {
    /// Connects, creates the schema if needed and runs the migrations.
    pub async fn connect(url: &SecretString, max_connections: u32) -> Result<Self, StoreError> {
        let sagas = Self::lazy(url, max_connections)?;
        sagas.migrate().await?;
        Ok(sagas)
    }

    /// A pool that connects when first used: the service can start and
    /// report on /readyz before Postgres answers.
    pub fn lazy(url: &SecretString, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|connection, _| {
                Box::pin(async move { connection.execute(SET_SEARCH_PATH).await.map(drop) })
            })
            .connect_lazy(url.expose_secret())
            .map_err(failed("reading the database URL"))?;
        Ok(Self { pool })
    }

    /// Creates the schema if needed and runs the migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.pool
            .execute(CREATE_SCHEMA)
            .await
            .map_err(failed("creating its schema"))?;
        sqlx::migrate!("./migrations").run(&self.pool).await?;
        Ok(())
    }

    /// Everything before the first saga: the tables, then the outbox's
    /// publication and slot (a lost slot is made anew only when
    /// `recreate_lost_slot`). One replica at a time: replicas starting
    /// together on a fresh database (a first install) raced — two `CREATE
    /// SCHEMA IF NOT EXISTS` (the second fails with a unique violation),
    /// a publication one made before its slot (the other read the slot as
    /// lost). The lock is a session's: a replica that dies releases it.
    pub async fn prepare(
        &self,
        saga_type: &str,
        publication: &str,
        slot: &str,
        recreate_lost_slot: bool,
    ) -> Result<(), StoreError> {
        // A connection of its own, not the pool's: a pool of one would
        // wait on itself.
        let options = self.pool.connect_options();
        let mut lock = PgConnection::connect_with(&options)
            .await
            .map_err(failed("connecting to prepare"))?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(PREPARE_LOCK)
            .execute(&mut lock)
            .await
            .map_err(failed("waiting for another replica's preparation"))?;
        let prepared = self
            .prepare_alone(saga_type, publication, slot, recreate_lost_slot)
            .await;
        // Ending the session releases the lock, whatever the close says.
        let _ = lock.close().await;
        prepared
    }

    async fn prepare_alone(
        &self,
        saga_type: &str,
        publication: &str,
        slot: &str,
        recreate_lost_slot: bool,
    ) -> Result<(), StoreError> {
        self.migrate().await?;
        let other: Option<(String, i64)> = sqlx::query_as(
            "SELECT saga_type, count(*) FROM sagas WHERE saga_type <> $1 GROUP BY 1 LIMIT 1",
        )
        .bind(saga_type)
        .fetch_optional(&self.pool)
        .await
        .map_err(failed("looking for sagas of another type"))?;
        if let Some((other, count)) = other {
            return Err(StoreError::OtherSagas {
                ours: saga_type.to_owned(),
                other,
                count,
            });
        }
        self.ensure_slot(publication, slot, recreate_lost_slot)
            .await
    }

    /// The pool (for readiness).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the publication of the outbox and its logical replication
    /// slot when missing, before anything is written: rows committed before
    /// a slot exists are never streamed from it, so the relay must not be
    /// the first to create it. A publication without its slot means the
    /// slot was lost: refused unless `recreate_lost_slot`.
    pub async fn ensure_slot(
        &self,
        publication: &str,
        slot: &str,
        recreate_lost_slot: bool,
    ) -> Result<(), StoreError> {
        let published = sqlx::query("SELECT 1 FROM pg_publication WHERE pubname = $1")
            .bind(publication)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("looking up the outbox publication"))?
            .is_some();
        if !published {
            // The name is a checked identifier (configuration), not input.
            let ddl = format!("CREATE PUBLICATION {publication} FOR TABLE saga.outbox");
            ignore_duplicate(
                sqlx::query(sqlx::AssertSqlSafe(ddl))
                    .execute(&self.pool)
                    .await,
            )
            .map_err(failed("creating the outbox publication"))?;
        }
        let exists = sqlx::query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1")
            .bind(slot)
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("looking up the outbox slot"))?;
        if exists.is_none() && published && !recreate_lost_slot {
            return Err(StoreError::SlotLost {
                slot: slot.to_owned(),
                publication: publication.to_owned(),
            });
        }
        if exists.is_none() {
            let created = sqlx::query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')")
                .bind(slot)
                .execute(&self.pool)
                .await;
            ignore_duplicate(created).map_err(failed("creating the outbox slot"))?;
            tracing::info!(slot, publication, "outbox slot created");
        }
        Ok(())
    }

    /// A store driving sagas on these tables, encoding through `codec`.
    pub fn driver(&self, codec: Arc<AvroCodec>) -> Store {
        Store {
            pool: self.pool.clone(),
            codec,
        }
    }

    /// Sagas per state, and how many are stuck (failed, or overdue by more
    /// than `overdue`: no replica is firing their timeouts).
    pub async fn census(
        &self,
        saga_type: &str,
        overdue: Duration,
    ) -> Result<(Vec<(String, i64)>, i64), StoreError> {
        let states = sqlx::query(
            "SELECT state, count(*) AS n FROM sagas WHERE saga_type = $1 GROUP BY state",
        )
        .bind(saga_type)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("counting sagas"))?
        .iter()
        .map(|row| (row.get::<String, _>("state"), row.get::<i64, _>("n")))
        .collect();
        let stuck: i64 = sqlx::query(
            "SELECT count(*) AS n FROM sagas WHERE saga_type = $1
             AND (state = 'FAILED' OR deadline < now() - $2 * interval '1 millisecond')",
        )
        .bind(saga_type)
        .bind(i64::try_from(overdue.as_millis()).unwrap_or(i64::MAX))
        .fetch_one(&self.pool)
        .await
        .map_err(failed("counting stuck sagas"))?
        .get("n");
        Ok((states, stuck))
    }

    /// Deletes outbox rows older than `retention`, a batch at a time so no
    /// transaction grows large; returns how many.
    pub async fn prune_outbox(&self, retention: Duration) -> Result<u64, StoreError> {
        let deleted = sqlx::query(
            "DELETE FROM outbox WHERE id IN (
                 SELECT id FROM outbox WHERE created_at < now() - $1 * interval '1 millisecond'
                 LIMIT 5000)",
        )
        .bind(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(failed("pruning the outbox"))?
        .rows_affected();
        Ok(deleted)
    }

    /// The newest sagas, in `state` when given.
    pub async fn list(&self, state: Option<Phase>, limit: i64) -> Result<Vec<Summary>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM sagas WHERE ($1::text IS NULL OR state = $1)
             ORDER BY started_at DESC, saga_id LIMIT $2",
        )
        .bind(state.map(Phase::as_str))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("listing sagas"))?;
        Ok(rows.iter().map(summary).collect())
    }

    /// A saga (by id, or by its business key) and its step log.
    pub async fn history(
        &self,
        id_or_key: &str,
    ) -> Result<Option<(Summary, Vec<LogLine>)>, StoreError> {
        let id = Uuid::parse_str(id_or_key).ok();
        let Some(row) = sqlx::query(
            "SELECT * FROM sagas WHERE saga_id = $1 OR business_key = $2
             ORDER BY started_at DESC LIMIT 1",
        )
        .bind(id)
        .bind(id_or_key)
        .fetch_optional(&self.pool)
        .await
        .map_err(failed("reading a saga"))?
        else {
            return Ok(None);
        };
        let found = summary(&row);
        let log = sqlx::query(
            "SELECT version, step, attempt, event, detail, at FROM saga_steps
             WHERE saga_id = $1 ORDER BY version, entry",
        )
        .bind(found.saga_id)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("reading a saga's log"))?
        .iter()
        .map(|row| LogLine {
            version: row.get("version"),
            step: row.get("step"),
            attempt: row.get("attempt"),
            event: row.get("event"),
            detail: row.get("detail"),
            at: row.get("at"),
        })
        .collect();
        Ok(Some((found, log)))
    }
}

impl Store {
    /// Starts a saga for `key` unless one exists; false when it did. Its
    /// messages carry `trace` (the trace context of what started it).
    pub async fn start<D: Serialize>(
        &self,
        saga: &Saga<D>,
        saga_id: Uuid,
        key: &str,
        data: &D,
        trace: &[(String, String)],
    ) -> Result<bool, StoreError> {
        let transition = Engine::new(saga).start(saga_id, data);
        let json = serde_json::to_value(data).map_err(|err| StoreError::Corrupt {
            saga_id,
            reason: format!("data: {err}"),
        })?;
        let mut tx = self.pool.begin().await.map_err(failed("beginning"))?;
        let inserted = sqlx::query(
            "INSERT INTO sagas (saga_id, saga_type, business_key, state, step, attempt, data, version)
             VALUES ($1, $2, $3, 'RUNNING', '', 1, $4, 0)
             ON CONFLICT DO NOTHING",
        )
        .bind(saga_id)
        .bind(&saga.name)
        .bind(key)
        .bind(&json)
        .execute(&mut *tx)
        .await
        .map_err(failed("starting a saga"))?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        let trace = correlated(trace, saga.correlation_of(data));
        self.write(&mut tx, saga, saga_id, 0, &transition, &trace)
            .await?;
        tx.commit().await.map_err(failed("committing a start"))?;
        metrics::started(&saga.name);
        metrics::changed(&saga.name, &transition, 0.0, 0.0);
        Ok(true)
    }

    /// Applies `reply` to its saga; the messages it sends carry `trace`.
    pub async fn reply<D: Serialize + DeserializeOwned>(
        &self,
        saga: &Saga<D>,
        reply: &Reply,
        trace: &[(String, String)],
    ) -> Result<ReplyEffect, StoreError> {
        let mut tx = self.pool.begin().await.map_err(failed("beginning"))?;
        let row = sqlx::query(SELECT_FOR_UPDATE)
            .bind(reply.saga_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(failed("locking a saga"))?;
        let Some(row) = row else {
            metrics::ignored(&saga.name);
            return Ok(ReplyEffect::NotOurs);
        };
        let locked = locked(saga, &row)?;
        let Some(transition) = Engine::new(saga).on_reply(&locked.instance, reply) else {
            metrics::ignored(&saga.name);
            return Ok(ReplyEffect::Ignored);
        };
        let trace = correlated(trace, saga.correlation_of(&locked.instance.data));
        self.write(
            &mut tx,
            saga,
            reply.saga_id,
            locked.version,
            &transition,
            &trace,
        )
        .await?;
        tx.commit().await.map_err(failed("committing a reply"))?;
        metrics::changed(
            &saga.name,
            &transition,
            locked.step_seconds,
            locked.saga_seconds,
        );
        Ok(ReplyEffect::Applied)
    }

    /// Fires up to `limit` passed deadlines, passing over the sagas in
    /// `unreadable`. Rows another replica holds are skipped, so each timeout
    /// fires once. A row this definition cannot read (a step renamed, data
    /// changed by a deploy) is returned, not fired: it must not hold back
    /// every other saga's timeout.
    pub async fn fire_due<D: Serialize + DeserializeOwned>(
        &self,
        saga: &Saga<D>,
        limit: i64,
        unreadable: &[Uuid],
    ) -> Result<Fired, StoreError> {
        let mut tx = self.pool.begin().await.map_err(failed("beginning"))?;
        let rows = sqlx::query(
            "SELECT saga_id, state, step, attempt, data, failure, version,
                    extract(epoch FROM now() - step_started_at)::float8 AS step_seconds,
                    extract(epoch FROM now() - started_at)::float8 AS saga_seconds
             FROM sagas
             WHERE deadline <= now() AND saga_type = $1 AND saga_id <> ALL($3)
             ORDER BY deadline
             LIMIT $2
             FOR UPDATE SKIP LOCKED",
        )
        .bind(&saga.name)
        .bind(limit)
        .bind(unreadable)
        .fetch_all(&mut *tx)
        .await
        .map_err(failed("finding passed deadlines"))?;
        let mut changes = Vec::with_capacity(rows.len());
        let mut fired = Fired {
            rows: rows.len(),
            unreadable: Vec::new(),
        };
        for row in &rows {
            let locked = match locked(saga, row) {
                Ok(locked) => locked,
                Err(StoreError::Corrupt { saga_id, reason }) => {
                    fired.unreadable.push((saga_id, reason));
                    continue;
                }
                Err(err) => return Err(err),
            };
            if let Some(transition) = Engine::new(saga).on_timeout(&locked.instance) {
                // A timeout has no message to follow: its sends start
                // traces, and carry the saga's correlation id.
                let trace = correlated(&[], saga.correlation_of(&locked.instance.data));
                self.write(
                    &mut tx,
                    saga,
                    locked.instance.saga_id,
                    locked.version,
                    &transition,
                    &trace,
                )
                .await?;
                changes.push((transition, locked.step_seconds, locked.saga_seconds));
            }
        }
        tx.commit().await.map_err(failed("committing timeouts"))?;
        for (transition, step_seconds, saga_seconds) in &changes {
            metrics::changed(&saga.name, transition, *step_seconds, *saga_seconds);
        }
        Ok(fired)
    }

    /// Writes `transition` of the saga at `version`: its row, its log
    /// entries and its messages (with the `trace` headers).
    async fn write<D>(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        saga: &Saga<D>,
        saga_id: Uuid,
        version: i32,
        transition: &Transition,
        trace: &[(String, String)],
    ) -> Result<(), StoreError> {
        let version = version + 1;
        let step = saga
            .steps()
            .get(transition.step)
            .map_or("", |step| step.name.as_str());
        let timeout_ms = transition
            .timeout
            .map(|timeout| i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
        let failure = transition
            .failure
            .as_ref()
            .map(|failure| serde_json::json!({"step": failure.step, "reason": failure.reason}));
        sqlx::query(
            "UPDATE sagas SET state = $2, step = $3, attempt = $4, failure = $5, version = $6,
                 deadline = now() + $7 * interval '1 millisecond',
                 step_started_at = CASE WHEN $8 THEN now() ELSE step_started_at END,
                 updated_at = now(),
                 finished_at = CASE WHEN $9 THEN now() END
             WHERE saga_id = $1",
        )
        .bind(saga_id)
        .bind(transition.phase.as_str())
        .bind(step)
        .bind(i32::try_from(transition.attempt).unwrap_or(i32::MAX))
        .bind(failure)
        .bind(version)
        .bind(timeout_ms)
        .bind(transition.step_began)
        .bind(transition.phase.finished())
        .execute(&mut **tx)
        .await
        .map_err(failed("updating a saga"))?;
        for (entry, line) in transition.log.iter().enumerate() {
            sqlx::query(
                "INSERT INTO saga_steps (saga_id, version, entry, step, attempt, event, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(saga_id)
            .bind(version)
            .bind(i32::try_from(entry).unwrap_or(i32::MAX))
            .bind(&line.step)
            .bind(i32::try_from(line.attempt).unwrap_or(i32::MAX))
            .bind(line.event)
            .bind(&line.detail)
            .execute(&mut **tx)
            .await
            .map_err(failed("writing the step log"))?;
        }
        for outgoing in &transition.send {
            let message = &outgoing.message;
            let value = match &message.value {
                Payload::Erp(command) => self.codec.encode(&message.topic, command).await,
                Payload::Sheet(row) => self.codec.encode(&message.topic, row).await,
                Payload::Event(event) => {
                    let value = event.value.clone();
                    self.codec
                        .encode_value(&message.topic, &event.contract, value)
                        .await
                }
            }
            .map_err(|source| StoreError::Encode {
                topic: message.topic.clone(),
                source,
            })?;
            let mut headers = serde_json::json!({
                "sluice.saga_id": saga_id.to_string(),
                "sluice.saga_step": outgoing.step,
                "sluice.message_id": outgoing.id.to_string(),
            });
            for (key, value) in trace {
                headers[key.as_str()] = Json::from(value.clone());
            }
            if let Payload::Event(event) = &message.value {
                headers["sluice.event_id"] = Json::from(event.event_id.clone());
                headers["sluice.event_type"] = Json::from(event.event_type.clone());
            }
            sqlx::query(
                "INSERT INTO outbox (id, topic, message_key, value, headers, saga_id, step)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(outgoing.id)
            .bind(&message.topic)
            .bind(&message.key)
            .bind(value)
            .bind(headers)
            .bind(saga_id)
            .bind(&outgoing.step)
            .execute(&mut **tx)
            .await
            .map_err(failed("writing the outbox"))?;
        }
        Ok(())
    }
}

/// `trace` with the saga's correlation id, unless it carries one (from
/// the message that moved the saga).
fn correlated(trace: &[(String, String)], correlation: Option<String>) -> Vec<(String, String)> {
    let mut headers = trace.to_vec();
    let header = sluice_telemetry::CORRELATION_ID_HEADER;
    if let Some(id) = correlation
        && !headers.iter().any(|(key, _)| key == header)
    {
        headers.push((header.to_owned(), id));
    }
    headers
}

/// Another replica (or the relay) created it first: fine.
fn ignore_duplicate<T: Default>(result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
    match result {
        Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some("42710") => {
            Ok(T::default())
        }
        other => other,
    }
}

const SELECT_FOR_UPDATE: &str = "SELECT saga_id, state, step, attempt, data, failure, version,
        extract(epoch FROM now() - step_started_at)::float8 AS step_seconds,
        extract(epoch FROM now() - started_at)::float8 AS saga_seconds
     FROM sagas WHERE saga_id = $1 FOR UPDATE";

fn locked<D: DeserializeOwned>(saga: &Saga<D>, row: &PgRow) -> Result<Locked<D>, StoreError> {
    let saga_id: Uuid = row.get("saga_id");
    let corrupt = |reason: String| StoreError::Corrupt { saga_id, reason };
    let state: String = row.get("state");
    let phase = Phase::parse(&state).ok_or_else(|| corrupt(format!("unknown state {state}")))?;
    let step: String = row.get("step");
    let step = saga
        .position(&step)
        .ok_or_else(|| corrupt(format!("unknown step {step:?}")))?;
    let data = serde_json::from_value(row.get::<Json, _>("data"))
        .map_err(|err| corrupt(format!("data: {err}")))?;
    let failure = row
        .get::<Option<Json>, _>("failure")
        .map(serde_json::from_value::<Failure>)
        .transpose()
        .map_err(|err| corrupt(format!("failure: {err}")))?;
    Ok(Locked {
        instance: Instance {
            saga_id,
            phase,
            step,
            attempt: u32::try_from(row.get::<i32, _>("attempt")).unwrap_or(1),
            data,
            failure,
        },
        version: row.get("version"),
        step_seconds: row.get("step_seconds"),
        saga_seconds: row.get("saga_seconds"),
    })
}

fn summary(row: &PgRow) -> Summary {
    Summary {
        saga_id: row.get("saga_id"),
        saga_type: row.get("saga_type"),
        business_key: row.get("business_key"),
        state: row.get("state"),
        step: row.get("step"),
        attempt: row.get("attempt"),
        failure: row.get("failure"),
        version: row.get("version"),
        deadline: row.get("deadline"),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
    }
}
