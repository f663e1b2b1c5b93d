//! Sagas in Postgres. Every change of a saga — its row, its step log
//! entries and the messages it sends (into the orchestrator's outbox) — is
//! in one transaction, taken under the saga row's lock: two replicas
//! handling the same saga take turns, and the second sees the first's
//! change. A batch of messages is one transaction, its changes written
//! together ([`crate::changes`]). A start also holds an advisory lock on
//! its saga until it is visible ([`START_LOCK`]), for the replies that
//! outrun it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use sluice_avro::{AvroCodec, CodecError};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Executor, Row};
use uuid::Uuid;

use crate::changes::Changes;
use crate::definition::{Failure, Saga};
use crate::engine::{Engine, Instance, Phase, Reply};
use crate::metrics;

/// The orchestrator's own schema (and its connections' search path).
const CREATE_SCHEMA: &str = "CREATE SCHEMA IF NOT EXISTS saga";
/// The advisory lock replicas prepare the database under (any fixed key;
/// advisory locks are per database).
const PREPARE_LOCK: i64 = 0x5a6a_0001;
const SET_SEARCH_PATH: &str = "SET search_path TO saga";
/// How long a publication without its slot may be a relay making both.
const SLOT_GRACE: Duration = Duration::from_secs(5);

/// A slot as `pg_replication_slots` lists it: type, plugin, database,
/// whether that is this one, whether it has a confirmed position.
type SlotRow = (String, Option<String>, Option<String>, Option<bool>, bool);

/// Where the outbox's replication slot is.
enum SlotState {
    Missing,
    /// Listed, its creation not returned: no position yet.
    Making,
    Made,
}

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
    /// The outbox's slot name is another kind of slot's: it could never
    /// stream this database's outbox.
    #[error(
        "replication slot {slot} is {found}, not a pgoutput logical slot of this database: give \
         the saga outbox a slot name of its own (--outbox-slot)"
    )]
    SlotNotOutbox {
        /// The slot.
        slot: String,
        /// What it is.
        found: String,
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

    /// Whether Postgres refused a value (SQLSTATE 22, data exception) or a
    /// constraint broke (23): it fails again however often it is tried.
    pub fn is_refused(&self) -> bool {
        match self {
            Self::Database {
                source: sqlx::Error::Database(refused),
                ..
            } => refused
                .code()
                .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
            _ => false,
        }
    }
}

