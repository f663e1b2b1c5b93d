//! The rules file (TOML): which events become which sink commands, and how
//! their fields are mapped. Parsed strictly — an unknown key, a missing one
//! or an expression with two kinds fails with the rule and place named.
//!
//! ```toml
//! [lookups.countries]
//! DE = "Germany"
//!
//! [[rules]]
//! id = "orders-sheet"              # stable: part of every command id
//! aggregate = "orders"             # events of orders.events.v1 (or its --route)
//! event_type = "OrderPlaced"
//! when = [{ field = "payload.currency", equals = "EUR" }]
//!
//! [rules.sheet]
//! spreadsheet = "sluice-demo"
//! sheet = "Orders"
//! key = { copy = "aggregate_id" }
//! columns = [
//!   { column = "Order", value = { copy = "aggregate_id" } },
//!   { column = "Total", value = { number = "payload.total_minor", divide_by = 100, decimals = 2 } },
//! ]
//! ```

use std::collections::BTreeMap;
use std::fmt;

use chrono::format::{Item, StrftimeItems};
use serde::Deserialize;
use sluice_contracts::types::{ErpOperation, ScalarValue};

/// Why a rules file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Not TOML, or not the rules' shape.
    #[error("rules file: {0}")]
    Syntax(String),
    /// A rule is inconsistent in itself or with the contracts.
    #[error("rule {rule:?}: {place}: {reason}")]
    Invalid {
        /// The rule's id.
        rule: String,
        /// Where in the rule (`when[0]`, `sheet.columns[2] "Total"`, ...).
        place: String,
        /// What is wrong.
        reason: String,
    },
}

impl RulesError {
    /// The same error at the place `place` makes of its own (a check names
    /// the place in what it checked; a file may hold that elsewhere).
    pub fn placed(self, place: impl FnOnce(&str) -> String) -> Self {
        match self {
            Self::Invalid {
                rule,
                place: at,
                reason,
            } => Self::Invalid {
                rule,
                place: place(&at),
                reason,
            },
            other => other,
        }
    }

    /// The error of `rule` (or another owner) at `place`.
    pub fn invalid(rule: &str, place: impl fmt::Display, reason: impl fmt::Display) -> Self {
        Self::Invalid {
            rule: rule.to_owned(),
            place: place.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// A dotted field path into an event: `aggregate_id`, `payload.customer.email`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    fn parse(text: &str) -> Result<Self, String> {
        let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!(
                "{text:?} is not a field path (names joined by dots)"
            ));
        }
        Ok(Self(segments))
    }

    /// A field of the envelope itself.
    pub fn top_level(name: &str) -> Self {
        Self(vec![name.to_owned()])
    }

    /// The names, outermost first.
    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// A chrono `strftime` format, parsed once, when the rules load: parsing
/// it again for every event was 2.7 % of the transformer's time on its
/// worker threads (perf over its benchmark).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateFormat(Vec<Item<'static>>);

impl DateFormat {
    /// `text` parsed, or why it is not a format.
    pub fn parse(text: &str) -> Result<Self, String> {
        StrftimeItems::new(text)
            .parse_to_owned()
            .map(Self)
            .map_err(|_| format!("{text:?} is not a strftime format"))
    }

    /// Its items, for chrono's `format_with_items`.
    pub fn items(&self) -> &[Item<'static>] {
        &self.0
    }
}

/// How a cell, field, key or reference gets its value.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// The field's value as it is (enum symbols and uuids as text), or
    /// `default` where it is null or absent.
    Copy {
        /// The field.
        field: FieldPath,
        /// Its value where the field is null.
        default: Option<ScalarValue>,
    },
    /// A fixed value.
    Constant(ScalarValue),
    /// A timestamp field formatted (chrono `strftime`, UTC).
    Date {
        /// A timestamp-millis field.
        field: FieldPath,
        /// e.g. `%Y-%m-%d %H:%M`.
        format: DateFormat,
    },
    /// A number divided by `divide_by`; text with `decimals` places when
    /// given, a double otherwise.
    Number {
        /// A numeric field.
        field: FieldPath,
        /// Divisor (100 turns cents into units).
        divide_by: f64,
        /// Fixed decimal places of the text form.
        decimals: Option<u8>,
    },
    /// The sum or product of numeric parts, divided by `divide_by`; text
    /// with `decimals` places when given, a double otherwise. Null where a
    /// part is null (a copy's `default` stands in for an absent part).
    Arithmetic {
        /// Sum or product.
        op: Op,
        /// Numbers: copies of numeric fields, constants, numbers, or
        /// arithmetic again.
        parts: Vec<Expr>,
        /// Divisor of the result.
        divide_by: f64,
        /// Fixed decimal places of the text form.
        decimals: Option<u8>,
    },
    /// The parts' text, joined by `separator`; null parts are skipped.
    Concat {
        /// The parts.
        parts: Vec<Expr>,
        /// Put between parts.
        separator: String,
    },
    /// The field's text looked up in a table of the rules file.
    Lookup {
        /// A text (or enum) field.
        field: FieldPath,
        /// Name under `[lookups]`.
        table: String,
        /// Used when the value is not in the table; without it the event
        /// fails to map (and is dead-lettered).
        default: Option<String>,
    },
}

