//! Rules checked against the event contracts at start-up: every field a rule
//! names exists in its event type's schema and is a single value of a kind
//! the expression can use; a condition on an enum names one of its symbols.

use apache_avro::Schema;
use apache_avro::schema::{NamesRef, ResolvedSchema};
use sluice_avro::event_contract;
use sluice_contracts::Catalog;
use sluice_contracts::types::ScalarValue;

use crate::rules::{Condition, ErpFieldRule, Expr, FieldPath, Op, Rule, Rules, RulesError, Target};

/// What a field holds, as far as rules care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Enum(Vec<String>),
    Integer,
    Float,
    Boolean,
    Timestamp,
}

impl Kind {
    fn numeric(&self) -> bool {
        matches!(self, Self::Integer | Self::Float | Self::Timestamp)
    }

    fn textual(&self) -> bool {
        matches!(self, Self::Text | Self::Enum(_))
    }
}

/// Checks every rule against the contract of its aggregate's events.
pub fn check(rules: &Rules, catalog: &Catalog) -> Result<(), RulesError> {
    for rule in &rules.rules {
        let contract = event_contract(&rule.aggregate);
        let topic = catalog.topic(&contract).ok_or_else(|| {
            RulesError::invalid(
                &rule.id,
                "aggregate",
                format!("no contract {contract} for aggregate {:?}", rule.aggregate),
            )
        })?;
        let schema = topic.value_schema();
        let resolved = ResolvedSchema::try_from(schema).map_err(|err| {
            RulesError::invalid(&rule.id, "aggregate", format!("{contract}: {err}"))
        })?;
        let event = EventSchema {
            root: schema,
            names: resolved.get_names(),
            event_type: &rule.event_type,
        };
        event.check_event_type(rule)?;
        RuleCheck {
            rule,
            event: &event,
            item: None,
        }
        .check()?;
    }
    Ok(())
}

/// One event type of one contract.
struct EventSchema<'a> {
    root: &'a Schema,
    names: &'a NamesRef<'a>,
    event_type: &'a str,
}

