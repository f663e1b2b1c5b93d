//! The relay: logical replication (pgoutput) of the outbox table into Kafka.
//!
//! A transaction's outbox rows are produced when its Commit arrives, and the
//! transaction's end LSN is confirmed to Postgres only after Kafka
//! acknowledged every one of them (acks=all): a crash anywhere replays from
//! the last confirmed transaction, so nothing committed is lost and only
//! rows after the last confirmed LSN can arrive twice (downstream
//! deduplicates on the event id).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use pgwire_replication::client::ReplicationEvent;
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig};
use sluice_avro::{AvroCodec, event_contract, event_record};
use sluice_contracts::Catalog;
use sluice_contracts::types::DeadLetterClass;
use sluice_dlq::{DeadLetterPublisher, Failure, Original};
use sluice_kafka::TopicLimits;
use sluice_telemetry::liveness::WatchedProducer;
use sqlx::{AssertSqlSafe, PgPool, Row};

use crate::connection::ReplicationConnection;
use crate::delivery::{Acknowledged, Commit, DeliveryError, Pending, Raw, Record, send_all};
use crate::metrics as names;
use crate::pgoutput::{self, Change, Relation};
use crate::row::{OutboxFormat, OutboxMessage, OutboxRow};

/// Prefix of the logical messages the relay of domain events relays like
/// outbox rows, unless told another. Every relay on a database streams the
/// same WAL, so each owns its prefix: the addressed outbox's relay (the
/// saga's, beside the business outbox) owns none.
pub const MESSAGE_PREFIX: &str = "outbox";
/// First and longest wait between two tries (to encode, to reconnect). The
/// longest bounds how late the relay resumes once the registry or Postgres
/// is back: at 30 s, the chaos run's relay sat out 20 s more after a
/// 30 s Postgres restart (the registry stores its schemas there), its outbox
/// stalled; a try every 5 s costs the servers nothing.
const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a standby replica asks for the slot.
const STANDBY_POLL: Duration = Duration::from_secs(1);
/// How often a relay whose slot was lost, or whose table is not published,
/// looks whether an operator has set it right.
const LOST_SLOT_POLL: Duration = Duration::from_secs(10);
/// How often a streaming relay checks that its publication still publishes
/// the outbox table (a migration that drops and makes it again takes it
/// out, and Postgres then decodes none of its rows).
const PUBLICATION_CHECK: Duration = Duration::from_secs(5);
/// Why a logical message emitted outside a transaction is dead-lettered.
const NOT_TRANSACTIONAL: &str = "a logical message emitted outside a transaction \
     (pg_logical_emit_message(false, …)) is in the WAL whether or not the transaction that \
     emitted it committed, so it is not relayed: emit it with true, in the transaction that makes \
     the change; replay this one only if that transaction committed";
/// The replication session's settings for the text of the values it reads.
const SESSION_SETTINGS: &str =
    "-c datestyle=ISO -c timezone=UTC -c bytea_output=hex -c intervalstyle=postgres";