/// What [`Expr::Arithmetic`] does with its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `sum = [...]`: added.
    Sum,
    /// `product = [...]`: multiplied.
    Product,
}

/// A condition on an event; all of a rule's must hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The field equals the value.
    Equals(FieldPath, ScalarValue),
    /// The field differs from the value.
    NotEquals(FieldPath, ScalarValue),
    /// The field is one of the values.
    In(FieldPath, Vec<ScalarValue>),
    /// The field is (true) or is not (false) null.
    Present(FieldPath, bool),
}

impl Condition {
    /// The field the condition reads.
    pub fn field(&self) -> &FieldPath {
        match self {
            Self::Equals(field, _)
            | Self::NotEquals(field, _)
            | Self::In(field, _)
            | Self::Present(field, _) => field,
        }
    }
}

/// A named value of a command: a sheet column or an ERP field.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Column header or ERP field name.
    pub name: String,
    /// Its value.
    pub value: Expr,
}

/// An ERP field of a rule: one value, or one per item of a list.
#[derive(Debug, Clone, PartialEq)]
pub enum ErpFieldRule {
    /// `name` = value.
    One(Assignment),
    /// For item `i` of the list at `each`, `name.i.<field>` = value, the
    /// fields reading the item as `item.…` (an order's lines as a sale
    /// order's `order_line.0.product_uom_qty`, … as erp-sink takes them).
    Each {
        /// The prefix of the fields' names.
        name: String,
        /// The list.
        each: FieldPath,
        /// The fields of each item.
        fields: Vec<Assignment>,
    },
}

/// What a rule produces.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A SheetRowUpsert.
    Sheet {
        /// Spreadsheet id.
        spreadsheet: String,
        /// Sheet (tab) title.
        sheet: String,
        /// The row's key.
        key: Expr,
        /// Cells in column order.
        columns: Vec<Assignment>,
    },
    /// An ErpCommand.
    Erp {
        /// ERP model, e.g. `sale.order`.
        model: String,
        /// What to do.
        operation: ErpOperation,
        /// Our reference for the record (and the message key).
        external_ref: Expr,
        /// Field values in order.
        fields: Vec<ErpFieldRule>,
    },
}

/// One mapping rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Stable id; part of every command id the rule makes.
    pub id: String,
    /// Aggregate type whose events it reads.
    pub aggregate: String,
    /// The event type it matches.
    pub event_type: String,
    /// Further conditions.
    pub when: Vec<Condition>,
    /// A list of the event: with it, the rule makes a command per item
    /// (that its conditions hold for), reading the item as `item.…`.
    pub each: Option<FieldPath>,
    /// The command it makes.
    pub target: Target,
}

/// A parsed rules file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rules {
    /// Rules in file order.
    pub rules: Vec<Rule>,
    /// Lookup tables by name.
    pub lookups: BTreeMap<String, BTreeMap<String, String>>,
}

