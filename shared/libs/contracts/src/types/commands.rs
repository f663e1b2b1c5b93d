//! The sink commands and their results: SheetRowUpsert, ErpCommand, ErpResult.

use serde::{Deserialize, Serialize};

/// A cell or field value: the `["null", "string", "long", "double",
/// "boolean"]` union of the command schemas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ScalarValue {
    /// Clears the cell or field.
    Null,
    /// Text.
    String(String),
    /// A whole number.
    Long(i64),
    /// A decimal number.
    Double(f64),
    /// True or false.
    Boolean(bool),
}

/// `dev.sluice.saga.SagaStep`: the saga step a command belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaStep {
    /// Saga instance id.
    pub saga_id: String,
    /// Step name.
    pub step: String,
    /// 1 for the first try, counting up.
    pub attempt: i32,
}

/// `dev.sluice.sheets.SheetRowUpsert` (schemas/sheets/SheetRowUpsert.avsc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SheetRowUpsert {
    /// Idempotency key.
    pub command_id: String,
    /// Google spreadsheet id.
    pub spreadsheet_id: String,
    /// Sheet (tab) title.
    pub sheet: String,
    /// Value of the key column.
    pub row_key: String,
    /// Cells in column order; the first is the key column.
    pub cells: Vec<SheetCell>,
    /// The domain event it comes from.
    pub source_event_id: String,
    /// When that event happened, ms since the epoch.
    pub occurred_at: i64,
    /// Set when a saga sent it.
    pub saga: Option<SagaStep>,
    /// The flow it belongs to (the source event's correlation id).
    pub correlation_id: Option<String>,
    /// The event, command or reply that caused it.
    pub causation_id: Option<String>,
}

/// `dev.sluice.sheets.SheetCell`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SheetCell {
    /// Column header.
    pub column: String,
    /// The value.
    pub value: ScalarValue,
}

/// `dev.sluice.sheets.SheetOutcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SheetOutcome {
    /// An outcome this reader does not know.
    Unknown,
    /// The row holds the command's cells, or newer ones where a newer
    /// upsert wrote them.
    Applied,
    /// Refused for good, or out of retries.
    Rejected,
}

/// `dev.sluice.sheets.SheetRowResult` (schemas/sheets/SheetRowResult.avsc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SheetRowResult {
    /// The command answered.
    pub command_id: String,
    /// Its spreadsheet.
    pub spreadsheet_id: String,
    /// Its sheet.
    pub sheet: String,
    /// Its row key.
    pub row_key: String,
    /// How it ended.
    pub outcome: SheetOutcome,
    /// Why it was rejected.
    pub error: Option<String>,
    /// When the outcome was known, ms since the epoch.
    pub completed_at: i64,
    /// Copied from the command.
    pub saga: Option<SagaStep>,
    /// Copied from the command.
    pub correlation_id: Option<String>,
    /// The command answered.
    pub causation_id: Option<String>,
}

/// `dev.sluice.erp.ErpOperation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErpOperation {
    /// An operation this reader does not know.
    Unknown,
    /// Create the record.
    Create,
    /// Update the record.
    Update,
    /// Create or update.
    Upsert,
    /// Cancel the record.
    Cancel,
}

/// `dev.sluice.erp.ErpCommand` (schemas/erp/ErpCommand.avsc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErpCommand {
    /// Idempotency key.
    pub command_id: String,
    /// ERP model, e.g. `sale.order`.
    pub model: String,
    /// What to do.
    pub operation: ErpOperation,
    /// Our reference of the record; also the Kafka key.
    pub external_ref: String,
    /// Field values, in order.
    pub fields: Vec<ErpField>,
    /// The domain event that caused it.
    pub source_event_id: Option<String>,
    /// When it was issued, ms since the epoch.
    pub issued_at: i64,
    /// Set when a saga sent it.
    pub saga: Option<SagaStep>,
    /// The flow it belongs to (the source event's correlation id).
    pub correlation_id: Option<String>,
    /// The event, command or reply that caused it.
    pub causation_id: Option<String>,
}

/// `dev.sluice.erp.ErpField`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErpField {
    /// Field name in the ERP model.
    pub name: String,
    /// The value.
    pub value: ScalarValue,
}

/// `dev.sluice.erp.ErpOutcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErpOutcome {
    /// An outcome this reader does not know.
    Unknown,
    /// Done now.
    Applied,
    /// A redelivery of a command done before.
    AlreadyApplied,
    /// Refused for good.
    Rejected,
}

/// `dev.sluice.erp.ErpError`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErpError {
    /// ERP error name.
    pub code: String,
    /// ERP error message.
    pub message: String,
}