pub(crate) fn failed(doing: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
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
        let prepared = async {
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
        .await;
        // Ending the session releases the lock, whatever the close says.
        let _ = lock.close().await;
        prepared
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
        // The saga outbox's relay, started beside, makes a missing
        // publication and then its slot (250 ms apart seen): lost is a
        // publication still without its slot after that.
        let deadline = tokio::time::Instant::now() + SLOT_GRACE;
        let mut told = false;
        loop {
            match self.slot_state(slot).await? {
                SlotState::Made => return Ok(()),
                // Listed before it can stream: a row committed now would
                // never be streamed from it. Its creation waits for the
                // transactions open when it began, however long they stay.
                SlotState::Making if !told => {
                    tracing::info!(
                        slot,
                        "waiting for the outbox slot another session is making"
                    );
                    told = true;
                }
                SlotState::Making => {}
                SlotState::Missing if published && !recreate_lost_slot => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(StoreError::SlotLost {
                            slot: slot.to_owned(),
                            publication: publication.to_owned(),
                        });
                    }
                }
                SlotState::Missing => {
                    let created =
                        sqlx::query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')")
                            .bind(slot)
                            .execute(&self.pool)
                            .await;
                    // Made by another session meanwhile: waited for above.
                    ignore_duplicate(created).map_err(failed("creating the outbox slot"))?;
                    tracing::info!(slot, publication, "outbox slot created");
                    continue;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether `slot` is there, and made: a slot whose creation has not
    /// returned has no confirmed position yet (nor ever has a physical
    /// slot: one of that name is refused, not waited for).
    async fn slot_state(&self, slot: &str) -> Result<SlotState, StoreError> {
        let found: Option<SlotRow> = sqlx::query_as(
            "SELECT slot_type, plugin, database::text, database = current_database(), \
                    confirmed_flush_lsn IS NOT NULL \
             FROM pg_replication_slots WHERE slot_name = $1",
        )
        .bind(slot)
        .fetch_optional(&self.pool)
        .await
        .map_err(failed("looking up the outbox slot"))?;
        let Some((kind, plugin, database, here, made)) = found else {
            return Ok(SlotState::Missing);
        };
        let found = match (kind.as_str(), plugin.as_deref(), here) {
            ("logical", Some("pgoutput"), Some(true)) if made => return Ok(SlotState::Made),
            ("logical", Some("pgoutput"), Some(true)) => return Ok(SlotState::Making),
            ("logical", Some("pgoutput"), _) => {
                format!("a slot of database {}", database.unwrap_or_default())
            }
            ("logical", plugin, _) => format!("a slot of plugin {}", plugin.unwrap_or_default()),
            (kind, _, _) => format!("a {kind} slot"),
        };
        Err(StoreError::SlotNotOutbox {
            slot: slot.to_owned(),
            found,
        })
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

/// A saga to start, unless one exists for its key.
pub struct Start<D> {
    /// Its id.
    pub saga_id: Uuid,
    /// What it is about.
    pub key: String,
    /// Its data.
    pub data: D,
    /// The trace context of what started it, for its messages.
    pub trace: Vec<(String, String)>,
}

/// A reply, and the trace context its saga's next messages carry.
pub struct Traced {
    /// The reply.
    pub reply: Reply,
    /// Its message's trace headers.
    pub trace: Vec<(String, String)>,
}

impl Store {
    /// Starts a saga for each of `starts` whose key has none, in one
    /// transaction; for each, whether it started (false: one existed, or an
    /// earlier one of `starts` had its key).
    pub async fn start<D: Serialize>(
        &self,
        saga: &Saga<D>,
        starts: &[Start<D>],
    ) -> Result<Vec<bool>, StoreError> {
        let mut data = Vec::with_capacity(starts.len());
        for start in starts {
            data.push(
                serde_json::to_value(&start.data).map_err(|err| StoreError::Corrupt {
                    saga_id: start.saga_id,
                    reason: format!("data: {err}"),
                })?,
            );
        }
        let ids: Vec<Uuid> = starts.iter().map(|start| start.saga_id).collect();
        let keys: Vec<&str> = starts.iter().map(|start| start.key.as_str()).collect();
        let mut tx = self.pool.begin().await.map_err(failed("beginning"))?;
        start_locks(&mut tx, &ids, LOCK_STARTS)
            .await
            .map_err(failed("locking the sagas started"))?;
        let mut inserted: HashSet<Uuid> = sqlx::query_scalar(
            "INSERT INTO sagas (saga_id, saga_type, business_key, state, step, attempt, data, version)
             SELECT s.saga_id, $1, s.key, 'RUNNING', '', 1, s.data, 0
             FROM unnest($2::uuid[], $3::text[], $4::jsonb[]) WITH ORDINALITY AS s(saga_id, key, data, n)
             ORDER BY s.n
             ON CONFLICT DO NOTHING
             RETURNING saga_id",
        )
        .bind(&saga.name)
        .bind(&ids)
        .bind(&keys)
        .bind(&data)
        .fetch_all(&mut *tx)
        .await
        .map_err(failed("starting sagas"))?
        .into_iter()
        .collect();
        let engine = Engine::new(saga);
        let mut changes = Changes::new(saga, &self.codec);
        let mut started = Vec::with_capacity(starts.len());
        let mut transitions = Vec::new();
        for start in starts {
            // The first of a key's starts took it.
            let new = inserted.remove(&start.saga_id);
            started.push(new);
            if new {
                let transition = engine.start(start.saga_id, &start.data);
                let trace = correlated(&start.trace, saga.correlation_of(&start.data));
                changes.add(start.saga_id, 1, &transition, &trace).await?;
                transitions.push(transition);
            }
        }
        changes.write(&mut tx).await?;
        tx.commit().await.map_err(failed("committing starts"))?;
        for transition in &transitions {
            metrics::started(&saga.name);
            metrics::changed(&saga.name, transition, 0.0, 0.0);
        }
        Ok(started)
    }

    /// Applies `replies` to their sagas, in order, in one transaction; what
    /// each did.
    ///
    /// A reply can come before its saga is visible here: outbox-relay
    /// streams a transaction once its commit is in the WAL, and the backend
    /// that committed it makes it visible a moment after; on busy cores a
    /// sink answered within that moment (one saga of 7 405 in the saga
    /// benchmark, its reply passed over, waited out its 180 s step
    /// timeout). A reply that can answer this saga type's command but finds
    /// no saga waits for the saga's start lock ([`START_LOCK`]), which its
    /// start holds until it is visible, and looks again.
    pub async fn reply<D: Serialize + DeserializeOwned>(
        &self,
        saga: &Saga<D>,
        replies: &[Traced],
    ) -> Result<Vec<ReplyEffect>, StoreError> {
        let mut ids: Vec<Uuid> = replies.iter().map(|traced| traced.reply.saga_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut tx = self.pool.begin().await.map_err(failed("beginning"))?;
        let mut sagas = lock_sagas(saga, &mut tx, &ids).await?;
        let unseen: Vec<Uuid> = replies
            .iter()
            .map(|traced| &traced.reply)
            .filter(|reply| !sagas.contains_key(&reply.saga_id) && saga.sent(reply))
            .map(|reply| reply.saga_id)
            .collect();
        if !unseen.is_empty() {
            // The rows locked so far are let go before the wait: held, they
            // could close a cycle with a batch that locked the unseen saga
            // first. Start locks, then rows, as a start takes them.
            tx.rollback().await.map_err(failed("rolling back"))?;
            tx = self.pool.begin().await.map_err(failed("beginning"))?;
            start_locks(&mut tx, &unseen, AWAIT_STARTS)
                .await
                .map_err(failed("waiting for sagas being started"))?;
            // A statement after the wait sees what the starts committed
            // (read committed: each statement takes a snapshot of its own).
            sagas = lock_sagas(saga, &mut tx, &ids).await?;
        }
        let engine = Engine::new(saga);
        let mut changes = Changes::new(saga, &self.codec);
        let mut effects = Vec::with_capacity(replies.len());
        let mut moved = Vec::new();
        for Traced { reply, trace } in replies {
            let Some(locked) = sagas.get_mut(&reply.saga_id) else {
                effects.push(ReplyEffect::NotOurs);
                continue;
            };
            let Some(transition) = engine.on_reply(&locked.instance, reply) else {
                effects.push(ReplyEffect::Ignored);
                continue;
            };
            let trace = correlated(trace, saga.correlation_of(&locked.instance.data));
            locked.version += 1;
            changes
                .add(reply.saga_id, locked.version, &transition, &trace)
                .await?;
            locked.instance.moved(&transition);
            let began = transition.step_began;
            moved.push((transition, locked.step_seconds, locked.saga_seconds));
            if began {
                // A later reply of the batch times the step begun here.
                locked.step_seconds = 0.0;
            }
            effects.push(ReplyEffect::Applied);
        }
        changes.write(&mut tx).await?;
        tx.commit().await.map_err(failed("committing replies"))?;
        // Counted once committed: a batch handled again counts nothing twice.
        for (transition, step_seconds, saga_seconds) in &moved {
            metrics::changed(&saga.name, transition, *step_seconds, *saga_seconds);
        }
        for _ in effects
            .iter()
            .filter(|effect| **effect != ReplyEffect::Applied)
        {
            metrics::ignored(&saga.name);
        }
        Ok(effects)
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
        let mut changes = Changes::new(saga, &self.codec);
        let mut moved = Vec::with_capacity(rows.len());
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
                let saga_id = locked.instance.saga_id;
                changes
                    .add(saga_id, locked.version + 1, &transition, &trace)
                    .await?;
                moved.push((transition, locked.step_seconds, locked.saga_seconds));
            }
        }
        changes.write(&mut tx).await?;
        tx.commit().await.map_err(failed("committing timeouts"))?;
        for (transition, step_seconds, saga_seconds) in &moved {
            metrics::changed(&saga.name, transition, *step_seconds, *saga_seconds);
        }
        Ok(fired)
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

/// Takes the start locks of the sagas `ids` with `statement`
/// ([`LOCK_STARTS`] or [`AWAIT_STARTS`]), in key order.
async fn start_locks(
    tx: &mut PgConnection,
    ids: &[Uuid],
    statement: &'static str,
) -> Result<(), sqlx::Error> {
    sqlx::query(statement)
        .bind(ids)
        .bind(START_LOCK)
        .execute(tx)
        .await
        .map(drop)
}

/// The sagas `ids` (sorted) that exist, locked in that order: batches
/// that share sagas take turns instead of deadlocking.
async fn lock_sagas<D: DeserializeOwned>(
    saga: &Saga<D>,
    tx: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Locked<D>>, StoreError> {
    let rows = sqlx::query(SELECT_FOR_UPDATE)
        .bind(ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(failed("locking sagas"))?;
    let mut sagas = HashMap::with_capacity(rows.len());
    for row in &rows {
        let locked = locked(saga, row)?;
        sagas.insert(locked.instance.saga_id, locked);
    }
    Ok(sagas)
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

/// The class of the advisory lock each start takes on its saga (the
/// two-key form: its own key space, apart from [`PREPARE_LOCK`]'s), held
/// until the start is visible: Postgres releases a transaction's locks
/// after its commit is visible to others, and a reply that finds no saga
/// waits for it in shared mode. A collision of two sagas' hashes only makes
/// one wait for the other's start.
const START_LOCK: i32 = 0x5a6a;
/// Each start's lock, in one order: start batches sharing a saga take turns.
const LOCK_STARTS: &str = "SELECT pg_advisory_xact_lock($2, k)
        FROM (SELECT DISTINCT hashtext(id::text) AS k FROM unnest($1::uuid[]) AS id ORDER BY 1) AS s";
/// Waits for the starts of the sagas $1 that are in flight.
const AWAIT_STARTS: &str = "SELECT pg_advisory_xact_lock_shared($2, k)
        FROM (SELECT DISTINCT hashtext(id::text) AS k FROM unnest($1::uuid[]) AS id ORDER BY 1) AS s";

const SELECT_FOR_UPDATE: &str = "SELECT saga_id, state, step, attempt, data, failure, version,
        extract(epoch FROM now() - step_started_at)::float8 AS step_seconds,
        extract(epoch FROM now() - started_at)::float8 AS saga_seconds
     FROM sagas WHERE saga_id = ANY($1) ORDER BY saga_id FOR UPDATE";

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
