//! Applying one ErpCommand, once: the record is found by its external
//! reference, then written or created. The ids of the commands applied to a
//! record are kept on the record itself, written in the same call as the
//! command's values, so the mark and the effect cannot part: a command whose
//! answer was lost, redelivered after a crash or replayed from the DLQ finds
//! its id there and is not applied again.

use serde_json::{Map, Value, json};
use sluice_contracts::types::{ErpCommand, ErpOperation, ScalarValue};
use sluice_resilience::{Classified, ErrorClass};

use crate::odoo::{OdooClient, OdooError};

/// The fields the sink keeps on every record it writes. In Odoo they are
/// custom fields (`x_` prefix) added to the model once, by Studio or a module.
#[derive(Debug, Clone)]
pub struct RecordFields {
    /// Holds the command's external reference (a Char field).
    pub external_ref: String,
    /// Holds the ids of the last commands applied (a Text field).
    pub applied_commands: String,
}

/// How many command ids a record remembers. Redeliveries come from the
/// uncommitted tail of a partition, far fewer than this per key.
const REMEMBERED_COMMANDS: usize = 50;

/// A command that reached the ERP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The record it applies to.
    pub record_id: i64,
    /// True when the record already held the command (a redelivery).
    pub already: bool,
}

/// Why a command was not applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApplyError {
    /// The ERP refused or failed the call.
    #[error(transparent)]
    Odoo(#[from] OdooError),
    /// UPDATE or CANCEL of a record that does not exist.
    #[error("{operation:?}: no {model} record has external reference {external_ref:?}")]
    NotFound {
        /// The command's operation.
        operation: ErpOperation,
        /// The model.
        model: String,
        /// The reference.
        external_ref: String,
    },
    /// Several records carry the reference: which one is meant is not ours
    /// to guess.
    #[error("several {model} records have external reference {external_ref:?}")]
    Ambiguous {
        /// The model.
        model: String,
        /// The reference.
        external_ref: String,
    },
    /// The operation is UNKNOWN (a symbol from a newer schema).
    #[error("operation UNKNOWN: the command names no operation this sink knows")]
    UnknownOperation,
}

impl ApplyError {
    /// A short code for the ErpResult (`not_found`, `ValidationError`).
    pub fn code(&self) -> String {
        match self {
            Self::Odoo(err) => err.code(),
            Self::NotFound { .. } => "not_found".into(),
            Self::Ambiguous { .. } => "ambiguous_reference".into(),
            Self::UnknownOperation => "unknown_operation".into(),
        }
    }
}

impl Classified for ApplyError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Odoo(err) => err.class(),
            _ => ErrorClass::Permanent,
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Odoo(err) => err.retry_after(),
            _ => None,
        }
    }
}

/// Applies commands through an [`OdooClient`].
pub struct Applier {
    client: OdooClient,
    fields: RecordFields,
}

impl Applier {
    /// Applies through `client`, keeping `fields` on each record.
    pub fn new(client: OdooClient, fields: RecordFields) -> Self {
        Self { client, fields }
    }

    /// Upserts the command's record by external reference: CREATE and
    /// UPSERT write it or make it, UPDATE writes it, CANCEL writes it with
    /// `state = cancel`; UPDATE and CANCEL need it to exist.
    pub async fn apply(&self, command: &ErpCommand) -> Result<Applied, ApplyError> {
        if command.operation == ErpOperation::Unknown {
            return Err(ApplyError::UnknownOperation);
        }
        let model = command.model.as_str();
        let reference = (
            self.fields.external_ref.as_str(),
            json!(command.external_ref),
        );
        let found = self
            .client
            .search_read(model, &[reference], &[&self.fields.applied_commands])
            .await?;
        let mut values = values_of(command);
        match found.as_slice() {
            [] => match command.operation {
                ErpOperation::Create | ErpOperation::Upsert => {
                    values.insert(
                        self.fields.external_ref.clone(),
                        json!(command.external_ref),
                    );
                    values.insert(
                        self.fields.applied_commands.clone(),
                        json!(command.command_id),
                    );
                    let record_id = self.client.create(model, &values).await?;
                    Ok(Applied {
                        record_id,
                        already: false,
                    })
                }
                operation => Err(ApplyError::NotFound {
                    operation,
                    model: model.to_owned(),
                    external_ref: command.external_ref.clone(),
                }),
            },
            [record] => {
                let record_id =
                    record
                        .get("id")
                        .and_then(Value::as_i64)
                        .ok_or_else(|| OdooError {
                            operation: format!("{model}.search_read"),
                            failure: crate::odoo::Failure::Malformed(
                                "a record without an id".into(),
                            ),
                        })?;
                let applied = record
                    .get(&self.fields.applied_commands)
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if applied
                    .split_whitespace()
                    .any(|id| id == command.command_id)
                {
                    return Ok(Applied {
                        record_id,
                        already: true,
                    });
                }
                values.insert(
                    self.fields.applied_commands.clone(),
                    json!(remember(applied, &command.command_id)),
                );
                self.client.write(model, record_id, &values).await?;
                Ok(Applied {
                    record_id,
                    already: false,
                })
            }
            _ => Err(ApplyError::Ambiguous {
                model: model.to_owned(),
                external_ref: command.external_ref.clone(),
            }),
        }
    }
}

/// The command's fields as Odoo values (null clears a field).
fn values_of(command: &ErpCommand) -> Map<String, Value> {
    let mut values: Map<String, Value> = command
        .fields
        .iter()
        .map(|field| {
            let value = match &field.value {
                ScalarValue::Null => Value::Bool(false),
                ScalarValue::String(text) => json!(text),
                ScalarValue::Long(n) => json!(n),
                ScalarValue::Double(x) => json!(x),
                ScalarValue::Boolean(b) => json!(b),
            };
            (field.name.clone(), value)
        })
        .collect();
    if command.operation == ErpOperation::Cancel {
        values.insert("state".into(), json!("cancel"));
    }
    values
}

/// `applied` with `command_id` added, keeping the latest ids only.
fn remember(applied: &str, command_id: &str) -> String {
    let ids: Vec<&str> = applied.split_whitespace().collect();
    let keep = ids.len().saturating_sub(REMEMBERED_COMMANDS - 1);
    let mut kept: Vec<&str> = ids[keep..].to_vec();
    kept.push(command_id);
    kept.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_remembers_the_latest_commands() {
        assert_eq!(remember("", "a"), "a");
        assert_eq!(remember("a b", "c"), "a b c");
        let many: Vec<String> = (0..60).map(|n| n.to_string()).collect();
        let kept = remember(&many.join(" "), "new");
        let ids: Vec<&str> = kept.split(' ').collect();
        assert_eq!(ids.len(), REMEMBERED_COMMANDS);
        assert_eq!(ids.first(), Some(&"11"));
        assert_eq!(ids.last(), Some(&"new"));
    }
}