/// A transaction's records, and its refused rows with why.
type Encoded<'a> = (Vec<Record<'a>>, Vec<(&'a Pending, String)>);
/// Events handed to the producer but not yet acknowledged, at most (one
/// transaction larger than this is still sent whole).
const MAX_ROWS_IN_FLIGHT: usize = 20_000;

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
    /// Kafka refused an event; the stream resumes from the slot.
    #[error(transparent)]
    Delivery(Box<DeliveryError>),
    /// The slot's position is not an LSN.
    #[error("slot position {0:?} is not an LSN")]
    Lsn(String),
    /// The publication is there but the slot is gone: a failover to a
    /// server without it, or someone dropped it. What was committed since
    /// its last confirmed position was never relayed, and a new slot would
    /// start after it.
    #[error(
        "replication slot {slot} is gone while publication {publication} exists: the relay streamed \
         before, and a new slot would skip what was committed since (a failover, a manual drop). \
         Recover those rows (they are still in the outbox table), then start the relay with \
         --recreate-lost-slot"
    )]
    SlotLost {
        /// The slot.
        slot: String,
        /// Its publication.
        publication: String,
    },
    /// The publication does not publish the outbox table: made for other
    /// tables, or the table was dropped and made again, which takes it out.
    /// Postgres decodes none of the table's rows meanwhile.
    #[error(
        "publication {publication} does not publish the outbox table {table} (it was made for other \
         tables, or the table was dropped and made again, which takes it out): none of its rows \
         would be streamed. Run ALTER PUBLICATION {publication} ADD TABLE {table}; rows committed \
         while it was out were not relayed: recover them from the table"
    )]
    NotPublished {
        /// The publication.
        publication: String,
        /// The outbox table.
        table: String,
    },
    /// The outbox table is partitioned and the publication sends its rows
    /// under the partitions' names, which the relay does not know.
    #[error(
        "the outbox table {table} is partitioned and publication {publication} publishes its rows \
         under its partitions' names: run ALTER PUBLICATION {publication} SET \
         (publish_via_partition_root = true); rows committed meanwhile were not relayed: recover \
         them from the table"
    )]
    PartitionsByName {
        /// The publication.
        publication: String,
        /// The outbox table.
        table: String,
    },
    /// The publication leaves inserts out (its `publish` parameter).
    #[error(
        "publication {publication} does not publish inserts (its publish parameter leaves them out): \
         no outbox row would be streamed. Run ALTER PUBLICATION {publication} SET (publish = \
         'insert, update, delete, truncate'); rows committed meanwhile were not relayed: recover \
         them from the table"
    )]
    InsertsNotPublished {
        /// The publication.
        publication: String,
    },
    /// Another session (another replica) streams the slot.
    #[error("replication slot {slot} is streamed by another session")]
    SlotInUse {
        /// The slot.
        slot: String,
    },
}

