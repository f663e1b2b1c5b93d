//! The replay log in Postgres: each replay run, and each dead letter it put
//! back, recorded once Kafka acknowledged it. Kept in its own schema with
//! its own migrations, beside the other services' tables.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Executor, Row};
use uuid::Uuid;

use crate::coordinate::Coordinate;

/// The log's own schema (and the search path its connections use).
const CREATE_SCHEMA: &str = "CREATE SCHEMA IF NOT EXISTS dlq_replayer";
const SET_SEARCH_PATH: &str = "SET search_path TO dlq_replayer";

/// Why the log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Postgres failed or was unreachable.
    #[error("replay log (Postgres) {doing}: {source}")]
    Database {
        /// What was being done.
        doing: &'static str,
        /// sqlx's error.
        source: sqlx::Error,
    },
    /// The migrations failed.
    #[error("replay log (Postgres) migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

fn failed(doing: &'static str) -> impl FnOnce(sqlx::Error) -> LogError {
    move |source| LogError::Database { doing, source }
}

/// A dead letter replayed before.
#[derive(Debug, Clone)]
pub struct PriorReplay {
    /// The dead letter.
    pub at: Coordinate,
    /// The replay that put it back.
    pub replay_id: Uuid,
    /// Who ran it.
    pub actor: String,
    /// When it went.
    pub replayed_at: chrono::DateTime<chrono::Utc>,
}

/// One replay run, for `history`.
#[derive(Debug, Clone)]
pub struct ReplayRun {
    /// Its id.
    pub replay_id: Uuid,
    /// Who ran it.
    pub actor: String,
    /// When it started.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// When it ended, if it did.
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `--to`, if given.
    pub target: Option<String>,
    /// What was selected.
    pub selection: String,
    /// Whether `--force` was given.
    pub forced: bool,
    /// running, done, stopped or failed.
    pub outcome: String,
    /// Dead letters it put back.
    pub replayed: i64,
}

/// How a replay run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything selected went.
    Done,
    /// Interrupted; what went is logged.
    Stopped,
    /// Some could not be sent.
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }
}

/// The replay log.
#[derive(Clone)]
pub struct ReplayLog {
    pool: PgPool,
}

