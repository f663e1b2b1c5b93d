//! Rules checked against the event contracts at start-up: every field a rule
//! names exists in its event type's schema and is a single value of a kind
//! the expression can use; a condition on an enum names one of its symbols.

use apache_avro::Schema;
use apache_avro::schema::{NamesRef, ResolvedSchema};
use sluice_avro::event_contract;
use sluice_contracts::Catalog;
use sluice_contracts::types::ScalarValue;

use crate::rules::{
    Assignment, Condition, ErpFieldRule, Expr, FieldPath, Op, Rule, Rules, RulesError, Target,
};

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

    /// Whether a value of this kind can be written to a field of `field`'s.
    fn fits(&self, field: &Kind) -> bool {
        match field {
            Kind::Text | Kind::Enum(_) => self.textual(),
            Kind::Integer | Kind::Timestamp => matches!(self, Kind::Integer | Kind::Timestamp),
            Kind::Float => self.numeric(),
            Kind::Boolean => *self == Kind::Boolean,
        }
    }
}

/// How a rule uses a constant against a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Constant {
    /// The default a copy writes when the field is absent.
    Default,
    /// A condition's value, compared with the field.
    Compared,
}

/// Checks every rule against the contract of its aggregate's events.
pub fn check(rules: &Rules, catalog: &Catalog) -> Result<(), RulesError> {
    for rule in &rules.rules {
        check_rule(rule, catalog, None)?;
    }
    Ok(())
}

/// Checks the command of a saga's step (a rule of the saga's start event)
/// against the contract of its aggregate's events; its values may read
/// the saga too (`saga.…`, [`crate::saga`]; the failure only while
/// `compensating`).
pub fn check_in_saga(rule: &Rule, catalog: &Catalog, compensating: bool) -> Result<(), RulesError> {
    check_rule(rule, catalog, Some(crate::saga::schema(compensating)))
}

fn check_rule(rule: &Rule, catalog: &Catalog, saga: Option<&Schema>) -> Result<(), RulesError> {
    let contract = Contract::of(&rule.id, &rule.aggregate, catalog)?;
    let event = contract.event(&rule.event_type);
    event.check_event_type(&rule.id, &rule.aggregate)?;
    RuleCheck {
        owner: &rule.id,
        event: &event,
        item: None,
        saga,
    }
    .check(rule)
}

/// The fields of every event's envelope.
const ENVELOPE: [&str; 7] = [
    "event_id",
    "event_type",
    "occurred_at",
    "aggregate_id",
    "correlation_id",
    "causation_id",
    "payload",
];

