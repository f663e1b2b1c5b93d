//! Expressions and conditions evaluated on a decoded event.

use std::collections::BTreeMap;

use apache_avro::types::Value;
use sluice_contracts::types::ScalarValue;

use crate::rules::{Condition, Expr, FieldPath};

/// Lookup tables by name.
pub(crate) type Lookups = BTreeMap<String, BTreeMap<String, String>>;

/// The single value at `path`, unions stepped through. A field that is not
/// there (an event written with another schema version) reads as null.
pub(crate) fn field(event: &Value, path: &FieldPath) -> Result<ScalarValue, String> {
    let mut value = event;
    for segment in path.segments() {
        value = match unwrap(value) {
            Value::Record(fields) => match fields.iter().find(|(name, _)| name == segment) {
                Some((_, value)) => value,
                None => return Ok(ScalarValue::Null),
            },
            Value::Null => return Ok(ScalarValue::Null),
            _ => return Err(format!("{path}: not a record at {segment:?}")),
        };
    }
    Ok(match unwrap(value) {
        Value::Null => ScalarValue::Null,
        Value::String(text) | Value::Enum(_, text) => ScalarValue::String(text.clone()),
        Value::Uuid(uuid) => ScalarValue::String(uuid.to_string()),
        Value::Int(n) | Value::Date(n) => ScalarValue::Long(i64::from(*n)),
        Value::Long(n) | Value::TimestampMillis(n) => ScalarValue::Long(*n),
        Value::Float(x) => ScalarValue::Double(f64::from(*x)),
        Value::Double(x) => ScalarValue::Double(*x),
        Value::Boolean(b) => ScalarValue::Boolean(*b),
        other => return Err(format!("{path}: {other:?} is not a single value")),
    })
}

/// The value inside any union branches around `value`.
pub(crate) fn unwrap(value: &Value) -> &Value {
    match value {
        Value::Union(_, inner) => unwrap(inner),
        other => other,
    }
}

/// Text of a scalar for concatenation and lookup; None for null.
fn text(value: &ScalarValue) -> Option<String> {
    match value {
        ScalarValue::Null => None,
        ScalarValue::String(text) => Some(text.clone()),
        ScalarValue::Long(n) => Some(n.to_string()),
        ScalarValue::Double(x) => Some(x.to_string()),
        ScalarValue::Boolean(b) => Some(b.to_string()),
    }
}

/// A number as f64, for numeric comparison and formatting.
fn number(value: &ScalarValue) -> Option<f64> {
    match value {
        #[allow(clippy::cast_precision_loss)] // amounts, far below 2^53
        ScalarValue::Long(n) => Some(*n as f64),
        ScalarValue::Double(x) => Some(*x),
        _ => None,
    }
}

fn same(left: &ScalarValue, right: &ScalarValue) -> bool {
    match (number(left), number(right)) {
        (Some(a), Some(b)) => a == b,
        _ => left == right,
    }
}

/// Whether the condition holds for `event`.
pub(crate) fn holds(condition: &Condition, event: &Value) -> Result<bool, String> {
    let value = field(event, condition.field())?;
    Ok(match condition {
        Condition::Equals(_, expected) => same(&value, expected),
        Condition::NotEquals(_, expected) => !same(&value, expected),
        Condition::In(_, options) => options.iter().any(|option| same(&value, option)),
        Condition::Present(_, present) => (value != ScalarValue::Null) == *present,
    })
}

/// The value of `expr` for `event`.
pub(crate) fn evaluate(
    expr: &Expr,
    event: &Value,
    lookups: &Lookups,
) -> Result<ScalarValue, String> {
    match expr {
        Expr::Copy(path) => field(event, path),
        Expr::Constant(value) => Ok(value.clone()),
        Expr::Date {
            field: path,
            format,
        } => match field(event, path)? {
            ScalarValue::Null => Ok(ScalarValue::Null),
            ScalarValue::Long(ms) => chrono::DateTime::from_timestamp_millis(ms)
                .map(|at| ScalarValue::String(at.format(format).to_string()))
                .ok_or_else(|| format!("{path}: {ms} ms is out of range for a date")),
            other => Err(format!("{path}: {other:?} is not a timestamp")),
        },
        Expr::Number {
            field: path,
            divide_by,
            decimals,
        } => {
            let value = field(event, path)?;
            if value == ScalarValue::Null {
                return Ok(ScalarValue::Null);
            }
            let x = number(&value).ok_or_else(|| format!("{path}: {value:?} is not a number"))?
                / divide_by;
            Ok(match decimals {
                Some(places) => ScalarValue::String(format!("{x:.*}", usize::from(*places))),
                None => ScalarValue::Double(x),
            })
        }
        Expr::Concat { parts, separator } => {
            let mut texts = Vec::with_capacity(parts.len());
            for part in parts {
                if let Some(text) = text(&evaluate(part, event, lookups)?) {
                    texts.push(text);
                }
            }
            Ok(ScalarValue::String(texts.join(separator)))
        }
        Expr::Lookup {
            field: path,
            table,
            default,
        } => {
            let key = text(&field(event, path)?);
            let found = key
                .as_ref()
                .and_then(|key| lookups.get(table).and_then(|entries| entries.get(key)));
            match (found, default) {
                (Some(value), _) | (None, Some(value)) => Ok(ScalarValue::String(value.clone())),
                (None, None) => Err(format!(
                    "{path}: {} is not in lookup table {table:?} and the rule gives no default",
                    key.map_or_else(|| "null".to_owned(), |key| format!("{key:?}"))
                )),
            }
        }
    }
}
