//! The handler the consumer loop runs for each batch of SheetRowUpserts:
//! decode, upsert (each Sheets call paced and guarded by the breaker in
//! the client); what the errors mean for the batch.
//! Every command's outcome is recorded on the audit trail (a batch's
//! applied rows in one record per spreadsheet; a command the loop gives up
//! on in its own); a command a saga sent is answered on the results topic
//! too, so the saga need not wait for its timeout.

use std::collections::BTreeMap;

use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use sluice_avro::AvroCodec;
use sluice_contracts::types::{
    AuditAction, AuditRecord, AuditRow, DeadLetterClass, SagaStep, SheetOutcome, SheetRowResult,
    SheetRowUpsert,
};
use sluice_dlq::Failure;
use sluice_kafka::{AuditLog, Handler, Owed, ReplyError, ReplyPublisher};
use tracing::Instrument;

use crate::google::GoogleError;
use crate::upsert::Upserter;

/// Why a command was not applied (this time).
pub type SinkError = sluice_kafka::SinkError<GoogleError>;

/// Applies SheetRowUpserts.
pub struct SheetsSink {
    /// Decodes commands.
    pub codec: AvroCodec,
    /// Writes rows.
    pub upserter: Upserter,
    /// Answers the commands sagas sent.
    pub replies: ReplyPublisher,
    /// Records every command's outcome.
    pub audit: AuditLog,
}

impl SheetsSink {
    /// Upserts the commands' rows; their answers and audit records are
    /// owed to the loop.
    async fn apply(&self, messages: &[OwnedMessage]) -> Result<Owed, SinkError> {
        let mut commands: Vec<SheetRowUpsert> = Vec::with_capacity(messages.len());
        for message in messages {
            let bytes = message.payload().ok_or(SinkError::Empty)?;
            commands.push(self.codec.decode(bytes).await?);
        }
        match self.upserter.upsert(&commands).await {
            Ok(applied) => {
                tracing::debug!(?applied, commands = commands.len(), "rows upserted");
                if !applied.superseded.is_empty() {
                    metrics::counter!("sluice_sheets_superseded_total")
                        .increment(applied.superseded.len() as u64);
                }
                // Each answer in its command's own trace, not the batch's.
                let answered = commands
                    .iter()
                    .zip(messages)
                    .filter_map(|(command, message)| {
                        let saga = command.saga.as_ref()?;
                        let result = reply(command, saga, SheetOutcome::Applied, None);
                        Some(async move {
                            let key = row_subject(
                                &command.spreadsheet_id,
                                &command.sheet,
                                &command.row_key,
                            );
                            self.replies
                                .owe(&key, &result, Some(message))
                                .instrument(sluice_telemetry::message_span(message))
                                .await
                        })
                    });
                let (answers, records) = tokio::try_join!(
                    futures::future::try_join_all(answered),
                    self.record_applied(&commands, messages, &applied.superseded)
                )?;
                Ok(answers.into_iter().collect::<Owed>().and(records))
            }
            Err(err) => Err(SinkError::Upstream(err)),
        }
    }

    /// The batch's writes on the audit trail, one record per spreadsheet
    /// listing its rows (and one listing those `superseded`, not written
    /// since newer upserts had written each of their cells). A record per row cost the batched benchmark about
    /// a quarter of its pace (interleaved runs on this machine: 39.5k,
    /// 34.4k, 42.7k commands/s against 55.6k, 51.7k, 52.8k without), most
    /// of it producing and storing 500 records a batch: written without
    /// waiting for them, they still cost 10–20 %.
    async fn record_applied(
        &self,
        commands: &[SheetRowUpsert],
        messages: &[OwnedMessage],
        superseded: &[usize],
    ) -> Result<Owed, ReplyError> {
        let mut by_spreadsheet: BTreeMap<(&str, bool), Vec<Written<'_>>> = BTreeMap::new();
        for (at, (command, message)) in commands.iter().zip(messages).enumerate() {
            by_spreadsheet
                .entry((&command.spreadsheet_id, superseded.contains(&at)))
                .or_default()
                .push((command, message));
        }
        let recorded = by_spreadsheet
            .into_iter()
            .flat_map(|((_, superseded), written)| {
                in_runs(written, |(command, _)| listed_bytes(command))
                    .into_iter()
                    .map(move |run| (superseded, run))
            })
            .map(
                |(superseded, written)| async move { self.record_rows(&written, superseded).await },
            );
        let records = futures::future::try_join_all(recorded).await?;
        Ok(records.into_iter().collect())
    }