impl ReplayLog {
    /// Connects, creates the schema if needed and runs the migrations.
    pub async fn connect(url: &SecretString) -> Result<Self, LogError> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|connection, _| {
                Box::pin(async move { connection.execute(SET_SEARCH_PATH).await.map(drop) })
            })
            .connect(url.expose_secret())
            .await
            .map_err(failed("connecting"))?;
        pool.execute(CREATE_SCHEMA)
            .await
            .map_err(failed("creating its schema"))?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Which of `coordinates` were replayed before, each with its latest replay.
    pub async fn prior(&self, coordinates: &[Coordinate]) -> Result<Vec<PriorReplay>, LogError> {
        let topics: Vec<&str> = coordinates.iter().map(|c| c.topic.as_str()).collect();
        let partitions: Vec<i32> = coordinates.iter().map(|c| c.partition).collect();
        let offsets: Vec<i64> = coordinates.iter().map(|c| c.offset).collect();
        let rows = sqlx::query(
            "SELECT DISTINCT ON (d.dlq_topic, d.dlq_partition, d.dlq_offset)
                    d.dlq_topic, d.dlq_partition, d.dlq_offset, d.replay_id, r.actor, d.replayed_at
               FROM replayed d
               JOIN replays r USING (replay_id)
               JOIN UNNEST($1::text[], $2::int[], $3::bigint[]) AS s(topic, part, off)
                 ON d.dlq_topic = s.topic AND d.dlq_partition = s.part AND d.dlq_offset = s.off
              ORDER BY d.dlq_topic, d.dlq_partition, d.dlq_offset, d.replayed_at DESC",
        )
        .bind(&topics)
        .bind(&partitions)
        .bind(&offsets)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("reading earlier replays"))?;
        rows.iter()
            .map(|row| {
                Ok(PriorReplay {
                    at: Coordinate {
                        topic: row.try_get("dlq_topic")?,
                        partition: row.try_get("dlq_partition")?,
                        offset: row.try_get("dlq_offset")?,
                    },
                    replay_id: row.try_get("replay_id")?,
                    actor: row.try_get("actor")?,
                    replayed_at: row.try_get("replayed_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(failed("reading earlier replays"))
    }

    /// Records the start of a replay run.
    pub async fn begin(
        &self,
        replay_id: Uuid,
        actor: &str,
        target: Option<&str>,
        selection: &str,
        forced: bool,
    ) -> Result<(), LogError> {
        sqlx::query(
            "INSERT INTO replays (replay_id, actor, target, selection, forced) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(replay_id)
        .bind(actor)
        .bind(target)
        .bind(selection)
        .bind(forced)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(failed("starting a replay"))
    }

    /// Records that the dead letter at `at` is on `target` (acknowledged).
    pub async fn record(
        &self,
        replay_id: Uuid,
        at: &Coordinate,
        target: &Coordinate,
    ) -> Result<(), LogError> {
        sqlx::query(
            "INSERT INTO replayed (dlq_topic, dlq_partition, dlq_offset, replay_id,
                                   target_topic, target_partition, target_offset)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&at.topic)
        .bind(at.partition)
        .bind(at.offset)
        .bind(replay_id)
        .bind(&target.topic)
        .bind(target.partition)
        .bind(target.offset)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(failed("recording a replayed message"))
    }

    /// Records how the run ended.
    pub async fn finish(&self, replay_id: Uuid, outcome: Outcome) -> Result<(), LogError> {
        sqlx::query("UPDATE replays SET outcome = $2, finished_at = now() WHERE replay_id = $1")
            .bind(replay_id)
            .bind(outcome.as_str())
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(failed("ending a replay"))
    }

    /// The latest `limit` replay runs, newest first.
    pub async fn history(&self, limit: i64) -> Result<Vec<ReplayRun>, LogError> {
        let rows = sqlx::query(
            "SELECT r.replay_id, r.actor, r.started_at, r.finished_at, r.target, r.selection,
                    r.forced, r.outcome, count(d.replay_id) AS replayed
               FROM replays r LEFT JOIN replayed d USING (replay_id)
              GROUP BY r.replay_id
              ORDER BY r.started_at DESC
              LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("reading the history"))?;
        rows.iter()
            .map(|row| {
                Ok(ReplayRun {
                    replay_id: row.try_get("replay_id")?,
                    actor: row.try_get("actor")?,
                    started_at: row.try_get("started_at")?,
                    finished_at: row.try_get("finished_at")?,
                    target: row.try_get("target")?,
                    selection: row.try_get("selection")?,
                    forced: row.try_get("forced")?,
                    outcome: row.try_get("outcome")?,
                    replayed: row.try_get("replayed")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(failed("reading the history"))
    }

    /// The dead letters replay `replay_id` put back, in the order they went.
    pub async fn replayed(
        &self,
        replay_id: Uuid,
    ) -> Result<Vec<(Coordinate, Coordinate)>, LogError> {
        let rows = sqlx::query(
            "SELECT dlq_topic, dlq_partition, dlq_offset, target_topic, target_partition, target_offset
               FROM replayed WHERE replay_id = $1 ORDER BY replayed_at, dlq_topic, dlq_partition, dlq_offset",
        )
        .bind(replay_id)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("reading a replay"))?;
        rows.iter()
            .map(|row| {
                Ok((
                    Coordinate {
                        topic: row.try_get("dlq_topic")?,
                        partition: row.try_get("dlq_partition")?,
                        offset: row.try_get("dlq_offset")?,
                    },
                    Coordinate {
                        topic: row.try_get("target_topic")?,
                        partition: row.try_get("target_partition")?,
                        offset: row.try_get("target_offset")?,
                    },
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(failed("reading a replay"))
    }
}