impl Rules {
    /// Parses a rules file; the result is not yet checked against the
    /// contracts (see [`crate::check`]).
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        let file: RawFile =
            toml::from_str(text).map_err(|err| RulesError::Syntax(err.to_string()))?;
        let mut seen = std::collections::BTreeSet::new();
        let mut rules = Vec::with_capacity(file.rules.len());
        for raw in file.rules {
            if !seen.insert(raw.id.clone()) {
                return Err(RulesError::invalid(&raw.id, "id", "used by two rules"));
            }
            if raw.id.contains('#') {
                // `rule#i` names an item's command: a rule so named would
                // make another rule's ids.
                return Err(RulesError::invalid(
                    &raw.id,
                    "id",
                    "# is kept for items of each",
                ));
            }
            rules.push(raw.into_rule(&file.lookups)?);
        }
        Ok(Self {
            rules,
            lookups: file.lookups,
        })
    }

    /// These rules without the ones named in `ids` (a deployment where
    /// another service owns those events); an id no rule has is refused.
    pub fn without(mut self, ids: &[String]) -> Result<Self, RulesError> {
        if let Some(unknown) = ids
            .iter()
            .find(|id| !self.rules.iter().any(|rule| &rule.id == *id))
        {
            return Err(RulesError::invalid(
                unknown,
                "id",
                "no rule has it (--without-rule)",
            ));
        }
        self.rules.retain(|rule| !ids.contains(&rule.id));
        Ok(self)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    lookups: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    aggregate: String,
    event_type: String,
    #[serde(default)]
    when: Vec<RawCondition>,
    each: Option<String>,
    sheet: Option<RawSheet>,
    erp: Option<RawErp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    field: String,
    equals: Option<toml::Value>,
    not_equals: Option<toml::Value>,
    #[serde(rename = "in")]
    one_of: Option<Vec<toml::Value>>,
    present: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSheet {
    spreadsheet: String,
    sheet: String,
    key: RawExpr,
    columns: Vec<RawColumn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    column: String,
    value: RawExpr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawErp {
    model: String,
    operation: ErpOperation,
    external_ref: RawExpr,
    fields: Vec<RawField>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    value: Option<RawExpr>,
    each: Option<String>,
    fields: Option<Vec<FieldSpec>>,
}

/// A field of an `each` group, or of a record a file builds: a name and
/// a value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    name: String,
    value: RawExpr,
}

impl FieldSpec {
    /// The typed assignment; errors name `owner` and `place`.
    pub fn build(self, owner: &str, place: &str) -> Result<Assignment, RulesError> {
        let none = BTreeMap::new();
        let build = Builder {
            rule: owner,
            lookups: &none,
        };
        Ok(Assignment {
            value: build.expr(&format!("{place} {:?}", self.name), self.value)?,
            name: self.name,
        })
    }
}

/// A command as a file other than the rules file writes it (a saga's
/// step): `sheet = {…}` or `erp = {…}`, as a rule's, without lookups.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    sheet: Option<RawSheet>,
    erp: Option<RawErp>,
}