/// Checks that `aggregate` has an event contract with `event_type` in its
/// payload (errors at `aggregate` and `event_type`), and that a saga can
/// keep such an event as JSON and make it into its record again: no field
/// of a type whose JSON form does not come back (bytes, fixed, decimals,
/// durations, a union of several types), no envelope field of its own
/// without a default (errors at `event_type`).
pub fn check_keepable(
    owner: &str,
    aggregate: &str,
    event_type: &str,
    catalog: &Catalog,
) -> Result<(), RulesError> {
    let contract = Contract::of(owner, aggregate, catalog)?;
    let event = contract.event(event_type);
    event.check_event_type(owner, aggregate)?;
    let not_kept = |path: &str, what: &str| {
        RulesError::invalid(
            owner,
            "event_type",
            format!(
                "{event_type}.{path} is {what}: a saga keeps its start event as JSON, from which \
                 that does not come back; start the saga on an event without it"
            ),
        )
    };
    // The envelope is kept field by field: another field must have a
    // default to be made again.
    if let Schema::Record(envelope) = event.deref(event.root)
        && let Some(field) = envelope
            .fields
            .iter()
            .find(|f| !ENVELOPE.contains(&f.name.as_str()) && f.default.is_none())
    {
        return Err(not_kept(&field.name, "an envelope field without a default"));
    }
    let payload = event.field_schema(event.root, "payload");
    let Some((branch, _)) = payload.and_then(|payload| event.unwrap(payload).ok()) else {
        return Err(not_kept("payload", "not a record of the contract"));
    };
    let mut pending = vec![(String::new(), branch)];
    while let Some((path, schema)) = pending.pop() {
        let schema = event.deref(schema);
        let at = |name: &str| match path.is_empty() {
            true => name.to_owned(),
            false => format!("{path}.{name}"),
        };
        match schema {
            Schema::Record(record) => {
                pending.extend(record.fields.iter().map(|f| (at(&f.name), &f.schema)));
            }
            Schema::Array(array) => pending.push((format!("{path}[]"), &array.items)),
            Schema::Map(map) => pending.push((format!("{path}{{}}"), &map.types)),
            Schema::Union(union) => {
                let typed: Vec<&Schema> = union
                    .variants()
                    .iter()
                    .filter(|v| !matches!(v, Schema::Null))
                    .collect();
                match typed.as_slice() {
                    [only] => pending.push((path, only)),
                    _ => return Err(not_kept(&path, "a union of several types")),
                }
            }
            Schema::Bytes | Schema::Fixed(_) | Schema::Decimal(_) | Schema::BigDecimal => {
                return Err(not_kept(&path, "bytes"));
            }
            Schema::Null
            | Schema::Boolean
            | Schema::Int
            | Schema::Long
            | Schema::Float
            | Schema::Double
            | Schema::String
            | Schema::Uuid(_)
            | Schema::TimestampMillis
            | Schema::Enum(_) => {}
            other => return Err(not_kept(&path, &format!("a {other:?}"))),
        }
    }
    Ok(())
}

/// Checks a saga's outcome event: `event_type` is an event of `aggregate`,
/// each of `payload`'s names one of its fields and each value (read from an
/// event of type `starts_on`, and the saga, its failure while
/// `compensating`) of that field's kind, never null where the field is not
/// nullable; every field without a default is given.
pub fn check_outcome(
    owner: &str,
    place: &str,
    (aggregate, starts_on): (&str, &str),
    (event_type, compensating): (&str, bool),
    payload: &[Assignment],
    catalog: &Catalog,
) -> Result<(), RulesError> {
    let contract = Contract::of(owner, aggregate, catalog)?;
    let read = contract.event(starts_on);
    let written = contract.event(event_type);
    let error = |place: &str, reason: String| RulesError::invalid(owner, place, reason);
    written
        .check_event_type(owner, aggregate)
        .map_err(|err| err.placed(|_| format!("{place}.event_type")))?;
    let payload_schema = written
        .field_schema(written.root, "payload")
        .ok_or_else(|| error(place, "the contract has no payload".into()))?;
    let (branch, _) = written
        .unwrap(payload_schema)
        .map_err(|reason| error(place, reason))?;
    let Schema::Record(record) = branch else {
        return Err(error(place, format!("{event_type} is not a record")));
    };
    let values = RuleCheck {
        owner,
        event: &read,
        item: None,
        saga: Some(crate::saga::schema(compensating)),
    };
    for (i, assignment) in payload.iter().enumerate() {
        let place = format!("{place}.payload[{i}] {:?}", assignment.name);
        let field = FieldPath::top_level(&assignment.name);
        let (wanted, nullable) = written
            .kind_of(branch, field.segments(), &field)
            .map_err(|reason| error(&place, reason))?;
        values.expr(&place, &assignment.value)?;
        let (given, may_be_null) = values.output(&place, &assignment.value)?;
        let name = &assignment.name;
        if !given.fits(&wanted) {
            return Err(error(
                &place,
                format!("gives {given:?}; {event_type}.{name} takes {wanted:?}"),
            ));
        }
        if may_be_null && !nullable {
            return Err(error(
                &place,
                format!("may be null, and {event_type}.{name} may not: give the copy a default"),
            ));
        }
        // An enum's constant must be one of its symbols.
        if let (Kind::Enum(_), Expr::Constant(value)) = (&wanted, &assignment.value) {
            values.constant_fits(&place, &field, &wanted, value, Constant::Compared)?;
        }
    }
    // Avro's JSON form, the one the outcome is made from, takes no field
    // without a default as absent, nullable or not.
    let required = record.fields.iter().filter(|field| field.default.is_none());
    for field in required {
        if !payload.iter().any(|a| a.name == field.name) {
            return Err(error(
                &format!("{place}.payload"),
                format!("{event_type} requires {:?}: give it a value", field.name),
            ));
        }
    }
    Ok(())
}

