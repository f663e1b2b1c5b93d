//! Replies from the sinks' result topics, read as saga replies.

use sluice_contracts::types::{
    ErpError, ErpOperation, ErpOutcome, ErpResult, SagaStep, SheetOutcome, SheetRowResult,
};
use uuid::Uuid;

use crate::engine::{Outcome, Reply};

/// Why a result is not a reply.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// Its saga id or command id is not a UUID.
    #[error("{field} {value:?} is not a UUID")]
    NotUuid {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// An outcome this orchestrator does not know (a newer sink?).
    #[error("outcome UNKNOWN")]
    UnknownOutcome,
}

/// The saga reply in an ErpResult; None when no saga sent the command.
pub fn from_erp(result: &ErpResult) -> Result<Option<Reply>, ReplyError> {
    let Some(step) = &result.saga else {
        return Ok(None);
    };
    let outcome = match result.outcome {
        ErpOutcome::Applied | ErpOutcome::AlreadyApplied => Outcome::Done,
        // Cancelling what the ERP never recorded leaves nothing to undo.
        ErpOutcome::Rejected
            if result.operation == ErpOperation::Cancel
                && result.error.as_ref().is_some_and(|e| e.code == "not_found") =>
        {
            Outcome::Done
        }
        ErpOutcome::Rejected => {
            let reason = result.error.as_ref().map_or_else(
                || "refused".to_owned(),
                |e| format!("{}: {}", e.code, e.message),
            );
            // A record was made before the refusal (its confirmation
            // refused), or the retries ran out with no telling.
            let left_something = result.erp_record_id.is_some()
                || result
                    .error
                    .as_ref()
                    .is_some_and(|e| e.code == ErpError::RETRIES_EXHAUSTED);
            if left_something {
                Outcome::Unfinished(reason)
            } else {
                Outcome::Refused(reason)
            }
        }
        ErpOutcome::Unknown => return Err(ReplyError::UnknownOutcome),
    };
    reply(step, &result.command_id, outcome).map(Some)
}

/// The saga reply in a SheetRowResult; None when no saga sent the command.
pub fn from_sheet(result: &SheetRowResult) -> Result<Option<Reply>, ReplyError> {
    let Some(step) = &result.saga else {
        return Ok(None);
    };
    let outcome = match result.outcome {
        SheetOutcome::Applied => Outcome::Done,
        SheetOutcome::Rejected => {
            Outcome::Refused(result.error.clone().unwrap_or_else(|| "refused".to_owned()))
        }
        SheetOutcome::Unknown => return Err(ReplyError::UnknownOutcome),
    };
    reply(step, &result.command_id, outcome).map(Some)
}

fn reply(step: &SagaStep, command_id: &str, outcome: Outcome) -> Result<Reply, ReplyError> {
    let uuid = |field, value: &str| {
        Uuid::parse_str(value).map_err(|_| ReplyError::NotUuid {
            field,
            value: value.to_owned(),
        })
    };
    Ok(Reply {
        saga_id: uuid("saga.saga_id", &step.saga_id)?,
        step: step.step.clone(),
        command_id: uuid("command_id", command_id)?,
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(operation: ErpOperation, outcome: ErpOutcome, code: Option<&str>) -> ErpResult {
        ErpResult {
            command_id: "0b7e2f0c-5a43-4c9e-9d6f-2b1f6a0d9e11".into(),
            model: "sale.order".into(),
            operation,
            external_ref: "o-1".into(),
            outcome,
            erp_record_id: None,
            error: code.map(|code| ErpError {
                code: code.into(),
                message: "no".into(),
            }),
            attempts: 1,
            completed_at: 0,
            saga: Some(SagaStep {
                saga_id: "0b7e2f0c-5a43-4c9e-9d6f-2b1f6a0d9e12".into(),
                step: "reserve-in-erp".into(),
                attempt: 1,
            }),
            correlation_id: None,
            causation_id: None,
        }
    }

    #[test]
    fn erp_outcomes_become_saga_outcomes() {
        let done = from_erp(&result(
            ErpOperation::Create,
            ErpOutcome::AlreadyApplied,
            None,
        ));
        assert_eq!(done.unwrap().unwrap().outcome, Outcome::Done);
        let refused = from_erp(&result(
            ErpOperation::Create,
            ErpOutcome::Rejected,
            Some("V"),
        ));
        assert_eq!(
            refused.unwrap().unwrap().outcome,
            Outcome::Refused("V: no".into())
        );
        let mut confirm_refused = result(ErpOperation::Create, ErpOutcome::Rejected, Some("U"));
        confirm_refused.erp_record_id = Some(7);
        assert_eq!(
            from_erp(&confirm_refused).unwrap().unwrap().outcome,
            Outcome::Unfinished("U: no".into())
        );
        let out_of_retries = from_erp(&result(
            ErpOperation::Create,
            ErpOutcome::Rejected,
            Some("retries_exhausted"),
        ));
        assert_eq!(
            out_of_retries.unwrap().unwrap().outcome,
            Outcome::Unfinished("retries_exhausted: no".into())
        );
        let nothing_to_undo = from_erp(&result(
            ErpOperation::Cancel,
            ErpOutcome::Rejected,
            Some("not_found"),
        ));
        assert_eq!(nothing_to_undo.unwrap().unwrap().outcome, Outcome::Done);
        let mut foreign = result(ErpOperation::Create, ErpOutcome::Applied, None);
        foreign.saga = None;
        assert!(from_erp(&foreign).unwrap().is_none());
        foreign.saga = Some(SagaStep {
            saga_id: "nope".into(),
            step: "x".into(),
            attempt: 1,
        });
        assert_eq!(
            from_erp(&foreign).unwrap_err().to_string(),
            "saga.saga_id \"nope\" is not a UUID"
        );
    }
}
