//! A target's command made from a decoded event: the sheet row or the ERP
//! command a rule (or a saga step) names, its values evaluated in a scope.

use apache_avro::types::Value;
use sluice_contracts::types::{
    ErpCommand, ErpField, ErpOperation, SagaStep, ScalarValue, SheetCell, SheetRowUpsert,
};

use crate::eval::{Lookups, Scope, evaluate, items};
use crate::rules::{Assignment, ErpFieldRule, Expr, FieldPath, Target};

/// The most items of one list a rule maps: a larger list is more likely a
/// mistake than an order (and would make one transaction of thousands of
/// commands, or an ERP command past Kafka's size).
pub const MAX_ITEMS: usize = 1_000;

/// The items of the list at `list`, at most [`MAX_ITEMS`].
pub fn listed<'a>(scope: &Scope<'a>, list: &FieldPath) -> Result<&'a [Value], String> {
    let found = items(scope, list)?;
    if found.len() > MAX_ITEMS {
        return Err(format!(
            "{list} holds {} items, more than the {MAX_ITEMS} a rule maps",
            found.len()
        ));
    }
    Ok(found)
}

/// Where a command comes from: the same on every redelivery, so the
/// command made again is the same.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    /// The command's idempotency key.
    pub command_id: String,
    /// The event it is made from (its source and cause).
    pub event_id: &'a str,
    /// The flow's id.
    pub correlation_id: Option<&'a str>,
    /// As of when: the sheet row's version, the ERP command's issue time.
    pub occurred_at: i64,
    /// The saga step it does, if a saga sends it.
    pub saga: Option<SagaStep>,
}

/// A command a target made.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A row: its message key (`spreadsheet/sheet/row key`) and the upsert.
    Sheet(String, SheetRowUpsert),
    /// An ERP command (keyed by its external reference).
    Erp(ErpCommand),
}

/// The command `target` makes in `scope`, or which value failed and why.
pub fn command(
    target: &Target,
    scope: &Scope<'_>,
    lookups: &Lookups,
    origin: Origin<'_>,
) -> Result<Command, String> {
    let making = Making {
        scope: *scope,
        lookups,
    };
    match target {
        Target::Sheet {
            spreadsheet,
            sheet,
            key,
            columns,
        } => making.sheet_row(spreadsheet, sheet, key, columns, origin),
        Target::Erp {
            model,
            operation,
            external_ref,
            fields,
        } => making
            .erp_command(model, *operation, external_ref, fields, origin)
            .map(Command::Erp),
    }
}

struct Making<'a> {
    scope: Scope<'a>,
    lookups: &'a Lookups,
}

impl Making<'_> {
    /// Text for a key or reference; null is refused.
    fn text(&self, what: &str, expr: &Expr) -> Result<String, String> {
        match evaluate(expr, &self.scope, self.lookups)? {
            ScalarValue::String(text) if !text.is_empty() => Ok(text),
            ScalarValue::Long(n) => Ok(n.to_string()),
            other => Err(format!("{what} is {other:?}; it must be a non-empty value")),
        }
    }

    /// The assignments' values, paths read in `scope`.
    fn assignments(
        &self,
        scope: &Scope<'_>,
        assignments: &[Assignment],
    ) -> Result<Vec<(String, ScalarValue)>, String> {
        assignments
            .iter()
            .map(|a| {
                evaluate(&a.value, scope, self.lookups)
                    .map(|value| (a.name.clone(), value))
                    .map_err(|reason| format!("{:?}: {reason}", a.name))
            })
            .collect()
    }

    fn sheet_row(
        &self,
        spreadsheet: &str,
        sheet: &str,
        key: &Expr,
        columns: &[Assignment],
        origin: Origin<'_>,
    ) -> Result<Command, String> {
        let row_key = self.text("the row key", key)?;
        let cells = self
            .assignments(&self.scope, columns)?
            .into_iter()
            .map(|(column, value)| SheetCell { column, value })
            .collect();
        Ok(Command::Sheet(
            format!("{spreadsheet}/{sheet}/{row_key}"),
            SheetRowUpsert {
                command_id: origin.command_id,
                spreadsheet_id: spreadsheet.to_owned(),
                sheet: sheet.to_owned(),
                row_key,
                cells,
                source_event_id: origin.event_id.to_owned(),
                occurred_at: origin.occurred_at,
                saga: origin.saga,
                correlation_id: origin.correlation_id.map(str::to_owned),
                causation_id: Some(origin.event_id.to_owned()),
            },
        ))
    }

    fn erp_command(
        &self,
        model: &str,
        operation: ErpOperation,
        external_ref: &Expr,
        fields: &[ErpFieldRule],
        origin: Origin<'_>,
    ) -> Result<ErpCommand, String> {
        let mut values = Vec::with_capacity(fields.len());
        for field in fields {
            match field {
                ErpFieldRule::One(assignment) => {
                    values.extend(self.assignments(&self.scope, std::slice::from_ref(assignment))?);
                }
                ErpFieldRule::Each { name, each, fields } => {
                    let list = listed(&self.scope, each)
                        .map_err(|reason| format!("{name:?}: {reason}"))?;
                    for (i, item) in list.iter().enumerate() {
                        let named = self.assignments(&self.scope.with_item(item), fields)?;
                        let named = named.into_iter();
                        values.extend(
                            named.map(|(field, value)| (format!("{name}.{i}.{field}"), value)),
                        );
                    }
                }
            }
        }
        Ok(ErpCommand {
            command_id: origin.command_id,
            model: model.to_owned(),
            operation,
            external_ref: self.text("external_ref", external_ref)?,
            fields: values
                .into_iter()
                .map(|(name, value)| ErpField { name, value })
                .collect(),
            source_event_id: Some(origin.event_id.to_owned()),
            // The event's time, not the clock's: a redelivered event makes
            // the very same command.
            issued_at: origin.occurred_at,
            saga: origin.saga,
            correlation_id: origin.correlation_id.map(str::to_owned),
            causation_id: Some(origin.event_id.to_owned()),
        })
    }
}
