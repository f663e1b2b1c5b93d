//! The handler the consumer loop runs for each batch of SheetRowUpserts:
//! decode, upsert (each Sheets call paced and guarded by the breaker in
//! the client); what the errors mean for the batch.
//! Every command's outcome (applied, or refused once the loop gives up on
//! it) is recorded on the audit trail; a command a saga sent is answered on
//! the results topic too, so the saga need not wait for its timeout.

use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use sluice_avro::AvroCodec;
use sluice_contracts::types::{
    AuditAction, AuditRecord, DeadLetterClass, SagaStep, SheetOutcome, SheetRowResult,
    SheetRowUpsert,
};
use sluice_dlq::Failure;
use sluice_kafka::{AuditLog, Handler, ReplyError, ReplyPublisher};
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
    async fn apply(&self, messages: &[OwnedMessage]) -> Result<(), SinkError> {
        let mut commands: Vec<SheetRowUpsert> = Vec::with_capacity(messages.len());
        for message in messages {
            let bytes = message.payload().ok_or(SinkError::Empty)?;
            commands.push(self.codec.decode(bytes).await?);
        }
        match self.upserter.upsert(&commands).await {
            Ok(applied) => {
                tracing::debug!(?applied, commands = commands.len(), "rows upserted");
                // Each in the command's own trace, not the batch's.
                let reported = commands.iter().zip(messages).map(|(command, message)| {
                    self.report(command, message, SheetOutcome::Applied, None)
                        .instrument(sluice_telemetry::message_span(message))
                });
                futures::future::try_join_all(reported).await?;
                Ok(())
            }
            Err(err) => Err(SinkError::Upstream(err)),
        }
    }
}

impl SheetsSink {
    /// The command's record on the audit trail and, for a saga's command,
    /// its answer: both on Kafka before its offset is stored.
    async fn report(
        &self,
        command: &SheetRowUpsert,
        message: &OwnedMessage,
        outcome: SheetOutcome,
        failure: Option<&Failure>,
    ) -> Result<(), ReplyError> {
        let audit = self.audit_record(command, outcome, failure);
        let answer = async {
            match &command.saga {
                Some(saga) => {
                    let error = failure.map(|failure| failure.message.clone());
                    self.answer(&reply(command, saga, outcome, error), message)
                        .await
                }
                None => Ok(()),
            }
        };
        tokio::try_join!(answer, self.audit.record(&audit, Some(message))).map(drop)
    }

    fn audit_record(
        &self,
        command: &SheetRowUpsert,
        outcome: SheetOutcome,
        failure: Option<&Failure>,
    ) -> AuditRecord {
        let outcome = match (failure, outcome) {
            (Some(failure), _) if failure.class == DeadLetterClass::RetriesExhausted => {
                "RETRIES_EXHAUSTED"
            }
            (_, SheetOutcome::Applied) => "APPLIED",
            _ => "REJECTED",
        };
        AuditRecord {
            command_id: Some(command.command_id.clone()),
            source_event_id: Some(command.source_event_id.clone()),
            correlation_id: command.correlation_id.clone(),
            detail: failure.map(|failure| failure.message.clone()),
            ..self.audit.entry(
                AuditAction::SheetRowWrite,
                row_subject(&command.spreadsheet_id, &command.sheet, &command.row_key),
                outcome,
            )
        }
    }

    async fn answer(
        &self,
        result: &SheetRowResult,
        command: &OwnedMessage,
    ) -> Result<(), ReplyError> {
        let key = row_subject(&result.spreadsheet_id, &result.sheet, &result.row_key);
        self.replies.publish(&key, result, command).await
    }
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

    async fn handle(&self, message: &OwnedMessage) -> Result<(), SinkError> {
        self.apply(std::slice::from_ref(message)).await
    }

    async fn handle_batch(&self, messages: &[OwnedMessage]) -> Result<(), SinkError> {
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
        if let Err(err) = self
            .report(&command, message, SheetOutcome::Rejected, Some(failure))
            .await
        {
            tracing::warn!(error = %err, command_id = command.command_id,
                "refusal not recorded or not answered to the saga");
        }
    }
}
