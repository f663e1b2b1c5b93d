//! Field values as the ORM converts them (odoo/fields.py's
//! `convert_to_cache`), and Odoo's exceptions with their messages.

use serde_json::{Value, json};

use super::schema::{Field, Kind, Model};

/// An Odoo exception: its class and message, as JSON-RPC's `error.data`
/// names them.
#[derive(Debug, Clone, PartialEq)]
pub struct OdooError {
    /// `builtins.ValueError`, `odoo.exceptions.UserError`, …
    pub name: &'static str,
    /// `str(exception)`.
    pub message: String,
}

impl OdooError {
    /// An exception of class `name`.
    pub fn new(name: &'static str, message: impl Into<String>) -> Self {
        Self {
            name,
            message: message.into(),
        }
    }

    /// `ValueError`.
    pub fn value(message: impl Into<String>) -> Self {
        Self::new("builtins.ValueError", message)
    }

    /// `UserError`.
    pub fn user(message: impl Into<String>) -> Self {
        Self::new("odoo.exceptions.UserError", message)
    }

    /// models.py: `ValueError("Invalid field %r on model %r")`.
    pub fn invalid_field(field: &str, model: &str) -> Self {
        Self::value(format!(
            "Invalid field {} on model {}",
            repr(&json!(field)),
            repr(&json!(model))
        ))
    }

    /// fields.py: `ValueError("Wrong value for %s: %r")`.
    pub fn wrong_value(model: &Model, field: &Field, value: &Value) -> Self {
        Self::value(format!(
            "Wrong value for {}.{}: {}",
            model.name,
            field.name,
            repr(value)
        ))
    }

    /// service/model.py `_as_validation_error`: a NOT NULL column left empty.
    pub fn not_null(model: &Model, field: &Field) -> Self {
        Self::new(
            "odoo.exceptions.ValidationError",
            format!(
                "The operation cannot be completed:\n- Create/update: a mandatory field is not set.\n- Delete: another model requires the record being deleted. If possible, archive it instead.\n\nModel: {} ({})\nField: {} ({})\n",
                model.description, model.name, field.string, field.name
            ),
        )
    }

    /// service/model.py `_as_validation_error`: a foreign key to no row.
    pub fn foreign_key(model: &Model, field: &Field) -> Self {
        Self::new(
            "odoo.exceptions.ValidationError",
            format!(
                "The operation cannot be completed: another model requires the record being deleted. If possible, archive it instead.\n\nModel: {} ({})\nConstraint: {}_{}_fkey\n",
                model.description,
                model.name,
                model.table(),
                field.name
            ),
        )
    }

    /// models.py: records that are not there.
    pub fn missing(model: &str, ids: &[i64]) -> Self {
        let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
        Self::new(
            "odoo.exceptions.MissingError",
            format!(
                "Record does not exist or has been deleted.\n(Record: {model}({},), User: 2)",
                ids.join(", ")
            ),
        )
    }
}

/// Python's `repr` of a JSON value, as Odoo's messages show values.
pub fn repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(repr).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("'{k}': {}", repr(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// Python's truthiness: `False`, `None`, `0`, `""`, `[]`, `{}` are false.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Bool(true) => true,
    }
}