impl ErpError {
    /// The code of a command erp-sink gave up on once its retries ran out.
    pub const RETRIES_EXHAUSTED: &'static str = "retries_exhausted";
}

/// `dev.sluice.erp.ErpResult` (schemas/erp/ErpResult.avsc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErpResult {
    /// The command answered.
    pub command_id: String,
    /// Its model.
    pub model: String,
    /// Its operation.
    pub operation: ErpOperation,
    /// Its external reference; also the Kafka key.
    pub external_ref: String,
    /// How it ended.
    pub outcome: ErpOutcome,
    /// The ERP record written, when there is one.
    pub erp_record_id: Option<i64>,
    /// Why it was rejected.
    pub error: Option<ErpError>,
    /// Calls made to the ERP.
    pub attempts: i32,
    /// When the outcome was known, ms since the epoch.
    pub completed_at: i64,
    /// Copied from the command.
    pub saga: Option<SagaStep>,
    /// Copied from the command.
    pub correlation_id: Option<String>,
    /// The command answered.
    pub causation_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::round_trip;

    fn saga() -> Option<SagaStep> {
        Some(SagaStep {
            saga_id: "0b7e2f0c-5a43-4c9e-9d6f-2b1f6a0d9e11".into(),
            step: "reserve".into(),
            attempt: 1,
        })
    }

    #[test]
    fn sheet_row_upsert_round_trips_with_every_kind_of_cell() {
        let cells = [
            ScalarValue::Null,
            ScalarValue::String("Ada".into()),
            ScalarValue::Long(3),
            ScalarValue::Double(12.5),
            ScalarValue::Boolean(true),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, value)| SheetCell {
            column: format!("c{i}"),
            value,
        })
        .collect();
        round_trip(
            "sheets.rows.v1",
            &SheetRowUpsert {
                command_id: "0b7e2f0c-5a43-4c9e-9d6f-2b1f6a0d9e11".into(),
                spreadsheet_id: "sheet-1".into(),
                sheet: "Orders".into(),
                row_key: "order-1".into(),
                cells,
                source_event_id: "0b7e2f0c-5a43-4c9e-9d6f-2b1f6a0d9e12".into(),
                occurred_at: 1,
                saga: saga(),
                correlation_id: Some("order-1".into()),
                causation_id: Some("0b7e2f0c-5a43-4c9e-9d6f-2b1f6a0d9e12".into()),
            },
        );
    }

    #[test]
    fn sheet_row_result_round_trips() {
        round_trip(
            "sheets.results.v1",
            &SheetRowResult {
                command_id: "0b7e2f0c-5a43-4c9e-9d6f-2b1f6a0d9e11".into(),
                spreadsheet_id: "sheet-1".into(),
                sheet: "Orders".into(),
                row_key: "order-1".into(),
                outcome: SheetOutcome::Rejected,
                error: Some("Unable to parse range".into()),
                completed_at: 4,
                saga: saga(),
                correlation_id: Some("order-1".into()),
                causation_id: Some("0b7e2f0c-5a43-4c9e-9d6f-2b1f6a0d9e11".into()),
            },
        );
    }

    #[test]
    fn erp_command_and_result_round_trip() {
        round_trip(
            "erp.commands.v1",
            &ErpCommand {
                command_id: "0b7e2f0c-5a43-4c9e-9d6f-2b1f6a0d9e11".into(),
                model: "sale.order".into(),
                operation: ErpOperation::Create,
                external_ref: "order-1".into(),
                fields: vec![
                    ErpField {
                        name: "partner_ref".into(),
                        value: ScalarValue::String("c-1".into()),
                    },
                    ErpField {
                        name: "amount_total".into(),
                        value: ScalarValue::Double(29.99),
                    },
                ],
                source_event_id: None,
                issued_at: 2,
                saga: saga(),
                correlation_id: None,
                causation_id: Some("step".into()),
            },
        );
        round_trip(
            "erp.results.v1",
            &ErpResult {
                command_id: "0b7e2f0c-5a43-4c9e-9d6f-2b1f6a0d9e11".into(),
                model: "sale.order".into(),
                operation: ErpOperation::Cancel,
                external_ref: "order-1".into(),
                outcome: ErpOutcome::Rejected,
                erp_record_id: Some(42),
                error: Some(ErpError {
                    code: "odoo.exceptions.UserError".into(),
                    message: "locked".into(),
                }),
                attempts: 2,
                completed_at: 3,
                saga: None,
                correlation_id: Some("order-1".into()),
                causation_id: None,
            },
        );
    }
}
