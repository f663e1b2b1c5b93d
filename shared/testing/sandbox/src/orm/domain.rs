//! Search domains (odoo/osv/expression.py): leaves `[field, op, value]`
//! joined by the prefix operators `&` (implicit), `|` and `!`; a field path
//! may follow many2one fields (`partner_id.email`).

use serde_json::{Value, json};

use super::Database;
use super::schema::{Kind, Model};
use super::values::{OdooError, repr, truthy};

/// A parsed domain.
#[derive(Debug)]
pub enum Domain {
    /// Every part holds.
    And(Vec<Domain>),
    /// One part holds.
    Or(Vec<Domain>),
    /// The part does not hold.
    Not(Box<Domain>),
    /// `[path, operator, value]`.
    Leaf(Vec<String>, String, Value),
}

impl Domain {
    /// Parses `terms` against `model`.
    pub fn parse(model: &'static Model, terms: &[Value]) -> Result<Self, OdooError> {
        let mut stack: Vec<Domain> = Vec::new();
        for term in terms.iter().rev() {
            match term {
                Value::String(op) if op == "&" || op == "|" => {
                    let (Some(a), Some(b)) = (stack.pop(), stack.pop()) else {
                        return Err(OdooError::value(format!(
                            "Invalid domain {}",
                            repr(&json!(terms))
                        )));
                    };
                    stack.push(if op == "&" {
                        Self::And(vec![a, b])
                    } else {
                        Self::Or(vec![a, b])
                    });
                }
                Value::String(op) if op == "!" => {
                    let a = stack
                        .pop()
                        .ok_or_else(|| OdooError::value("Invalid domain"))?;
                    stack.push(Self::Not(Box::new(a)));
                }
                Value::Array(leaf) => stack.push(leaf_of(model, leaf)?),
                other => return Err(OdooError::value(format!("Invalid leaf {}", repr(other)))),
            }
        }
        stack.reverse();
        Ok(Self::And(stack))
    }

    /// The `field = value` leaves every match must hold (the top level's
    /// `&`), on the model's own fields with a value that is not false: the
    /// index answers those.
    pub fn equalities(&self) -> impl Iterator<Item = (&str, &Value)> {
        let parts = match self {
            Self::And(parts) => parts.as_slice(),
            leaf => std::slice::from_ref(leaf),
        };
        parts.iter().filter_map(|part| match part {
            Self::Leaf(path, op, value) if op == "=" && truthy(value) => match path.as_slice() {
                [field] if field != "id" => Some((field.as_str(), value)),
                _ => None,
            },
            _ => None,
        })
    }

    /// Whether the record `id` of `model` matches.
    pub fn matches(&self, db: &Database, model: &'static Model, id: i64) -> bool {
        match self {
            Self::And(parts) => parts.iter().all(|p| p.matches(db, model, id)),
            Self::Or(parts) => parts.iter().any(|p| p.matches(db, model, id)),
            Self::Not(part) => !part.matches(db, model, id),
            Self::Leaf(path, op, value) => {
                let found = follow(db, model, id, path);
                compare(&found, op, value)
            }
        }
    }
}

fn leaf_of(model: &'static Model, leaf: &[Value]) -> Result<Domain, OdooError> {
    let [Value::String(path), Value::String(op), value] = leaf else {
        return Err(OdooError::value(format!(
            "Invalid leaf {}",
            repr(&json!(leaf))
        )));
    };
    let path: Vec<String> = path.split('.').map(str::to_owned).collect();
    // Each step must name a field; all but the last a many2one.
    let mut current = model;
    for (i, step) in path.iter().enumerate() {
        let known = step == "id" || current.field(step).is_some();
        if !known {
            return Err(OdooError::value(format!(
                "Invalid field {}.{} in leaf {}",
                current.name,
                step,
                repr(&json!(leaf))
            )));
        }
        if i + 1 < path.len() {
            match current.field(step).map(|f| f.kind) {
                Some(Kind::Many2one(comodel)) => {
                    current = super::schema::model(comodel)
                        .ok_or_else(|| OdooError::value("unknown comodel"))?;
                }
                _ => {
                    return Err(OdooError::value(format!(
                        "Invalid leaf {}",
                        repr(&json!(leaf))
                    )));
                }
            }
        }
    }
    const OPERATORS: [&str; 12] = [
        "=", "!=", "in", "not in", "like", "ilike", "=like", "=ilike", "<", ">", "<=", ">=",
    ];
    if !OPERATORS.contains(&op.as_str()) {
        return Err(OdooError::value(format!(
            "Invalid leaf {}",
            repr(&json!(leaf))
        )));
    }
    Ok(Domain::Leaf(path, op.clone(), value.clone()))
}

/// The value at `path` from record `id` (false where the chain breaks).
fn follow(db: &Database, model: &'static Model, id: i64, path: &[String]) -> Value {
    let Some((first, rest)) = path.split_first() else {
        return Value::Bool(false);
    };
    if first == "id" {
        return json!(id);
    }
    let value = db.value(model, id, first);
    if rest.is_empty() {
        return value;
    }
    match (model.field(first).map(|f| f.kind), value.as_i64()) {
        (Some(Kind::Many2one(comodel)), Some(target)) => match super::schema::model(comodel) {
            Some(comodel) => follow(db, comodel, target, rest),
            None => Value::Bool(false),
        },
        _ => Value::Bool(false),
    }
}

fn compare(found: &Value, op: &str, value: &Value) -> bool {
    let same = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b || (!truthy(a) && !truthy(b) && !a.is_number() && !b.is_number()),
    };
    let text = |v: &Value| v.as_str().map(str::to_owned);
    match op {
        "=" => same(found, value),
        "!=" => !same(found, value),
        "in" => value
            .as_array()
            .is_some_and(|vs| vs.iter().any(|v| same(found, v))),
        "not in" => !value
            .as_array()
            .is_some_and(|vs| vs.iter().any(|v| same(found, v))),
        "like" | "ilike" | "=like" | "=ilike" => {
            let (Some(haystack), Some(pattern)) = (text(found), text(value)) else {
                return false;
            };
            let insensitive = op.contains('i');
            let (haystack, pattern) = if insensitive {
                (haystack.to_lowercase(), pattern.to_lowercase())
            } else {
                (haystack, pattern)
            };
            if op.starts_with('=') {
                like(&haystack, &pattern)
            } else {
                haystack.contains(&pattern)
            }
        }
        _ => {
            let ordering = match (found.as_f64(), value.as_f64()) {
                (Some(x), Some(y)) => x.partial_cmp(&y),
                _ => match (found.as_str(), value.as_str()) {
                    (Some(a), Some(b)) => Some(a.cmp(b)),
                    _ => None,
                },
            };
            ordering.is_some_and(|o| match op {
                "<" => o.is_lt(),
                ">" => o.is_gt(),
                "<=" => o.is_le(),
                _ => o.is_ge(),
            })
        }
    }
}

/// SQL LIKE: `%` any run, `_` any one character.
fn like(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    fn go(t: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(&t[i..], rest)),
            Some(('_', rest)) => !t.is_empty() && go(&t[1..], rest),
            Some((c, rest)) => t.first() == Some(c) && go(&t[1..], rest),
        }
    }
    go(&text, &pattern)
}