/// Where the outbox is and how it is streamed.
#[derive(Debug, Clone)]
pub struct OutboxSource {
    /// The replication connection (host, user, password, database); slot
    /// and publication are set from the fields below.
    pub connection: ReplicationConnection,
    /// Create the slot anew even when its publication shows the relay
    /// streamed before (the operator recovered what a lost slot skipped).
    pub recreate_lost_slot: bool,
    /// Outbox table: `name` in the public schema, or `schema.name`.
    pub table: String,
    /// What the table holds.
    pub format: OutboxFormat,
    /// Replication slot name.
    pub slot: String,
    /// Publication name.
    pub publication: String,
    /// Prefix of the logical messages this relay relays (`None`: none).
    pub message_prefix: Option<String>,
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
    /// Topics an addressed row may name besides those of the catalog and
    /// the routes (a deployment's renamed topics).
    pub allowed_topics: HashSet<String>,
    /// Avro through the registry.
    pub codec: AvroCodec,
    /// acks=all, idempotent.
    pub producer: WatchedProducer,
    /// Where rows that do not fit their contract (or Kafka) go.
    pub dead_letters: DeadLetterPublisher,
    /// The largest record each topic takes.
    pub limits: TopicLimits,
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
                // A partitioned outbox's rows then come under its name,
                // not its partitions'.
                "CREATE PUBLICATION {publication} FOR TABLE {} WITH (publish_via_partition_root = true)",
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
        self.published().await?;
        let slot: Option<(Option<String>, bool)> = sqlx::query(
            "SELECT confirmed_flush_lsn::text AS lsn, active FROM pg_replication_slots WHERE slot_name = $1",
        )
        .bind(&self.source.slot)
        .fetch_optional(&self.pool)
        .await
        .map_err(sql("looking up the slot"))?
        .map(|row| (row.get("lsn"), row.get("active")));
        let position = match slot {
            // Asked here, not by a replication connection: that one would
            // be refused and its client log an error every poll. A slot
            // without a position is being created by another session
            // (pg_create_logical_replication_slot waits for open
            // transactions): it is that session's.
            Some((_, true) | (None, false)) => {
                return Err(RelayError::SlotInUse {
                    slot: self.source.slot.clone(),
                });
            }
            Some((Some(lsn), false)) => lsn,
            None if exists.is_some() && !self.source.recreate_lost_slot => {
                return Err(RelayError::SlotLost {
                    slot: self.source.slot.clone(),
                    publication: publication.clone(),
                });
            }
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

    /// Fails unless the publication publishes the outbox table's inserts,
    /// under the table's name. (A row filter is the deployment's own:
    /// outboxes sharded over slots.)
    async fn published(&self) -> Result<(), RelayError> {
        let (schema, table) = self.source.schema_and_name();
        let found = sqlx::query(
            "SELECT p.pubinsert, p.pubviaroot, \
                    EXISTS (SELECT 1 FROM pg_publication_tables t \
                            WHERE t.pubname = p.pubname AND t.schemaname = $2 AND t.tablename = $3) AS listed, \
                    EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                            WHERE n.nspname = $2 AND c.relname = $3 AND c.relkind = 'p') AS partitioned \
             FROM pg_publication p WHERE p.pubname = $1",
        )
        .bind(&self.source.publication)
        .bind(schema)
        .bind(table)
        .fetch_optional(&self.pool)
        .await
        .map_err(|source| RelayError::Sql {
            action: "looking up the publication's tables",
            source,
        })?;
        let publication = self.source.publication.clone();
        let Some(found) = found else {
            return Err(RelayError::NotPublished {
                publication,
                table: self.source.table.clone(),
            });
        };
        let flag = |name: &str| found.get::<bool, _>(name);
        if flag("partitioned") && !flag("pubviaroot") {
            Err(RelayError::PartitionsByName {
                publication,
                table: self.source.table.clone(),
            })
        } else if !flag("listed") {
            Err(RelayError::NotPublished {
                publication,
                table: self.source.table.clone(),
            })
        } else if !flag("pubinsert") {
            Err(RelayError::InsertsNotPublished { publication })
        } else {
            Ok(())
        }
    }

    /// Streams until `shutdown` completes. The slot admits one reader: while
    /// another replica streams, this one stands by and takes over when the
    /// slot is free. A broken stream (Postgres restarted, say) resumes from
    /// the slot's confirmed position.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), RelayError> {
        names::describe_once();
        let streaming = metrics::gauge!(names::STREAMING, "slot" => self.source.slot.clone());
        let mut shutdown = std::pin::pin!(shutdown);
        let lag = crate::lag::report(self.pool.clone(), self.source.slot.clone());
        let mut lag = std::pin::pin!(lag);
        let mut backoff = INITIAL_BACKOFF;
        let mut standing_by = false;
        let (mut lost, mut suspected, mut unpublished) = (false, false, false);
        let lost_gauge = metrics::gauge!(names::SLOT_LOST, "slot" => self.source.slot.clone());
        loop {
            let result = tokio::select! {
                () = &mut shutdown => return Ok(()),
                never = &mut lag => match never {},
                result = self.stream(standing_by) => result,
            };
            streaming.set(0.0);
            if !matches!(result, Err(RelayError::SlotLost { .. })) {
                // It streamed (or the slot is back and something else
                // failed): the loss, if any, is over.
                lost_gauge.set(0.0);
                (lost, suspected) = (false, false);
            }
            if !result.as_ref().is_err_and(RelayError::unpublished) {
                unpublished = false;
            }
            let pause = match result {
                Ok(()) => return Ok(()),
                // Seen once, it may be the saga orchestrator between making
                // the outbox's publication and its slot: look again soon.
                Err(RelayError::SlotLost { .. }) if !lost && !suspected => {
                    suspected = true;
                    STANDBY_POLL * 2
                }
                Err(err @ RelayError::SlotLost { .. }) => {
                    // Stopped, visibly, until someone recreates the slot or
                    // restarts the relay told to start over.
                    if !lost {
                        lost_gauge.set(1.0);
                        tracing::error!(error = %err, "not streaming");
                        lost = true;
                    }
                    LOST_SLOT_POLL
                }
                Err(err) if err.unpublished() => {
                    if !unpublished {
                        tracing::error!(error = %err, "not streaming");
                        unpublished = true;
                    }
                    LOST_SLOT_POLL
                }
                Err(err) if err.slot_in_use() => {
                    if !standing_by {
                        tracing::info!(
                            slot = self.source.slot,
                            "another relay streams the slot; standing by"
                        );
                        standing_by = true;
                    }
                    STANDBY_POLL
                }
                Err(err) => {
                    tracing::warn!(error = %err, ?backoff, "replication interrupted; resuming from the slot");
                    standing_by = false;
                    let pause = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    pause
                }
            };
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One replication session, from the slot's confirmed position.
    ///
    /// Transactions are pipelined: each is handed to the producer at its
    /// Commit and the stream reads on, while acknowledgements are awaited in
    /// commit order; a transaction's end LSN is confirmed when it and every
    /// transaction before it are on Kafka.
    async fn stream(&self, after_standby: bool) -> Result<(), RelayError> {
        let start = self.prepare().await?;
        let mut client = ReplicationClient::connect(self.replication_config(start)).await?;
        client.wait_started().await?;
        metrics::gauge!(names::STREAMING, "slot" => self.source.slot.clone()).set(1.0);
        metrics::gauge!(names::SLOT_LOST, "slot" => self.source.slot.clone()).set(0.0);
        if after_standby {
            tracing::info!(slot = self.source.slot, %start, "took over the slot from the replica that held it");
        } else {
            tracing::info!(slot = self.source.slot, %start, "streaming the outbox");
        }
        let commit_to_ack = metrics::histogram!(names::COMMIT_TO_ACK);
        let mut relations: HashMap<u32, Relation> = HashMap::new();
        let mut open: Option<Vec<Pending>> = None;
        let mut in_flight = FuturesOrdered::new();
        let mut rows_in_flight = 0usize;
        let mut check = tokio::time::interval(PUBLICATION_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.reset();
        loop {
            tokio::select! {
                biased;
                Some(acknowledged) = in_flight.next(), if !in_flight.is_empty() => {
                    let acknowledged: Acknowledged = acknowledged?;
                    rows_in_flight -= acknowledged.topics.len();
                    for topic in acknowledged.topics {
                        metrics::counter!(names::RELAYED, "topic" => topic).increment(1);
                    }
                    let commit = acknowledged.commit;
                    if let Ok(elapsed) = commit.time.elapsed() {
                        commit_to_ack.record(elapsed.as_secs_f64());
                    }
                    // Confirmed only now: this transaction and all before it are on Kafka.
                    client.update_applied_lsn(commit.end_lsn);
                }
                event = client.recv(), if rows_in_flight < MAX_ROWS_IN_FLIGHT => {
                    let Some(event) = event? else { break };
                    match event {
                        ReplicationEvent::Begin { .. } => open = Some(Vec::new()),
                        ReplicationEvent::XLogData { data, .. } => {
                            if let (Change::Insert { relation_id, values }, Some(rows)) =
                                (self.decode(&data, &mut relations)?, open.as_mut())
                                && let Some(relation) = relations
                                    .get(&relation_id)
                                    .filter(|r| self.source.is_table(r))
                            {
                                let row = self.source.format.row(&relation.named(&values));
                                rows.push(Pending {
                                    row,
                                    raw: Raw::Row {
                                        columns: Arc::clone(&relation.columns),
                                        values,
                                    },
                                });
                            }
                        }
                        ReplicationEvent::Message { prefix, content, transactional, lsn }
                            if self.source.message_prefix.as_deref() == Some(prefix.as_str()) =>
                        {
                            let pending = Pending {
                                row: OutboxRow::from_message(&content).map(OutboxMessage::Event),
                                raw: Raw::Message(content.to_vec()),
                            };
                            match open.as_mut() {
                                Some(rows) if transactional => rows.push(pending),
                                // Written to the WAL at once, whether or not
                                // the transaction that emitted it committed.
                                _ if !transactional => {
                                    self.dead_letter_surely(&pending, NOT_TRANSACTIONAL, lsn).await;
                                }
                                _ => {}
                            }
                        }
                        ReplicationEvent::Commit { end_lsn, commit_time_micros, .. } => {
                            let rows = open.take().unwrap_or_default();
                            rows_in_flight += rows.len();
                            let commit = Commit::new(end_lsn, commit_time_micros);
                            in_flight.push_back(self.dispatch(&rows, commit).await?);
                        }
                        // Heartbeat: with nothing open or in flight, everything
                        // the server has decoded is relayed, so the slot may move
                        // past WAL written by other tables (or databases) and
                        // Postgres can recycle it.
                        ReplicationEvent::KeepAlive { wal_end, .. }
                            if open.is_none() && in_flight.is_empty() =>
                        {
                            client.update_applied_lsn(wal_end);
                        }
                        ReplicationEvent::StoppedAt { .. } => break,
                        ReplicationEvent::Message { .. } | ReplicationEvent::KeepAlive { .. } => {}
                    }
                }
                // The replication stream needs no control connection:
                // one that fails here does not stop it.
                _ = check.tick() => match self.published().await {
                    Err(err) if err.unpublished() => return Err(err),
                    Err(err) => tracing::warn!(error = %err, "could not check the publication; streaming on"),
                    Ok(()) => {}
                },
            }
        }
        client.stop();
        Ok(())
    }

    fn replication_config(&self, start: Lsn) -> ReplicationConfig {
        let connection = &self.source.connection;
        ReplicationConfig::new(
            connection.host.clone(),
            connection.user.clone(),
            connection.password.clone(),
            connection.database.clone(),
            self.source.slot.clone(),
            self.source.publication.clone(),
        )
        .with_port(connection.port)
        .with_tls(connection.tls.clone())
        .with_start_lsn(start)
        .with_application_name(format!("sluice-outbox-relay/{}", self.source.slot))
        // pgoutput writes values in the session's settings, which a
        // database's or role's own (ALTER DATABASE … SET datestyle) would
        // change under the row parser: pinned, over any of those.
        .with_options(SESSION_SETTINGS)
        // A confirmed LSN reaches Postgres within this interval; what a crash
        // replays is what was confirmed here but not yet there.
        .with_status_interval(Duration::from_millis(200))
    }

    /// Keeps relations current; returns the decoded change.
    fn decode(
        &self,
        data: &[u8],
        relations: &mut HashMap<u32, Relation>,
    ) -> Result<Change, RelayError> {
        let change = pgoutput::decode(data)?;
        if let Change::Relation(relation) = change {
            relations.insert(relation.id, relation);
            return Ok(Change::Other);
        }
        Ok(change)
    }

    /// Encodes a transaction's events (dead-lettering rows that do not fit
    /// their contract) and hands them to the producer, trying again while the
    /// registry or the dead-letter topic is unreachable.
    async fn dispatch(
        &self,
        rows: &[Pending],
        commit: Commit,
    ) -> Result<BoxFuture<'static, Result<Acknowledged, DeliveryError>>, DeliveryError> {
        let mut backoff = INITIAL_BACKOFF;
        let (records, rejected) = loop {
            match self.encode(rows).await {
                Ok(encoded) => break encoded,
                // The registry away, or a topic whose subject nobody
                // registered: held, in order, until it is there.
                Err(reason) if backoff < MAX_BACKOFF => {
                    tracing::warn!(%reason, ?backoff, end_lsn = %commit.end_lsn, "transaction not encoded; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(reason) => {
                    tracing::error!(%reason, ?backoff, end_lsn = %commit.end_lsn, "transaction not encoded, the outbox held behind it; trying again");
                    tokio::time::sleep(backoff).await;
                }
            }
        };
        // Only once the whole transaction is encoded: a retry of it must
        // not dead-letter its refused rows again.
        for (pending, reason) in rejected {
            self.dead_letter_surely(pending, &reason, commit.end_lsn)
                .await;
        }
        for record in &records {
            record.log_relaying(commit);
        }
        send_all(&self.producer, records, commit).await
    }

    /// Dead-letters `pending`, trying until the dead letter is written (a
    /// refused row is never dropped).
    async fn dead_letter_surely(&self, pending: &Pending, reason: &str, end_lsn: Lsn) {
        let mut backoff = INITIAL_BACKOFF;
        while let Err(err) = self.dead_letter(pending, reason.to_owned(), end_lsn).await {
            tracing::warn!(error = %err, ?backoff, %end_lsn, "dead letter not written; trying again");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// The transaction's records, and its rows refused with why; `Err`
    /// when a record could not be encoded (the registry).
    async fn encode<'a>(&self, rows: &'a [Pending]) -> Result<Encoded<'a>, String> {
        let mut records = Vec::with_capacity(rows.len());
        let mut refused = Vec::new();
        for pending in rows {
            let rejected = match &pending.row {
                Ok(OutboxMessage::Addressed(row)) if !self.may_address(&row.topic) => format!(
                    "topic {:?} is not in topics.toml, not routed and not allowed (--allow-topic): \
                     an addressed row may only name the deployment's own topics",
                    row.topic
                ),
                Ok(OutboxMessage::Addressed(row)) => {
                    let record = Record {
                        topic: row.topic.clone(),
                        id: &row.id,
                        key: &row.key,
                        value: row.value.clone(),
                        headers: row
                            .headers
                            .iter()
                            .map(|(key, value)| (key.as_str(), value.as_str()))
                            .collect(),
                    };
                    match self.admit(record).await {
                        Ok(record) => {
                            records.push(record);
                            continue;
                        }
                        Err(reason) => reason,
                    }
                }
                Ok(OutboxMessage::Event(row)) => match event_record(&self.catalog, &row.input()) {
                    Ok((contract, value)) => {
                        let topic = self
                            .routes
                            .get(&row.aggregate_type)
                            .cloned()
                            .unwrap_or_else(|| event_contract(&row.aggregate_type));
                        let value = self
                            .codec
                            .encode_value(&topic, contract, value)
                            .await
                            .map_err(|err| err.to_string())?;
                        let record = Record {
                            topic,
                            id: &row.id,
                            key: &row.aggregate_id,
                            value,
                            headers: row.headers(),
                        };
                        match self.admit(record).await {
                            Ok(record) => {
                                records.push(record);
                                continue;
                            }
                            Err(reason) => reason,
                        }
                    }
                    Err(mismatch) => mismatch.to_string(),
                },
                Err(reason) => reason.clone(),
            };
            refused.push((pending, rejected));
        }
        Ok((records, refused))
    }

    /// `record`, if Kafka takes a record of its size; else why not (sent,
    /// Kafka's refusal would fail the transaction, again on every retry).
    async fn admit<'a>(&self, record: Record<'a>) -> Result<Record<'a>, String> {
        let limit = self.limits.max_message_bytes(&record.topic).await;
        let size = record.size();
        if size <= limit {
            return Ok(record);
        }
        Err(format!(
            "the record for {} is {size} bytes and Kafka takes at most {limit} (the producer's \
             message.max.bytes or the topic's max.message.bytes): raise both, or write less into one row",
            record.topic
        ))
    }

    /// Whether an addressed row may go to `topic`: one of the deployment's
    /// own, so a row written by anyone with INSERT on the outbox cannot
    /// reach another team's topic or Kafka's internal ones.
    fn may_address(&self, topic: &str) -> bool {
        self.catalog.topic(topic).is_some()
            || self.routes.values().any(|routed| routed == topic)
            || self.allowed_topics.contains(topic)
    }

    async fn dead_letter(
        &self,
        pending: &Pending,
        reason: String,
        end_lsn: Lsn,
    ) -> Result<(), String> {
        let now = sluice_contracts::now_millis();
        let original = Original {
            topic: format!("outbox:{}", self.source.table),
            partition: 0,
            offset: i64::try_from(end_lsn.as_u64()).unwrap_or(i64::MAX),
            timestamp: None,
            key: pending
                .row
                .as_ref()
                .ok()
                .map(|row| row.key().as_bytes().to_vec()),
            value: Some(pending.raw.bytes()),
            headers: Vec::new(),
        };
        let failure = Failure {
            class: DeadLetterClass::Validation,
            message: reason,
            attempts: 1,
            first_failure_at: now,
            last_failure_at: now,
        };
        tracing::warn!(message = failure.message, %end_lsn, "outbox row dead-lettered");
        self.dead_letters
            .publish_original(original, failure)
            .await
            .map_err(|err| err.to_string())?;
        metrics::counter!(names::DEAD_LETTERED).increment(1);
        Ok(())
    }
}

impl OutboxSource {
    /// Whether pgoutput's `relation` is the outbox table.
    fn is_table(&self, relation: &Relation) -> bool {
        (relation.namespace.as_str(), relation.name.as_str()) == self.schema_and_name()
    }

    /// The outbox table's schema and name.
    fn schema_and_name(&self) -> (&str, &str) {
        self.table
            .split_once('.')
            .unwrap_or(("public", self.table.as_str()))
    }
}

impl From<DeliveryError> for RelayError {
    fn from(err: DeliveryError) -> Self {
        Self::Delivery(Box::new(err))
    }
}

impl RelayError {
    /// The publication leaves the outbox's rows out: an operator's fix.
    fn unpublished(&self) -> bool {
        matches!(
            self,
            Self::NotPublished { .. }
                | Self::InsertsNotPublished { .. }
                | Self::PartitionsByName { .. }
        )
    }

    /// Another session holds the slot: seen in pg_replication_slots, or
    /// (taken between that look and the connection) refused with SQLSTATE
    /// 55006, object in use.
    fn slot_in_use(&self) -> bool {
        match self {
            Self::SlotInUse { .. } => true,
            Self::Replication(pgwire_replication::PgWireError::Server(message)) => {
                message.contains("55006")
            }
            _ => false,
        }
    }
}
