//! The handler the consumer loop runs for each ErpCommand: decode, apply,
//! report the outcome (a result for the sender, a record for the audit
//! trail); what the errors mean for the message.

use std::collections::HashMap;
use std::sync::Mutex;

use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use sluice_avro::AvroCodec;
use sluice_contracts::types::{
    AuditAction, AuditRecord, DeadLetterClass, ErpCommand, ErpError, ErpOutcome, ErpResult,
};
use sluice_dlq::Failure;
use sluice_kafka::{AuditLog, Handler, Order, Owed, ReplyError, ReplyPublisher};
use sluice_resilience::{Classified, ErrorClass};

use crate::apply::{Applied, Applier, ApplyError};

/// Why a command was not settled (this time).
pub type SinkError = sluice_kafka::SinkError<ApplyError>;

/// Commands whose attempts are counted at once; beyond, the count restarts
/// (it only informs the result).
const COUNTED_COMMANDS: usize = 10_000;

/// Applies ErpCommands and reports their outcomes.
pub struct ErpSink {
    codec: AvroCodec,
    applier: Applier,
    results: ReplyPublisher,
    audit: AuditLog,
    /// Tries so far per command id, for the result.
    attempts: Mutex<HashMap<String, i32>>,
}

impl ErpSink {
    /// Decodes with `codec`, applies with `applier`, reports through
    /// `results` and records each outcome in `audit`.
    pub fn new(
        codec: AvroCodec,
        applier: Applier,
        results: ReplyPublisher,
        audit: AuditLog,
    ) -> Self {
        Self {
            codec,
            applier,
            results,
            audit,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    fn attempt(&self, command_id: &str) -> i32 {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if attempts.len() >= COUNTED_COMMANDS {
            attempts.clear();
        }
        let count = attempts.entry(command_id.to_owned()).or_default();
        *count += 1;
        *count
    }

    /// The result to the sender and the record of the audit trail, both
    /// to be on Kafka before the command's offset is stored.
    async fn report(
        &self,
        command: &ErpCommand,
        result: &ErpResult,
        message: &OwnedMessage,
    ) -> Result<Owed, ReplyError> {
        let audit = self.audit_record(command, result);
        let (answer, record) = tokio::try_join!(
            self.results
                .owe(&result.external_ref, result, Some(message)),
            self.audit.owe(&audit, Some(message)),
        )?;
        Ok(answer.and(record))
    }

    fn audit_record(&self, command: &ErpCommand, result: &ErpResult) -> AuditRecord {
        let outcome = match (&result.error, result.outcome) {
            (Some(error), _) if error.code == ErpError::RETRIES_EXHAUSTED => "RETRIES_EXHAUSTED",
            (_, ErpOutcome::Applied) => "APPLIED",
            (_, ErpOutcome::AlreadyApplied) => "ALREADY_APPLIED",
            _ => "REJECTED",
        };
        AuditRecord {
            command_id: Some(command.command_id.clone()),
            source_event_id: command.source_event_id.clone(),
            correlation_id: command.correlation_id.clone(),
            record_id: result.erp_record_id.map(|id| id.to_string()),
            detail: result
                .error
                .as_ref()
                .map(|error| format!("{}: {}", error.code, error.message)),
            ..self.audit.entry(
                AuditAction::ErpWrite,
                format!("{}/{}", command.model, command.external_ref),
                outcome,
            )
        }
    }

    fn settled(&self, command_id: &str) {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        attempts.remove(command_id);
    }
}

impl Handler for ErpSink {
    type Error = SinkError;

    /// Commands are keyed by their external reference: those of one
    /// record are applied in order, those of others at once.
    const ORDER: Order = Order::Key;

    async fn handle(&self, message: &OwnedMessage) -> Result<Owed, SinkError> {
        let bytes = message.payload().ok_or(SinkError::Empty)?;
        let command: ErpCommand = self.codec.decode(bytes).await?;
        let attempts = self.attempt(&command.command_id);
        let applied = match self.applier.apply(&command).await {
            Err(err) if err.class() != ErrorClass::Permanent => {
                return Err(SinkError::Upstream(err));
            }
            applied => applied,
        };
        // Applied or refused for good: either way the sender hears of it.
        let result = outcome(&command, &applied, attempts);
        let report = self.report(&command, &result, message).await?;
        self.settled(&command.command_id);
        match applied {
            Ok(Applied { record_id, already }) => {
                tracing::debug!(
                    record_id,
                    already,
                    external_ref = command.external_ref,
                    "applied"
                );
                Ok(report)
            }
            // The loop dead-letters it, with the error; the refusal is on
            // Kafka first.
            Err(err) => {
                report.send_now().await?;
                Err(SinkError::Upstream(err))
            }
        }
    }

    /// A refusal was answered when it came; a command that ran out of
    /// retries is answered here, so a saga waiting on it need not wait for
    /// its step's timeout. An undecodable message has nobody to answer.
    async fn given_up(&self, message: &OwnedMessage, failure: &Failure) {
        if failure.class != DeadLetterClass::RetriesExhausted {
            return;
        }
        let Some(bytes) = message.payload() else {
            return;
        };
        let Ok(command) = self.codec.decode::<ErpCommand>(bytes).await else {
            return;
        };
        let error = ErpError {
            code: ErpError::RETRIES_EXHAUSTED.into(),
            message: failure.message.clone(),
        };
        let attempts = i32::try_from(failure.attempts).unwrap_or(i32::MAX);
        let result = answer(&command, attempts, ErpOutcome::Rejected, None, Some(error));
        let reported = match self.report(&command, &result, message).await {
            Ok(report) => report.send_now().await,
            Err(err) => Err(err),
        };
        if let Err(err) = reported {
            tracing::warn!(command_id = command.command_id, error = %err,
                "no REJECTED result for a command out of retries; its dead letter is written");
        }
        self.settled(&command.command_id);
    }
}

/// The ErpResult of a command that was applied or refused.
fn outcome(
    command: &ErpCommand,
    applied: &Result<Applied, ApplyError>,
    attempts: i32,
) -> ErpResult {
    match applied {
        Ok(Applied { record_id, already }) => {
            let outcome = if *already {
                ErpOutcome::AlreadyApplied
            } else {
                ErpOutcome::Applied
            };
            answer(command, attempts, outcome, Some(*record_id), None)
        }
        Err(err) => answer(
            command,
            attempts,
            ErpOutcome::Rejected,
            err.record_left(),
            Some(ErpError {
                code: err.code(),
                message: err.to_string(),
            }),
        ),
    }
}

fn answer(
    command: &ErpCommand,
    attempts: i32,
    outcome: ErpOutcome,
    erp_record_id: Option<i64>,
    error: Option<ErpError>,
) -> ErpResult {
    ErpResult {
        command_id: command.command_id.clone(),
        model: command.model.clone(),
        operation: command.operation,
        external_ref: command.external_ref.clone(),
        outcome,
        erp_record_id,
        error,
        attempts,
        completed_at: sluice_contracts::now_millis(),
        saga: command.saga.clone(),
        correlation_id: command.correlation_id.clone(),
        causation_id: Some(command.command_id.clone()),
    }
}