/// The value the ORM stores for `value` written to a scalar or many2one
/// field (`false` for empty); `exists` says whether a many2one target is
/// there.
pub fn convert(
    model: &Model,
    field: &Field,
    value: &Value,
    exists: impl Fn(&str, i64) -> bool,
) -> Result<Value, OdooError> {
    if field.kind != Kind::Boolean && matches!(value, Value::Null | Value::Bool(false)) {
        return Ok(Value::Bool(false));
    }
    match field.kind {
        Kind::Char | Kind::Text | Kind::Html => match value {
            Value::String(s) => Ok(json!(s)),
            Value::Number(n) => Ok(json!(n.to_string())),
            Value::Bool(true) => Ok(json!("True")),
            _ => Err(OdooError::wrong_value(model, field, value)),
        },
        Kind::Integer => match value {
            Value::Number(n) => Ok(json!(n.as_i64().unwrap_or_else(|| {
                // int(1.9) == 1
                #[allow(clippy::cast_possible_truncation)]
                let truncated = n.as_f64().unwrap_or_default() as i64;
                truncated
            }))),
            Value::Bool(true) => Ok(json!(1)),
            Value::String(s) => s.trim().parse::<i64>().map(|n| json!(n)).map_err(|_| {
                OdooError::value(format!(
                    "invalid literal for int() with base 10: {}",
                    repr(value)
                ))
            }),
            _ => Err(OdooError::wrong_value(model, field, value)),
        },
        Kind::Float | Kind::Monetary => match value {
            Value::Number(n) => Ok(json!(n.as_f64().unwrap_or_default())),
            Value::Bool(true) => Ok(json!(1.0)),
            Value::String(s) => s.trim().parse::<f64>().map(|x| json!(x)).map_err(|_| {
                OdooError::value(format!(
                    "could not convert string to float: {}",
                    repr(value)
                ))
            }),
            _ => Err(OdooError::wrong_value(model, field, value)),
        },
        Kind::Boolean => Ok(Value::Bool(truthy(value))),
        Kind::Date => date(value, false),
        Kind::Datetime => date(value, true),
        Kind::Selection(choices) => match value.as_str() {
            Some(v) if choices.iter().any(|(key, _)| *key == v) => Ok(json!(v)),
            _ => Err(OdooError::wrong_value(model, field, value)),
        },
        Kind::Many2one(comodel) => {
            // (id, name) pairs are accepted too, as the ORM does.
            let id = match value {
                Value::Number(n) => n.as_i64(),
                Value::Array(pair) => pair.first().and_then(Value::as_i64),
                _ => None,
            };
            match id {
                Some(id) if exists(comodel, id) => Ok(json!(id)),
                Some(_) => Err(OdooError::foreign_key(model, field)),
                None => Err(OdooError::wrong_value(model, field, value)),
            }
        }
        Kind::One2many(..) => Err(OdooError::wrong_value(model, field, value)),
    }
}

/// fields.Date / fields.Datetime `to_date` / `to_datetime`: the string's
/// first 10 / 19 characters parsed by strptime.
fn date(value: &Value, with_time: bool) -> Result<Value, OdooError> {
    let format = if with_time {
        "%Y-%m-%d %H:%M:%S"
    } else {
        "%Y-%m-%d"
    };
    let refused = || {
        OdooError::value(format!(
            "time data {} does not match format '{format}'",
            repr(value)
        ))
    };
    let text = value.as_str().ok_or_else(refused)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let day = text.get(..10).ok_or_else(refused)?;
    let parts: Vec<&str> = day.split('-').collect();
    let valid_day = matches!(parts.as_slice(), [y, m, d] if y.len() == 4 && digits(y) && digits(m) && digits(d)
        && m.parse::<u32>().is_ok_and(|m| (1..=12).contains(&m))
        && d.parse::<u32>().is_ok_and(|d| (1..=31).contains(&d)));
    if !valid_day {
        return Err(refused());
    }
    if !with_time || text.len() == 10 {
        return Ok(json!(if with_time {
            format!("{day} 00:00:00")
        } else {
            day.to_owned()
        }));
    }
    let time = text.get(11..19).ok_or_else(refused)?;
    let parts: Vec<&str> = time.split(':').collect();
    let valid_time = text.as_bytes().get(10) == Some(&b' ')
        && matches!(parts.as_slice(), [h, m, s] if [h, m, s].iter().all(|p| p.len() == 2 && digits(p))
            && h.parse::<u32>().is_ok_and(|h| h < 24) && m.parse::<u32>().is_ok_and(|m| m < 60)
            && s.parse::<u32>().is_ok_and(|s| s < 60));
    if valid_time {
        Ok(json!(format!("{day} {time}")))
    } else {
        Err(refused())
    }
}