/// The event contract of an aggregate, its names resolved.
struct Contract<'c> {
    schema: &'c Schema,
    resolved: ResolvedSchema<'c>,
}

impl<'c> Contract<'c> {
    fn of(owner: &str, aggregate: &str, catalog: &'c Catalog) -> Result<Self, RulesError> {
        let contract = event_contract(aggregate);
        let topic = catalog.topic(&contract).ok_or_else(|| {
            RulesError::invalid(
                owner,
                "aggregate",
                format!("no contract {contract} for aggregate {aggregate:?}"),
            )
        })?;
        let schema = topic.value_schema();
        let resolved = ResolvedSchema::try_from(schema)
            .map_err(|err| RulesError::invalid(owner, "aggregate", format!("{contract}: {err}")))?;
        Ok(Self { schema, resolved })
    }

    fn event<'s>(&'s self, event_type: &'s str) -> EventSchema<'s> {
        EventSchema {
            root: self.schema,
            names: self.resolved.get_names(),
            event_type,
        }
    }
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

    fn check_event_type(&self, owner: &str, aggregate: &str) -> Result<(), RulesError> {
        let payload = self.field_schema(self.root, "payload");
        let Some(Schema::Union(union)) = payload.map(|s| self.deref(s)) else {
            return Err(RulesError::invalid(
                owner,
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
                owner,
                "event_type",
                format!(
                    "{:?} is not an event of {aggregate} (it has {})",
                    self.event_type,
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
    /// The rule (or saga) errors name.
    owner: &'a str,
    event: &'a EventSchema<'a>,
    /// The items' schema of the `each` list the check is inside, if any.
    item: Option<&'a Schema>,
    /// The saga's record, where a saga maps.
    saga: Option<&'a Schema>,
}

impl<'a> RuleCheck<'a> {
    fn error(&self, place: &str, reason: impl std::fmt::Display) -> RulesError {
        RulesError::invalid(self.owner, place, reason)
    }

    /// Where `path` starts (the event, or the item for `item.…`) and its
    /// segments from there.
    fn start<'p>(
        &self,
        place: &str,
        path: &'p FieldPath,
    ) -> Result<(&'a Schema, &'p [String]), RulesError> {
        match (self.item, self.saga, path.segments().split_first()) {
            (Some(item), _, Some((first, rest))) if first == "item" => Ok((item, rest)),
            (_, Some(saga), Some((first, rest))) if first == crate::saga::ROOT => Ok((saga, rest)),
            (None, _, Some((first, _))) if first == "item" => Err(self.error(
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

    fn check(&self, rule: &Rule) -> Result<(), RulesError> {
        let Some(list) = &rule.each else {
            return self.check_scoped(rule);
        };
        // A command per item: one key for all would make every item's
        // command write the same row or record, the last one winning.
        let (place, keyed) = match &rule.target {
            Target::Sheet { key, .. } => ("sheet.key", key),
            Target::Erp { external_ref, .. } => ("erp.external_ref", external_ref),
        };
        if !reads_item(keyed) {
            return Err(self.error(
                place,
                "a rule with each makes a command per item: the key must read the item (item.…)",
            ));
        }
        self.within("each", list)?.check_scoped(rule)
    }

    fn check_scoped(&self, rule: &Rule) -> Result<(), RulesError> {
        for (i, condition) in rule.when.iter().enumerate() {
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
                self.constant_fits(&place, condition.field(), &kind, value, Constant::Compared)?;
            }
        }
        match &rule.target {
            Target::Sheet { key, columns, .. } => {
                self.expr("sheet.key", key)?;
                for (i, column) in columns.iter().enumerate() {
                    let place = format!("sheet.columns[{i}] {:?}", column.name);
                    if column.name == sluice_contracts::SHEET_VERSIONS_COLUMN {
                        return Err(RulesError::invalid(
                            self.owner,
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

    /// Whether `value`, used as `constant`, fits `field` (of `kind`): a
    /// copy's default stands in for the field, so a reader of the command
    /// sees one type either way; a compared one need only be comparable.
    fn constant_fits(
        &self,
        place: &str,
        field: &FieldPath,
        kind: &Kind,
        value: &ScalarValue,
        constant: Constant,
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
            (Kind::Float, ScalarValue::Double(_)) => true,
            (kind, ScalarValue::Long(_)) => kind.numeric(),
            (kind, ScalarValue::Double(_)) => constant == Constant::Compared && kind.numeric(),
            _ => false,
        };
        if fits {
            return Ok(());
        }
        Err(self.error(
            place,
            match constant {
                Constant::Default => {
                    format!("default {value:?} is not of {field}'s type ({kind:?})")
                }
                Constant::Compared => format!("{field} cannot be compared with {value:?}"),
            },
        ))
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

    /// The kind of value `expr` (checked itself) gives, and whether it may
    /// be null (a field that may be, read without a default).
    fn output(&self, place: &str, expr: &Expr) -> Result<(Kind, bool), RulesError> {
        let read = |field: &FieldPath| -> Result<(Kind, bool), RulesError> {
            let (start, segments) = self.start(place, field)?;
            self.event
                .kind_of(start, segments, field)
                .map_err(|reason| self.error(place, reason))
        };
        let scaled = |decimals: &Option<u8>| match decimals {
            Some(_) => Kind::Text,
            None => Kind::Float,
        };
        Ok(match expr {
            Expr::Copy { field, default } => {
                let (kind, nullable) = read(field)?;
                (kind, nullable && default.is_none())
            }
            Expr::Constant(ScalarValue::Long(_)) => (Kind::Integer, false),
            Expr::Constant(ScalarValue::Double(_)) => (Kind::Float, false),
            Expr::Constant(ScalarValue::Boolean(_)) => (Kind::Boolean, false),
            Expr::Constant(ScalarValue::Null) => (Kind::Text, true),
            Expr::Constant(ScalarValue::String(_)) | Expr::Concat { .. } | Expr::Lookup { .. } => {
                (Kind::Text, false)
            }
            Expr::Date { field, .. } => (Kind::Text, read(field)?.1),
            Expr::Number {
                field, decimals, ..
            } => (scaled(decimals), read(field)?.1),
            // Null where a part is: a part's copy without a default.
            Expr::Arithmetic {
                parts, decimals, ..
            } => {
                let mut nullable = false;
                for part in parts {
                    nullable |= self.output(place, part)?.1;
                }
                (scaled(decimals), nullable)
            }
        })
    }

    fn expr(&self, place: &str, expr: &Expr) -> Result<(), RulesError> {
        match expr {
            Expr::Constant(_) => Ok(()),
            Expr::Copy { field, default } => {
                let kind = self.kind(place, field)?;
                match default {
                    Some(default) => {
                        self.constant_fits(place, field, &kind, default, Constant::Default)
                    }
                    None => Ok(()),
                }
            }
            Expr::Date { field, .. } => self.needs(
                place,
                field,
                |kind| matches!(kind, Kind::Timestamp | Kind::Integer),
                "date needs a timestamp",
            ),
            Expr::Number { field, .. } => {
                self.needs(place, field, Kind::numeric, "number needs a numeric field")
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
                self.needs(place, field, Kind::textual, "lookup needs a text field")
            }
        }
    }

    /// Refuses `field` unless its kind passes `test`; `needs` says what the
    /// expression needs.
    fn needs(
        &self,
        place: &str,
        field: &FieldPath,
        test: fn(&Kind) -> bool,
        needs: &str,
    ) -> Result<(), RulesError> {
        if test(&self.kind(place, field)?) {
            Ok(())
        } else {
            Err(self.error(place, format!("{needs}; {field} is not one")))
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