    /// One record of rows written to one spreadsheet, or `superseded`.
    async fn record_rows(
        &self,
        written: &[Written<'_>],
        superseded: bool,
    ) -> Result<Owed, ReplyError> {
        let Some((first, first_message)) = written.first() else {
            return Ok(Owed::nothing());
        };
        let rows: Vec<AuditRow> = written
            .iter()
            .map(|(command, message)| AuditRow {
                subject: row_subject(&command.spreadsheet_id, &command.sheet, &command.row_key),
                command_id: Some(command.command_id.clone()),
                source_event_id: Some(command.source_event_id.clone()),
                correlation_id: command.correlation_id.clone(),
                trace_id: sluice_telemetry::message_trace_id(*message),
            })
            .collect();
        // Rows of one flow (or trace): the record names it, in its value and
        // (passed on from the first message) in its headers.
        let flow = shared(written, |(command, _)| command.correlation_id.as_deref());
        let cause = shared(written, |(_, message)| {
            sluice_telemetry::correlation_id(*message)
        })
        .map(|_| *first_message);
        let trace = shared(&rows, |row| row.trace_id.as_deref()).map(str::to_owned);
        let (outcome, detail) = if superseded {
            let why = "not written: upserts of a later occurred_at had written every cell";
            ("SUPERSEDED", Some(why.to_owned()))
        } else {
            ("APPLIED", None)
        };
        let record = AuditRecord {
            correlation_id: flow.map(str::to_owned),
            // The batch's span is its first message's: another flow's trace
            // for the rows of the others.
            trace_id: trace,
            rows: Some(rows),
            detail,
            ..self.audit.entry(
                AuditAction::SheetRowWrite,
                first.spreadsheet_id.as_str(),
                outcome,
            )
        };
        self.audit.owe(&record, cause).await
    }

    /// A refused command's record on the audit trail and, for a saga's
    /// command, its answer: both on Kafka before its offset is stored.
    async fn report_refused(
        &self,
        command: &SheetRowUpsert,
        message: &OwnedMessage,
        failure: &Failure,
    ) -> Result<(), ReplyError> {
        let outcome = match failure.class {
            DeadLetterClass::RetriesExhausted => "RETRIES_EXHAUSTED",
            _ => "REJECTED",
        };
        let audit = AuditRecord {
            command_id: Some(command.command_id.clone()),
            source_event_id: Some(command.source_event_id.clone()),
            correlation_id: command.correlation_id.clone(),
            detail: Some(failure.message.clone()),
            ..self.audit.entry(
                AuditAction::SheetRowWrite,
                row_subject(&command.spreadsheet_id, &command.sheet, &command.row_key),
                outcome,
            )
        };
        let answer = async {
            match &command.saga {
                Some(saga) => {
                    let result = reply(
                        command,
                        saga,
                        SheetOutcome::Rejected,
                        Some(failure.message.clone()),
                    );
                    self.replies.publish(&audit.subject, &result, message).await
                }
                None => Ok(()),
            }
        };
        tokio::try_join!(answer, self.audit.record(&audit, Some(message))).map(drop)
    }
}

/// A command written, and the message it came in.
type Written<'a> = (&'a SheetRowUpsert, &'a OwnedMessage);

/// Most bytes of rows one audit record lists: a quarter of Kafka's default
/// 1 MB message limit, so a batch of long keys is recorded in several
/// records rather than refused by the broker.
const RECORD_ROW_BYTES: usize = 256 * 1024;

/// About what a command's row adds to a record: its strings, a trace id,
/// and their lengths.
fn listed_bytes(command: &SheetRowUpsert) -> usize {
    let flow = command.correlation_id.as_ref().map_or(0, String::len);
    command.spreadsheet_id.len()
        + command.sheet.len()
        + command.row_key.len()
        + command.command_id.len()
        + command.source_event_id.len()
        + flow
        + 64
}

/// `items` cut, in order, into runs of at most [`RECORD_ROW_BYTES`] by
/// `size` (an item larger than that is a run of its own).
fn in_runs<T>(items: Vec<T>, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut runs: Vec<Vec<T>> = Vec::new();
    let mut bytes = 0;
    for item in items {
        let item_bytes = size(&item);
        match runs.last_mut() {
            Some(run) if bytes + item_bytes <= RECORD_ROW_BYTES => {
                bytes += item_bytes;
                run.push(item);
            }
            _ => {
                bytes = item_bytes;
                runs.push(vec![item]);
            }
        }
    }
    runs
}

/// The value `of` gives every item, when they all have the same one.
fn shared<'a, T>(items: &'a [T], of: impl Fn(&'a T) -> Option<&'a str>) -> Option<&'a str> {
    let (first, rest) = items.split_first()?;
    let value = of(first)?;
    rest.iter()
        .all(|item| of(item) == Some(value))
        .then_some(value)
}