impl EventSchema<'_> {
    fn deref<'s>(&'s self, schema: &'s Schema) -> &'s Schema {
        match schema {
            Schema::Ref { name } => self
                .names
                .get(name)
                .copied()
                .or_else(|| {
                    self.names
                        .iter()
                        .find(|(known, _)| known.name() == name.name())
                        .map(|(_, schema)| *schema)
                })
                .unwrap_or(schema),
            other => other,
        }
    }

    fn check_event_type(&self, rule: &Rule) -> Result<(), RulesError> {
        let payload = self.field_schema(self.root, "payload");
        let Some(Schema::Union(union)) = payload.map(|s| self.deref(s)) else {
            return Err(RulesError::invalid(
                &rule.id,
                "event_type",
                "the contract has no payload union",
            ));
        };
        let types: Vec<&str> = union
            .variants()
            .iter()
            .filter_map(|variant| match self.deref(variant) {
                Schema::Record(record) => Some(record.name.name()),
                _ => None,
            })
            .collect();
        if !types.contains(&self.event_type) {
            return Err(RulesError::invalid(
                &rule.id,
                "event_type",
                format!(
                    "{:?} is not an event of {} (it has {})",
                    self.event_type,
                    rule.aggregate,
                    types.join(", ")
                ),
            ));
        }
        Ok(())
    }

    fn field_schema<'s>(&'s self, record: &'s Schema, name: &str) -> Option<&'s Schema> {
        match self.deref(record) {
            Schema::Record(record) => record
                .lookup
                .get(name)
                .and_then(|&i| record.fields.get(i))
                .map(|field| &field.schema),
            _ => None,
        }
    }

    /// The schema at `segments` of `path` from `start`, and whether
    /// something on the way may be null.
    fn walk<'s>(
        &'s self,
        start: &'s Schema,
        segments: &[String],
        path: &FieldPath,
    ) -> Result<(&'s Schema, bool), String> {
        let mut schema = start;
        let mut nullable = false;
        let mut walked: Vec<&str> = Vec::new();
        for segment in segments {
            let (inner, null) = self.unwrap(schema)?;
            nullable |= null;
            let Schema::Record(record) = inner else {
                return Err(format!(
                    "{} is not a record; it has no field {segment:?}",
                    walked.join(".")
                ));
            };
            let field = record
                .lookup
                .get(segment)
                .and_then(|&i| record.fields.get(i))
                .ok_or_else(|| {
                    let names: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
                    format!(
                        "field {path} does not exist: {} has {}",
                        record.name.name(),
                        names.join(", ")
                    )
                })?;
            walked.push(segment);
            schema = &field.schema;
        }
        Ok((schema, nullable))
    }

    /// The items' schema of the list at `segments` of `path` from `start`.
    fn items_of<'s>(
        &'s self,
        start: &'s Schema,
        segments: &[String],
        path: &FieldPath,
    ) -> Result<&'s Schema, String> {
        let (schema, _) = self.walk(start, segments, path)?;
        match self.unwrap(schema)?.0 {
            Schema::Array(array) => Ok(self.deref(&array.items)),
            other => Err(format!("{path} is a {}, not a list", kind_name(other))),
        }
    }

    /// The kind of the single value at `segments` of `path` from `start`,
    /// and whether it may be null.
    fn kind_of(
        &self,
        start: &Schema,
        segments: &[String],
        path: &FieldPath,
    ) -> Result<(Kind, bool), String> {
        let (schema, nullable) = self.walk(start, segments, path)?;
        let (inner, null) = self.unwrap(schema)?;
        let kind = match inner {
            Schema::String | Schema::Uuid(_) => Kind::Text,
            Schema::Enum(e) => Kind::Enum(e.symbols.clone()),
            Schema::Int | Schema::Long => Kind::Integer,
            Schema::Float | Schema::Double => Kind::Float,
            Schema::Boolean => Kind::Boolean,
            Schema::TimestampMillis => Kind::Timestamp,
            other => {
                return Err(format!(
                    "field {path} is a {}, not a single value",
                    kind_name(other)
                ));
            }
        };
        Ok((kind, nullable || null))
    }

    /// Steps through a nullable union, and through the payload union to the
    /// rule's event type.
    fn unwrap<'s>(&'s self, schema: &'s Schema) -> Result<(&'s Schema, bool), String> {
        let schema = self.deref(schema);
        let Schema::Union(union) = schema else {
            return Ok((schema, false));
        };
        let nullable = union.variants().iter().any(|v| matches!(v, Schema::Null));
        let branches: Vec<&Schema> = union
            .variants()
            .iter()
            .filter(|v| !matches!(v, Schema::Null))
            .map(|v| self.deref(v))
            .collect();
        let chosen = match branches.as_slice() {
            [only] => *only,
            many => many
                .iter()
                .copied()
                .find(|b| matches!(b, Schema::Record(r) if r.name.name() == self.event_type))
                .ok_or_else(|| format!("a union without a {} branch", self.event_type))?,
        };
        Ok((chosen, nullable))
    }
}

fn kind_name(schema: &Schema) -> &'static str {
    match schema {
        Schema::Record(_) => "record",
        Schema::Array(_) => "list",
        Schema::Map(_) => "map",
        Schema::Bytes | Schema::Fixed(_) => "byte string",
        _ => "value of an unsupported type",
    }
}

#[derive(Clone, Copy)]
struct RuleCheck<'a> {
    rule: &'a Rule,
    event: &'a EventSchema<'a>,
    /// The items' schema of the `each` list the check is inside, if any.
    item: Option<&'a Schema>,
}

impl<'a> RuleCheck<'a> {
    fn error(&self, place: &str, reason: impl std::fmt::Display) -> RulesError {
        RulesError::invalid(&self.rule.id, place, reason)
    }