impl TargetSpec {
    /// The typed target; errors name `owner` and the place under `prefix`.
    pub fn build(self, owner: &str, prefix: &str) -> Result<Target, RulesError> {
        let none = BTreeMap::new();
        let build = Builder {
            rule: owner,
            lookups: &none,
        };
        build.target(prefix, self.sheet, self.erp)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpr {
    copy: Option<String>,
    constant: Option<toml::Value>,
    date: Option<String>,
    format: Option<String>,
    number: Option<String>,
    divide_by: Option<f64>,
    decimals: Option<u8>,
    sum: Option<Vec<RawExpr>>,
    product: Option<Vec<RawExpr>>,
    concat: Option<Vec<RawExpr>>,
    separator: Option<String>,
    lookup: Option<String>,
    table: Option<String>,
    default: Option<toml::Value>,
}

/// Builds typed parts of one rule, naming the rule in every error.
struct Builder<'a> {
    rule: &'a str,
    lookups: &'a BTreeMap<String, BTreeMap<String, String>>,
}

impl RawRule {
    fn into_rule(
        self,
        lookups: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<Rule, RulesError> {
        let build = Builder {
            rule: &self.id,
            lookups,
        };
        let when = self
            .when
            .into_iter()
            .enumerate()
            .map(|(i, raw)| build.condition(&format!("when[{i}]"), raw))
            .collect::<Result<_, _>>()?;
        let each = self
            .each
            .as_deref()
            .map(|path| build.path("each", path))
            .transpose()?;
        let target = build.target("", self.sheet, self.erp)?;
        Ok(Rule {
            id: self.id,
            aggregate: self.aggregate,
            event_type: self.event_type,
            when,
            each,
            target,
        })
    }
}

impl Builder<'_> {
    /// The sheet or ERP target; `prefix` is where the file has it.
    fn target(
        &self,
        prefix: &str,
        sheet: Option<RawSheet>,
        erp: Option<RawErp>,
    ) -> Result<Target, RulesError> {
        Ok(match (sheet, erp) {
            (Some(sheet), None) => Target::Sheet {
                key: self.expr(&format!("{prefix}sheet.key"), sheet.key)?,
                columns: sheet
                    .columns
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let place = format!("{prefix}sheet.columns[{i}] {:?}", c.column);
                        Ok(Assignment {
                            value: self.expr(&place, c.value)?,
                            name: c.column,
                        })
                    })
                    .collect::<Result<_, RulesError>>()?,
                spreadsheet: sheet.spreadsheet,
                sheet: sheet.sheet,
            },
            (None, Some(erp)) => {
                if erp.operation == ErpOperation::Unknown {
                    return Err(self.error(
                        &format!("{prefix}erp.operation"),
                        "UNKNOWN is for readers; use CREATE, UPDATE, UPSERT or CANCEL",
                    ));
                }
                Target::Erp {
                    external_ref: self
                        .expr(&format!("{prefix}erp.external_ref"), erp.external_ref)?,
                    fields: erp
                        .fields
                        .into_iter()
                        .enumerate()
                        .map(|(i, f)| {
                            let place = format!("{prefix}erp.fields[{i}] {:?}", f.name);
                            self.erp_field(&place, f)
                        })
                        .collect::<Result<_, RulesError>>()?,
                    model: erp.model,
                    operation: erp.operation,
                }
            }
            _ => {
                let table = if prefix.is_empty() { "rules." } else { prefix };
                return Err(self.error(
                    &format!("{prefix}target"),
                    format!("give exactly one of [{table}sheet] or [{table}erp]"),
                ));
            }
        })
    }

    fn error(&self, place: &str, reason: impl fmt::Display) -> RulesError {
        RulesError::invalid(self.rule, place, reason)
    }

    fn path(&self, place: &str, text: &str) -> Result<FieldPath, RulesError> {
        FieldPath::parse(text).map_err(|reason| self.error(place, reason))
    }

    fn scalar(&self, place: &str, value: toml::Value) -> Result<ScalarValue, RulesError> {
        Ok(match value {
            toml::Value::String(text) => ScalarValue::String(text),
            toml::Value::Integer(n) => ScalarValue::Long(n),
            toml::Value::Float(x) => ScalarValue::Double(x),
            toml::Value::Boolean(b) => ScalarValue::Boolean(b),
            other => {
                return Err(self.error(place, format!("{other} is not a text, number or boolean")));
            }
        })
    }

    fn erp_field(&self, place: &str, raw: RawField) -> Result<ErpFieldRule, RulesError> {
        match (raw.value, raw.each, raw.fields) {
            (Some(value), None, None) => Ok(ErpFieldRule::One(Assignment {
                value: self.expr(place, value)?,
                name: raw.name,
            })),
            (None, Some(each), Some(fields)) => Ok(ErpFieldRule::Each {
                each: self.path(&format!("{place}.each"), &each)?,
                fields: fields
                    .into_iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let place = format!("{place}.fields[{i}] {:?}", f.name);
                        Ok(Assignment {
                            value: self.expr(&place, f.value)?,
                            name: f.name,
                        })
                    })
                    .collect::<Result<_, RulesError>>()?,
                name: raw.name,
            }),
            _ => Err(self.error(
                place,
                "give a value, or each (a list) with the fields of each item",
            )),
        }
    }

    fn condition(&self, place: &str, raw: RawCondition) -> Result<Condition, RulesError> {
        let field = self.path(place, &raw.field)?;
        Ok(
            match (raw.equals, raw.not_equals, raw.one_of, raw.present) {
                (Some(value), None, None, None) => {
                    Condition::Equals(field, self.scalar(place, value)?)
                }
                (None, Some(value), None, None) => {
                    Condition::NotEquals(field, self.scalar(place, value)?)
                }
                (None, None, Some(values), None) => Condition::In(
                    field,
                    values
                        .into_iter()
                        .map(|value| self.scalar(place, value))
                        .collect::<Result<_, _>>()?,
                ),
                (None, None, None, Some(present)) => Condition::Present(field, present),
                _ => {
                    return Err(
                        self.error(place, "give exactly one of equals, not_equals, in, present")
                    );
                }
            },
        )
    }

    /// The parts of a `kind` (sum, product, concat), each placed by index.
    fn parts(&self, place: &str, kind: &str, parts: Vec<RawExpr>) -> Result<Vec<Expr>, RulesError> {
        parts
            .into_iter()
            .enumerate()
            .map(|(i, part)| self.expr(&format!("{place}.{kind}[{i}]"), part))
            .collect()
    }

    fn expr(&self, place: &str, raw: RawExpr) -> Result<Expr, RulesError> {
        let RawExpr {
            copy,
            constant,
            date,
            format,
            number,
            divide_by,
            decimals,
            sum,
            product,
            concat,
            separator,
            lookup,
            table,
            default,
        } = raw;
        let kinds = [
            ("copy", copy.is_some()),
            ("constant", constant.is_some()),
            ("date", date.is_some()),
            ("number", number.is_some()),
            ("sum", sum.is_some()),
            ("product", product.is_some()),
            ("concat", concat.is_some()),
            ("lookup", lookup.is_some()),
        ];
        let mut given = kinds
            .iter()
            .filter(|(_, given)| *given)
            .map(|(kind, _)| *kind);
        let (Some(kind), None) = (given.next(), given.next()) else {
            return Err(self.error(
                place,
                "give exactly one of copy, constant, date, number, sum, product, concat, lookup",
            ));
        };
        const NUMBERS: &[&str] = &["number", "sum", "product"];
        let options: [(&str, bool, &[&str]); 5] = [
            ("format", format.is_some(), &["date"]),
            ("divide_by", divide_by.is_some(), NUMBERS),
            ("decimals", decimals.is_some(), NUMBERS),
            ("separator", separator.is_some(), &["concat"]),
            ("table", table.is_some(), &["lookup"]),
        ];
        if let Some((option, _, owners)) = options
            .iter()
            .find(|(_, given, owners)| *given && !owners.contains(&kind))
        {
            let owners = owners.join(" or ");
            return Err(self.error(place, format!("{option} goes with {owners}, not {kind}")));
        }
        let divide_by = divide_by.unwrap_or(1.0);
        if divide_by == 0.0 || !divide_by.is_finite() {
            return Err(self.error(place, "divide_by must be a non-zero number"));
        }
        if default.is_some() && !matches!(kind, "copy" | "lookup") {
            return Err(self.error(
                place,
                format!("default goes with copy or lookup, not {kind}"),
            ));
        }
        if let Some(path) = copy {
            return Ok(Expr::Copy {
                field: self.path(place, &path)?,
                default: default.map(|value| self.scalar(place, value)).transpose()?,
            });
        }
        if let Some(value) = constant {
            return Ok(Expr::Constant(self.scalar(place, value)?));
        }
        if let Some(path) = date {
            return Ok(Expr::Date {
                field: self.path(place, &path)?,
                format: DateFormat::parse(
                    &format.ok_or_else(|| self.error(place, "date needs a format"))?,
                )
                .map_err(|reason| self.error(place, reason))?,
            });
        }
        if let Some(path) = number {
            return Ok(Expr::Number {
                field: self.path(place, &path)?,
                divide_by,
                decimals,
            });
        }
        for (op, parts) in [(Op::Sum, sum), (Op::Product, product)] {
            let Some(parts) = parts else { continue };
            if parts.len() < 2 {
                return Err(self.error(place, format!("{kind} needs two parts or more")));
            }
            return Ok(Expr::Arithmetic {
                op,
                parts: self.parts(place, kind, parts)?,
                divide_by,
                decimals,
            });
        }
        if let Some(parts) = concat {
            return Ok(Expr::Concat {
                parts: self.parts(place, kind, parts)?,
                separator: separator.unwrap_or_default(),
            });
        }
        let path = lookup.unwrap_or_default();
        let table = table.ok_or_else(|| self.error(place, "lookup needs a table"))?;
        if !self.lookups.contains_key(&table) {
            return Err(self.error(place, format!("no table {table:?} under [lookups]")));
        }
        let default = match default {
            None => None,
            Some(toml::Value::String(text)) => Some(text),
            Some(other) => {
                return Err(self.error(place, format!("a lookup's default is text, not {other}")));
            }
        };
        Ok(Expr::Lookup {
            field: self.path(place, &path)?,
            table,
            default,
        })
    }
}