/// The row's Kafka key and audit subject: `spreadsheet/sheet/row key`.
fn row_subject(spreadsheet_id: &str, sheet: &str, row_key: &str) -> String {
    format!("{spreadsheet_id}/{sheet}/{row_key}")
}

fn reply(
    command: &SheetRowUpsert,
    saga: &SagaStep,
    outcome: SheetOutcome,
    error: Option<String>,
) -> SheetRowResult {
    SheetRowResult {
        command_id: command.command_id.clone(),
        spreadsheet_id: command.spreadsheet_id.clone(),
        sheet: command.sheet.clone(),
        row_key: command.row_key.clone(),
        outcome,
        error,
        completed_at: sluice_contracts::now_millis(),
        saga: Some(saga.clone()),
        correlation_id: command.correlation_id.clone(),
        causation_id: Some(command.command_id.clone()),
    }
}

impl Handler for SheetsSink {
    type Error = SinkError;

    async fn handle(&self, message: &OwnedMessage) -> Result<Owed, SinkError> {
        self.apply(std::slice::from_ref(message)).await
    }

    async fn handle_batch(&self, messages: &[OwnedMessage]) -> Result<Owed, SinkError> {
        self.apply(messages).await
    }

    /// Partitions that were another replica's: the keys it appended are
    /// not in this one's cached indexes.
    fn assigned(&self, _partitions: &[(String, i32)]) {
        self.upserter.forget();
    }

    /// A command that is dead-lettered is recorded REJECTED and, a saga's,
    /// answered so (best effort: the dead letter is what keeps it; the
    /// saga's timeout covers a lost answer). An undecodable message was no
    /// write and has nobody to answer.
    async fn given_up(&self, message: &OwnedMessage, failure: &Failure) {
        let Some(bytes) = message.payload() else {
            return;
        };
        let Ok(command) = self.codec.decode::<SheetRowUpsert>(bytes).await else {
            return;
        };
        if let Err(err) = self.report_refused(&command, message, failure).await {
            tracing::warn!(error = %err, command_id = command.command_id,
                "refusal not recorded or not answered to the saga");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_past_a_records_size_go_on_in_the_next_record_in_order() {
        let runs = in_runs(vec![100_000, 100_000, 100_000, 300_000, 10], |size| *size);
        assert_eq!(
            runs,
            vec![
                vec![100_000, 100_000],
                vec![100_000],
                vec![300_000],
                vec![10]
            ]
        );
        assert!(in_runs(Vec::<usize>::new(), |size| *size).is_empty());
    }
}
