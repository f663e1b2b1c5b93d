//! The handler the consumer loop runs for each batch of SheetRowUpserts:
//! decode, upsert (each Sheets call paced and guarded by the breaker in
//! the client); what the errors mean for the batch.
//! A command a saga sent is answered on the results topic (applied, or
//! refused once the loop gives up on it), so the saga need not wait for its
//! timeout.

use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use sluice_avro::AvroCodec;
use sluice_contracts::types::{SagaStep, SheetOutcome, SheetRowResult, SheetRowUpsert};
use sluice_dlq::Failure;
use sluice_kafka::{Handler, ReplyError, ReplyPublisher};
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
                for (command, message) in commands.iter().zip(messages) {
                    if let Some(saga) = &command.saga {
                        let result = reply(command, saga, SheetOutcome::Applied, None);
                        // In the command's own trace, not the batch's.
                        self.answer(&result, message)
                            .instrument(sluice_telemetry::message_span(message))
                            .await?;
                    }
                }
                Ok(())
            }
            Err(err) => Err(SinkError::Upstream(err)),
        }
    }
}

impl SheetsSink {
    async fn answer(
        &self,
        result: &SheetRowResult,
        command: &OwnedMessage,
    ) -> Result<(), ReplyError> {
        let key = format!(
            "{}/{}/{}",
            result.spreadsheet_id, result.sheet, result.row_key
        );
        self.replies.publish(&key, result, command).await
    }
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

    /// A saga's command that is dead-lettered is answered REJECTED (best
    /// effort: the dead letter is what keeps it; the saga's timeout covers
    /// a lost answer).
    async fn given_up(&self, message: &OwnedMessage, failure: &Failure) {
        let Some(bytes) = message.payload() else {
            return;
        };
        let Ok(command) = self.codec.decode::<SheetRowUpsert>(bytes).await else {
            return;
        };
        let Some(saga) = &command.saga else { return };
        let result = reply(
            &command,
            saga,
            SheetOutcome::Rejected,
            Some(failure.message.clone()),
        );
        if let Err(err) = self.answer(&result, message).await {
            tracing::warn!(error = %err, command_id = command.command_id, "refusal not answered to the saga");
        }
    }
}
