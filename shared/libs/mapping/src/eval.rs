//! Expressions and conditions evaluated on a decoded event.

use std::collections::BTreeMap;

use apache_avro::types::Value;
use sluice_contracts::types::ScalarValue;

use crate::rules::{Condition, Expr, FieldPath, Op};

/// Lookup tables by name.
pub type Lookups = BTreeMap<String, BTreeMap<String, String>>;

/// What paths read: the event, the item of an `each` list being mapped
/// (`item.…`), and the saga sending the command (`saga.…`), if any.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The event.
    pub event: &'a Value,
    /// The item of an `each` list, if any.
    pub item: Option<&'a Value>,
    /// The saga's record ([`crate::saga::value`]), if a saga maps.
    pub saga: Option<&'a Value>,
}

impl<'a> Scope<'a> {
    /// The event alone.
    pub fn of(event: &'a Value) -> Self {
        Self {
            event,
            item: None,
            saga: None,
        }
    }

    /// The event, with `saga` as `saga.…`.
    pub fn with_saga(self, saga: &'a Value) -> Self {
        Self {
            saga: Some(saga),
            ..self
        }
    }

    /// The event, with `item` as `item.…`.
    pub fn with_item(self, item: &'a Value) -> Self {
        Self {
            item: Some(item),
            ..self
        }
    }

    /// Where `path` starts, and its segments from there.
    fn start<'p>(&self, path: &'p FieldPath) -> (&'a Value, &'p [String]) {
        match (self.item, self.saga, path.segments().split_first()) {
            (Some(item), _, Some((first, rest))) if first == "item" => (item, rest),
            (_, Some(saga), Some((first, rest))) if first == crate::saga::ROOT => (saga, rest),
            _ => (self.event, path.segments()),
        }
    }
}

/// The value at `path`, unions stepped through; `None` where a record on
/// the way lacks the field or is null.
fn value_at<'a>(scope: &Scope<'a>, path: &FieldPath) -> Result<Option<&'a Value>, String> {
    let (mut value, segments) = scope.start(path);
    for segment in segments {
        value = match unwrap(value) {
            Value::Record(fields) => match fields.iter().find(|(name, _)| name == segment) {
                Some((_, value)) => value,
                None => return Ok(None),
            },
            Value::Null => return Ok(None),
            _ => return Err(format!("{path}: not a record at {segment:?}")),
        };
    }
    Ok(Some(unwrap(value)))
}

/// The items of the list at `path`; none where it is null or absent.
pub fn items<'a>(scope: &Scope<'a>, path: &FieldPath) -> Result<&'a [Value], String> {
    match value_at(scope, path)? {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(format!("{path}: {other:?} is not a list")),
    }
}

/// The single value at `path`. A field that is not there (an event
/// written with another schema version) reads as null.
pub fn field(scope: &Scope<'_>, path: &FieldPath) -> Result<ScalarValue, String> {
    let Some(value) = value_at(scope, path)? else {
        return Ok(ScalarValue::Null);
    };
    Ok(match value {
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
pub fn unwrap(value: &Value) -> &Value {
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

/// Whether the condition holds in `scope`.
pub fn holds(condition: &Condition, scope: &Scope<'_>) -> Result<bool, String> {
    let value = field(scope, condition.field())?;
    Ok(match condition {
        Condition::Equals(_, expected) => same(&value, expected),
        Condition::NotEquals(_, expected) => !same(&value, expected),
        Condition::In(_, options) => options.iter().any(|option| same(&value, option)),
        Condition::Present(_, present) => (value != ScalarValue::Null) == *present,
    })
}

/// `x / divide_by`: text with `decimals` places when given, else a double.
fn scaled(x: f64, divide_by: f64, decimals: Option<u8>) -> ScalarValue {
    let x = x / divide_by;
    match decimals {
        Some(places) => ScalarValue::String(format!("{x:.*}", usize::from(places))),
        None => ScalarValue::Double(x),
    }
}

/// The value of `expr` in `scope`.
pub fn evaluate(expr: &Expr, scope: &Scope<'_>, lookups: &Lookups) -> Result<ScalarValue, String> {
    match expr {
        Expr::Copy {
            field: path,
            default,
        } => match (field(scope, path)?, default) {
            (ScalarValue::Null, Some(default)) => Ok(default.clone()),
            (value, _) => Ok(value),
        },
        Expr::Constant(value) => Ok(value.clone()),
        Expr::Date {
            field: path,
            format,
        } => match field(scope, path)? {
            ScalarValue::Null => Ok(ScalarValue::Null),
            ScalarValue::Long(ms) => chrono::DateTime::from_timestamp_millis(ms)
                .map(|at| {
                    ScalarValue::String(at.format_with_items(format.items().iter()).to_string())
                })
                .ok_or_else(|| format!("{path}: {ms} ms is out of range for a date")),
            other => Err(format!("{path}: {other:?} is not a timestamp")),
        },
        Expr::Number {
            field: path,
            divide_by,
            decimals,
        } => {
            let value = field(scope, path)?;
            if value == ScalarValue::Null {
                return Ok(ScalarValue::Null);
            }
            let x = number(&value).ok_or_else(|| format!("{path}: {value:?} is not a number"))?;
            Ok(scaled(x, *divide_by, *decimals))
        }
        Expr::Arithmetic {
            op,
            parts,
            divide_by,
            decimals,
        } => {
            let mut result = match op {
                Op::Sum => 0.0,
                Op::Product => 1.0,
            };
            for part in parts {
                let value = evaluate(part, scope, lookups)?;
                if value == ScalarValue::Null {
                    return Ok(ScalarValue::Null);
                }
                // A part with decimals is text: read back as its number.
                let x = number(&value)
                    .or_else(|| text(&value).and_then(|text| text.parse().ok()))
                    .ok_or_else(|| format!("{value:?} is not a number"))?;
                match op {
                    Op::Sum => result += x,
                    Op::Product => result *= x,
                }
            }
            if !result.is_finite() {
                return Err(format!("{op:?} of {} parts is not finite", parts.len()));
            }
            Ok(scaled(result, *divide_by, *decimals))
        }
        Expr::Concat { parts, separator } => {
            let mut texts = Vec::with_capacity(parts.len());
            for part in parts {
                if let Some(text) = text(&evaluate(part, scope, lookups)?) {
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
            let key = text(&field(scope, path)?);
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