    /// Where `path` starts (the event, or the item for `item.…`) and its
    /// segments from there.
    fn start<'p>(
        &self,
        place: &str,
        path: &'p FieldPath,
    ) -> Result<(&'a Schema, &'p [String]), RulesError> {
        match (self.item, path.segments().split_first()) {
            (Some(item), Some((first, rest))) if first == "item" => Ok((item, rest)),
            (None, Some((first, _))) if first == "item" => Err(self.error(
                place,
                format!("{path}: item.… reads an item of each, and no each encloses it"),
            )),
            _ => Ok((self.event.root, path.segments())),
        }
    }

    fn kind(&self, place: &str, path: &FieldPath) -> Result<Kind, RulesError> {
        let (start, segments) = self.start(place, path)?;
        self.event
            .kind_of(start, segments, path)
            .map(|(kind, _)| kind)
            .map_err(|reason| self.error(place, reason))
    }

    /// This check inside the list at `path`: `item.…` reads its items.
    fn within(&self, place: &str, path: &FieldPath) -> Result<Self, RulesError> {
        let (start, segments) = self.start(place, path)?;
        let items = self
            .event
            .items_of(start, segments, path)
            .map_err(|reason| self.error(place, reason))?;
        Ok(Self {
            item: Some(items),
            ..*self
        })
    }

    fn check(&self) -> Result<(), RulesError> {
        let Some(list) = &self.rule.each else {
            return self.check_scoped();
        };
        // A command per item: one key for all would make every item's
        // command write the same row or record, the last one winning.
        let (place, keyed) = match &self.rule.target {
            Target::Sheet { key, .. } => ("sheet.key", key),
            Target::Erp { external_ref, .. } => ("erp.external_ref", external_ref),
        };
        if !reads_item(keyed) {
            return Err(self.error(
                place,
                "a rule with each makes a command per item: the key must read the item (item.…)",
            ));
        }
        self.within("each", list)?.check_scoped()
    }

    fn check_scoped(&self) -> Result<(), RulesError> {
        for (i, condition) in self.rule.when.iter().enumerate() {
            let place = format!("when[{i}]");
            let kind = self.kind(&place, condition.field())?;
            let values: &[ScalarValue] = match condition {
                Condition::Equals(_, value) | Condition::NotEquals(_, value) => {
                    std::slice::from_ref(value)
                }
                Condition::In(_, values) => values,
                Condition::Present(..) => &[],
            };
            for value in values {
                self.comparable(&place, condition.field(), &kind, value)?;
            }
        }
        match &self.rule.target {
            Target::Sheet { key, columns, .. } => {
                self.expr("sheet.key", key)?;
                for (i, column) in columns.iter().enumerate() {
                    let place = format!("sheet.columns[{i}] {:?}", column.name);
                    if column.name == sluice_contracts::SHEET_VERSIONS_COLUMN {
                        return Err(RulesError::invalid(
                            &self.rule.id,
                            place,
                            "sheets-sink's own column (each cell's version): name the column otherwise",
                        ));
                    }
                    self.expr(&place, &column.value)?;
                }
            }
            Target::Erp {
                external_ref,
                fields,
                ..
            } => {
                self.expr("erp.external_ref", external_ref)?;
                for (i, field) in fields.iter().enumerate() {
                    match field {
                        ErpFieldRule::One(field) => {
                            self.expr(&format!("erp.fields[{i}] {:?}", field.name), &field.value)?;
                        }
                        ErpFieldRule::Each { name, each, fields } => {
                            let place = format!("erp.fields[{i}] {name:?}");
                            let inner = self.within(&format!("{place}.each"), each)?;
                            for (j, field) in fields.iter().enumerate() {
                                let place = format!("{place}.fields[{j}] {:?}", field.name);
                                inner.expr(&place, &field.value)?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether `field` could hold `value` (a copy's default stands in for
    /// it, so a reader of the command sees one type either way).
    fn takes(
        &self,
        place: &str,
        field: &FieldPath,
        kind: &Kind,
        value: &ScalarValue,
    ) -> Result<(), RulesError> {
        let fits = match (kind, value) {
            (Kind::Enum(_), ScalarValue::String(_)) => {
                return self.comparable(place, field, kind, value);
            }
            (Kind::Text, ScalarValue::String(_))
            | (Kind::Boolean, ScalarValue::Boolean(_))
            | (Kind::Integer | Kind::Timestamp, ScalarValue::Long(_))
            | (Kind::Float, ScalarValue::Long(_) | ScalarValue::Double(_)) => true,
            _ => false,
        };
        if fits {
            Ok(())
        } else {
            Err(self.error(
                place,
                format!("default {value:?} is not of {field}'s type ({kind:?})"),
            ))
        }
    }

    fn comparable(
        &self,
        place: &str,
        field: &FieldPath,
        kind: &Kind,
        value: &ScalarValue,
    ) -> Result<(), RulesError> {
        let fits = match (kind, value) {
            (Kind::Enum(symbols), ScalarValue::String(text)) => {
                if !symbols.contains(text) {
                    return Err(self.error(
                        place,
                        format!(
                            "{text:?} is not a value of {field} ({})",
                            symbols.join(", ")
                        ),
                    ));
                }
                true
            }
            (Kind::Text, ScalarValue::String(_)) | (Kind::Boolean, ScalarValue::Boolean(_)) => true,
            (kind, ScalarValue::Long(_) | ScalarValue::Double(_)) => kind.numeric(),
            _ => false,
        };
        if fits {
            Ok(())
        } else {
            Err(self.error(place, format!("{field} cannot be compared with {value:?}")))
        }
    }

    /// Whether `expr` (checked itself) gives a number.
    fn number(&self, place: &str, expr: &Expr) -> Result<(), RulesError> {
        let not = match expr {
            Expr::Copy { field, .. } if !self.kind(place, field)?.numeric() => {
                format!("{field}, not a numeric field")
            }
            Expr::Constant(value @ (ScalarValue::String(_) | ScalarValue::Boolean(_))) => {
                format!("the constant {value:?}")
            }
            Expr::Date { .. } => "a date (text)".to_owned(),
            Expr::Concat { .. } => "a concat (text)".to_owned(),
            Expr::Lookup { .. } => "a lookup (text)".to_owned(),
            _ => return Ok(()),
        };
        Err(self.error(place, format!("arithmetic takes numbers, not {not}")))
    }

    fn expr(&self, place: &str, expr: &Expr) -> Result<(), RulesError> {
        match expr {
            Expr::Constant(_) => Ok(()),
            Expr::Copy { field, default } => {
                let kind = self.kind(place, field)?;
                match default {
                    Some(default) => self.takes(place, field, &kind, default),
                    None => Ok(()),
                }
            }
            Expr::Date { field, .. } => match self.kind(place, field)? {
                Kind::Timestamp | Kind::Integer => Ok(()),
                _ => Err(self.error(place, format!("date needs a timestamp; {field} is not one"))),
            },
            Expr::Number { field, .. } => {
                if self.kind(place, field)?.numeric() {
                    Ok(())
                } else {
                    Err(self.error(
                        place,
                        format!("number needs a numeric field; {field} is not one"),
                    ))
                }
            }
            Expr::Arithmetic { op, parts, .. } => {
                let kind = match op {
                    Op::Sum => "sum",
                    Op::Product => "product",
                };
                for (i, part) in parts.iter().enumerate() {
                    let place = format!("{place}.{kind}[{i}]");
                    self.expr(&place, part)?;
                    self.number(&place, part)?;
                }
                Ok(())
            }
            Expr::Concat { parts, .. } => {
                for (i, part) in parts.iter().enumerate() {
                    self.expr(&format!("{place}.concat[{i}]"), part)?;
                }
                Ok(())
            }
            Expr::Lookup { field, .. } => {
                if self.kind(place, field)?.textual() {
                    Ok(())
                } else {
                    Err(self.error(
                        place,
                        format!("lookup needs a text field; {field} is not one"),
                    ))
                }
            }
        }
    }
}

/// Whether `expr` reads the item of an `each` (`item.…`).
fn reads_item(expr: &Expr) -> bool {
    let of_item = |field: &FieldPath| field.segments().first().is_some_and(|s| s == "item");
    match expr {
        Expr::Constant(_) => false,
        Expr::Copy { field, .. }
        | Expr::Date { field, .. }
        | Expr::Number { field, .. }
        | Expr::Lookup { field, .. } => of_item(field),
        Expr::Concat { parts, .. } | Expr::Arithmetic { parts, .. } => parts.iter().any(reads_item),
    }
}
