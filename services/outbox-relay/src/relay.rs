//! The relay: logical replication (pgoutput) of the outbox table into Kafka.
//!
//! A transaction's outbox rows are produced when its Commit arrives, and the
//! transaction's end LSN is confirmed to Postgres only after Kafka
//! acknowledged every one of them (acks=all): a crash anywhere replays from
//! the last confirmed transaction, so nothing committed is lost and only
//! rows after the last confirmed LSN can arrive twice (downstream
//! deduplicates on the event id).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures::future::join_all;
use pgwire_replication::client::ReplicationEvent;
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, TlsConfig};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_avro::{AvroCodec, event_contract, event_record};
use sluice_contracts::Catalog;
use sluice_contracts::types::DeadLetterClass;
use sluice_dlq::{DeadLetterPublisher, Failure, Original};
use sqlx::{AssertSqlSafe, PgPool, Row};

use crate::pgoutput::{self, Change, Relation};
use crate::row::OutboxRow;

/// Prefix of the logical messages relayed like outbox rows.
pub const MESSAGE_PREFIX: &str = "outbox";
/// Longest wait between two tries to deliver a transaction.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why the relay stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A SQL call on the control connection failed.
    #[error("postgres: {action}: {source}")]
    Sql {
        /// What was being done.
        action: &'static str,
        /// The error.
        source: sqlx::Error,
    },
    /// The replication stream failed.
    #[error("replication stream: {0}")]
    Replication(#[from] pgwire_replication::PgWireError),
    /// A pgoutput message did not parse.
    #[error(transparent)]
    Decode(#[from] pgoutput::DecodeError),
    /// The slot's position is not an LSN.
    #[error("slot position {0:?} is not an LSN")]
    Lsn(String),
}

/// Where the outbox is and how it is streamed.
#[derive(Debug, Clone)]
pub struct OutboxSource {
    /// The replication connection (host, user, password, database); slot
    /// and publication are set from the fields below.
    pub connection: ReplicationConnection,
    /// Outbox table in the public schema.
    pub table: String,
    /// Replication slot name.
    pub slot: String,
    /// Publication name.
    pub publication: String,
}

/// How the replication connection reaches Postgres.
#[derive(Debug, Clone)]
pub struct ReplicationConnection {
    /// Host or Unix socket directory.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Role with the REPLICATION attribute.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Database holding the outbox.
    pub database: String,
}

/// A row of the current transaction: the event, or why it is not one.
#[derive(Debug)]
struct Pending {
    row: Result<OutboxRow, String>,
    /// The row as JSON, for its dead letter.
    raw: Vec<u8>,
}

/// Streams one outbox into Kafka.
pub struct Relay {
    /// Control connection: slot, publication, positions.
    pub pool: PgPool,
    /// The outbox to stream.
    pub source: OutboxSource,
    /// Event contracts.
    pub catalog: Catalog,
    /// Topic of an aggregate type, when not `<type>.events.v1`.
    pub routes: HashMap<String, String>,
    /// Avro through the registry.
    pub codec: AvroCodec,
    /// acks=all, idempotent.
    pub producer: FutureProducer,
    /// Where rows that do not fit their contract go.
    pub dead_letters: DeadLetterPublisher,
}

impl Relay {
    /// Creates the publication and the slot when missing; returns the LSN
    /// the stream resumes from (the slot's confirmed position).
    pub async fn prepare(&self) -> Result<Lsn, RelayError> {
        let sql = |action| move |source| RelayError::Sql { action, source };
        let publication = &self.source.publication;
        let exists = sqlx::query("SELECT 1 FROM pg_publication WHERE pubname = $1")
            .bind(publication)
            .fetch_optional(&self.pool)
            .await
            .map_err(sql("looking up the publication"))?;
        if exists.is_none() {
            // Names are checked identifiers (config), not input.
            let ddl = format!(
                "CREATE PUBLICATION {publication} FOR TABLE {}",
                self.source.table
            );
            sqlx::query(AssertSqlSafe(ddl))
                .execute(&self.pool)
                .await
                .map_err(sql("creating the publication"))?;
            tracing::info!(
                publication,
                table = self.source.table,
                "publication created"
            );
        }
        let position: Option<String> =
            sqlx::query("SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1")
                .bind(&self.source.slot)
                .fetch_optional(&self.pool)
                .await
                .map_err(sql("looking up the slot"))?
                .map(|row| row.get("lsn"));
        let position = match position {
            Some(lsn) => lsn,
            None => {
                let created: String = sqlx::query("SELECT lsn::text AS lsn FROM pg_create_logical_replication_slot($1, 'pgoutput')")
                    .bind(&self.source.slot)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(sql("creating the slot"))?
                    .get("lsn");
                tracing::info!(
                    slot = self.source.slot,
                    lsn = created,
                    "replication slot created"
                );
                created
            }
        };
        Lsn::parse(&position).map_err(|_| RelayError::Lsn(position))
    }

    /// Streams until `shutdown` completes. A broken stream (Postgres
    /// restarted, say) is reconnected from the slot's confirmed position.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), RelayError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = Duration::from_millis(200);
        loop {
            let result = tokio::select! {
                () = &mut shutdown => return Ok(()),
                result = self.stream() => result,
            };
            match result {
                Ok(()) => return Ok(()),
                Err(err) => {
                    tracing::warn!(error = %err, ?backoff, "replication interrupted; resuming from the slot");
                    tokio::select! {
                        () = &mut shutdown => return Ok(()),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One replication session, from the slot's confirmed position.
    async fn stream(&self) -> Result<(), RelayError> {
        let start = self.prepare().await?;
        let connection = &self.source.connection;
        let config = ReplicationConfig::new(
            connection.host.clone(),
            connection.user.clone(),
            connection.password.clone(),
            connection.database.clone(),
            self.source.slot.clone(),
            self.source.publication.clone(),
        )
        .with_port(connection.port)
        .with_tls(TlsConfig::disabled())
        .with_start_lsn(start)
        // A confirmed LSN reaches Postgres within this interval; what a crash
        // replays is what was confirmed here but not yet there.
        .with_status_interval(Duration::from_millis(200));
        let mut client = ReplicationClient::connect(config).await?;
        tracing::info!(slot = self.source.slot, %start, "streaming the outbox");
        let mut relations: HashMap<u32, Relation> = HashMap::new();
        let mut transaction: Vec<Pending> = Vec::new();
        while let Some(event) = client.recv().await? {
            match event {
                ReplicationEvent::Begin { .. } => transaction.clear(),
                ReplicationEvent::XLogData { data, .. } => match pgoutput::decode(&data)? {
                    Change::Relation(relation) => {
                        relations.insert(relation.id, relation);
                    }
                    Change::Insert {
                        relation_id,
                        values,
                    } => {
                        if let Some(relation) = relations
                            .get(&relation_id)
                            .filter(|r| r.name == self.source.table)
                        {
                            let named = relation.named(&values);
                            let raw = serde_json::to_vec(&named).unwrap_or_default();
                            transaction.push(Pending {
                                row: OutboxRow::from_columns(&named),
                                raw,
                            });
                        }
                    }
                    Change::Other => {}
                },
                ReplicationEvent::Message {
                    prefix,
                    content,
                    transactional: true,
                    ..
                } if prefix == MESSAGE_PREFIX => {
                    transaction.push(Pending {
                        row: OutboxRow::from_message(&content),
                        raw: content.to_vec(),
                    });
                }
                ReplicationEvent::Commit { end_lsn, .. } => {
                    self.deliver(&transaction, end_lsn).await;
                    transaction.clear();
                    // Confirmed only now: every event of the transaction is on Kafka.
                    client.update_applied_lsn(end_lsn);
                }
                ReplicationEvent::StoppedAt { .. } => break,
                ReplicationEvent::Message { .. } | ReplicationEvent::KeepAlive { .. } => {}
            }
        }
        client.stop();
        Ok(())
    }

    /// Produces a transaction's events, and dead-letters the rows that do not
    /// fit their contract, trying until Kafka has acknowledged all of it.
    async fn deliver(&self, transaction: &[Pending], commit_lsn: Lsn) {
        let mut backoff = Duration::from_millis(200);
        while let Err(reason) = self.try_deliver(transaction, commit_lsn).await {
            tracing::warn!(%reason, ?backoff, %commit_lsn, "transaction not delivered; trying again");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn try_deliver(&self, transaction: &[Pending], commit_lsn: Lsn) -> Result<(), String> {
        let mut records = Vec::with_capacity(transaction.len());
        for pending in transaction {
            let rejected = match &pending.row {
                Ok(row) => match event_record(&self.catalog, &row.input()) {
                    Ok(value) => {
                        let topic = self
                            .routes
                            .get(&row.aggregate_type)
                            .cloned()
                            .unwrap_or_else(|| event_contract(&row.aggregate_type));
                        let bytes = self
                            .codec
                            .encode_value(&topic, value)
                            .await
                            .map_err(|err| err.to_string())?;
                        records.push((topic, row, bytes));
                        continue;
                    }
                    Err(mismatch) => mismatch.to_string(),
                },
                Err(reason) => reason.clone(),
            };
            self.dead_letter(pending, rejected, commit_lsn).await?;
        }
        let sends = records.iter().map(|(topic, row, bytes)| {
            let mut headers = OwnedHeaders::new()
                .insert(Header {
                    key: "sluice.event_id",
                    value: Some(&row.id),
                })
                .insert(Header {
                    key: "sluice.event_type",
                    value: Some(&row.event_type),
                });
            if let Some(traceparent) = &row.traceparent {
                headers = headers.insert(Header {
                    key: "traceparent",
                    value: Some(traceparent),
                });
            }
            let record = FutureRecord::to(topic)
                .key(&row.aggregate_id)
                .payload(bytes)
                .headers(headers);
            self.producer.send(record, Duration::from_secs(30))
        });
        for delivery in join_all(sends).await {
            delivery.map_err(|(err, _)| err.to_string())?;
        }
        Ok(())
    }

    async fn dead_letter(
        &self,
        pending: &Pending,
        reason: String,
        commit_lsn: Lsn,
    ) -> Result<(), String> {
        let now = sluice_contracts::now_millis();
        let original = Original {
            topic: format!("outbox:{}", self.source.table),
            partition: 0,
            offset: i64::try_from(commit_lsn.as_u64()).unwrap_or(i64::MAX),
            timestamp: None,
            key: pending
                .row
                .as_ref()
                .ok()
                .map(|row| row.aggregate_id.clone().into_bytes()),
            value: Some(pending.raw.clone()),
            headers: Vec::new(),
        };
        let failure = Failure {
            class: DeadLetterClass::Validation,
            message: reason,
            attempts: 1,
            first_failure_at: now,
            last_failure_at: now,
        };
        tracing::warn!(message = failure.message, %commit_lsn, "outbox row dead-lettered");
        self.dead_letters
            .publish_original(original, failure)
            .await
            .map_err(|err| err.to_string())
    }
}
