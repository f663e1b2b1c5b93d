//! A small ORM holding the Odoo models the sinks touch, strict the way
//! Odoo's is: `create` / `write` refuse unknown fields and wrong values with
//! Odoo's exceptions, required fields are enforced, many2one values must
//! name an existing record, one2many fields take command triples, computed
//! totals come from the lines whatever is written, and `sale.order`'s
//! `action_confirm` / `action_cancel` follow sale_order.py's state rules.
//!
//! Every call runs under the sandbox's lock and validates before it
//! changes anything, so a refused call leaves no trace, as Odoo's rolled
//! back transaction does.

mod domain;
mod methods;
pub mod schema;
pub mod values;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use serde_json::{Map, Value, json};

use self::schema::{Kind, Model};
pub use self::values::OdooError;
use self::values::convert;

/// One model's rows: id → stored values, and which rows hold each scalar
/// value of each field. Odoo answers a search from Postgres's indexes; a
/// scan per search here made the sandbox, not the fleet, the ceiling of
/// the saga benchmark (sale orders and partners grow by one per saga: ~10
/// ms a call at 1 500 of them, 50 sagas/s, most of the benchmark process's
/// time in `Database::value`, seen with perf).
#[derive(Debug, Default, Clone)]
struct Table {
    next_id: i64,
    rows: BTreeMap<i64, Map<String, Value>>,
    index: HashMap<String, HashMap<String, BTreeSet<i64>>>,
}

/// A scalar value's key in a table's index, equal where the domain's `=`
/// finds two values the same (numbers as numbers: 1 and 1.0); None for
/// what is not indexed (false, null, lists).
fn index_key(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(format!("s{text}")),
        Value::Number(number) => number.as_f64().map(|x| format!("n{x:?}")),
        Value::Bool(true) => Some("t".into()),
        _ => None,
    }
}

impl Table {
    /// Stores `row` as record `id`, replacing what was there.
    fn put(&mut self, id: i64, row: Map<String, Value>) {
        self.remove(id);
        for (field, value) in &row {
            if let Some(key) = index_key(value) {
                let ids = self.index.entry(field.clone()).or_default();
                ids.entry(key).or_default().insert(id);
            }
        }
        self.rows.insert(id, row);
    }

    /// Deletes record `id`.
    fn remove(&mut self, id: i64) {
        let Some(row) = self.rows.remove(&id) else {
            return;
        };
        for (field, value) in &row {
            if let (Some(key), Some(ids)) = (index_key(value), self.index.get_mut(field))
                && let Some(holding) = ids.get_mut(&key)
            {
                holding.remove(&id);
            }
        }
    }

    /// Changes record `id` through `change`, keeping the index.
    fn edit(&mut self, id: i64, change: impl FnOnce(&mut Map<String, Value>)) {
        if let Some(mut row) = self.rows.get(&id).cloned() {
            change(&mut row);
            self.put(id, row);
        }
    }

    /// The records whose `field` holds `value` (a value [`index_key`]
    /// keys), in id order.
    fn holding(&self, field: &str, value: &Value) -> Option<Vec<i64>> {
        let key = index_key(value)?;
        Some(
            self.index
                .get(field)
                .and_then(|ids| ids.get(&key))
                .map(|ids| ids.iter().copied().collect())
                .unwrap_or_default(),
        )
    }
}

/// The ERP's records.
#[derive(Debug)]
pub struct Database {
    tables: BTreeMap<&'static str, Table>,
}

/// The products the demo, the chaos run and the tests order, by internal
/// reference (`default_code`): (reference, name, price).
fn catalogue() -> Vec<(String, String, f64)> {
    let mut products: Vec<(String, String, f64)> = (0..50)
        .map(|i| (format!("TEA-{i}"), "Assam tea".to_owned(), 6.5))
        .collect();
    for (code, name, price) in [
        ("MUG-1", "Mug", 9.0),
        ("SKU-1", "Widget", 12.5),
        ("SKU-2", "Gadget", 4.99),
        ("S-1", "Tea", 6.5),
    ] {
        products.push((code.to_owned(), name.to_owned(), price));
    }
    products
}

impl Default for Database {
    /// A fresh database: one company in EUR, and the catalogue's products.
    fn default() -> Self {
        let mut db = Self {
            tables: schema::MODELS
                .iter()
                .map(|m| (m.name, Table::default()))
                .collect(),
        };
        let seed = |db: &mut Self, model: &'static Model, values: Value| {
            if let Value::Object(values) = values {
                let prepared = methods::Prepared {
                    values,
                    lines: Vec::new(),
                };
                db.insert(model, prepared, None);
            }
        };
        seed(
            &mut db,
            &schema::RES_CURRENCY,
            json!({"name": "EUR", "symbol": "€"}),
        );
        seed(
            &mut db,
            &schema::RES_COMPANY,
            json!({"name": "Sluice Sandbox", "currency_id": 1}),
        );
        for (code, name, price) in catalogue() {
            seed(
                &mut db,
                &schema::PRODUCT_PRODUCT,
                json!({"name": name, "default_code": code, "lst_price": price,
                       "active": true, "sale_ok": true, "type": "consu"}),
            );
        }
        db
    }
}

impl Database {
    /// The stored records of `model` whose id is above `after` (empty for a
    /// model it does not hold).
    pub fn table(&self, model: &str, after: i64) -> BTreeMap<i64, Map<String, Value>> {
        self.tables
            .get(model)
            .map(|t| {
                t.rows
                    .range((Bound::Excluded(after), Bound::Unbounded))
                    .map(|(id, row)| (*id, row.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs `method` of `model` as `execute_kw` does.
    pub fn call(
        &mut self,
        model: &str,
        method: &str,
        args: &[Value],
        kwargs: &Map<String, Value>,
    ) -> Result<Value, OdooError> {
        let model = schema::model(model)
            .ok_or_else(|| OdooError::user(format!("Object {model} doesn't exist")))?;
        methods::call(self, model, method, args, kwargs)
    }

    fn exists(&self, model: &str, id: i64) -> bool {
        self.tables
            .get(model)
            .is_some_and(|t| t.rows.contains_key(&id))
    }

    /// A stored value; `false` where none is.
    fn value(&self, model: &Model, id: i64, field: &str) -> Value {
        self.tables
            .get(model.name)
            .and_then(|t| t.rows.get(&id))
            .and_then(|row| row.get(field))
            .cloned()
            .unwrap_or(Value::Bool(false))
    }

    /// Changes a stored record through `change`.
    fn edit(&mut self, model: &Model, id: i64, change: impl FnOnce(&mut Map<String, Value>)) {
        if let Some(table) = self.tables.get_mut(model.name) {
            table.edit(id, change);
        }
    }

    /// The ids of `model`'s records that may match `domain`, in id order:
    /// those an `=` of its top level finds in the index, else all.
    fn candidates(&self, model: &Model, domain: &domain::Domain) -> Vec<i64> {
        let Some(table) = self.tables.get(model.name) else {
            return Vec::new();
        };
        domain
            .equalities()
            .find_map(|(field, value)| table.holding(field, value))
            .unwrap_or_else(|| table.rows.keys().copied().collect())
    }

    /// `value` for `field` as the ORM stores it.
    fn convert(
        &self,
        model: &Model,
        field: &schema::Field,
        value: &Value,
    ) -> Result<Value, OdooError> {
        convert(model, field, value, |comodel, id| self.exists(comodel, id))
    }

    /// Inserts checked values; the new id.
    fn insert(
        &mut self,
        model: &'static Model,
        prepared: methods::Prepared,
        parent: Option<(&'static str, i64)>,
    ) -> i64 {
        let table = self.tables.entry(model.name).or_default();
        table.next_id += 1;
        let id = table.next_id;
        let mut values = prepared.values;
        if let Some((field, parent_id)) = parent {
            values.insert(field.into(), json!(parent_id));
        }
        if model.name == "sale.order" && values.get("name").is_none_or(|n| n == "New") {
            // ir.sequence `sale.order`: S00001, S00002, …
            values.insert("name".into(), json!(format!("S{id:05}")));
        }
        table.put(id, values);
        self.apply_lines(model, id, prepared.lines);
        self.recompute(model, id);
        id
    }

    /// Writes checked values to existing records.
    fn update(&mut self, model: &'static Model, id: i64, prepared: methods::Prepared) {
        self.edit(model, id, |row| row.extend(prepared.values));
        self.apply_lines(model, id, prepared.lines);
        self.recompute(model, id);
    }

    fn apply_lines(&mut self, model: &'static Model, id: i64, lines: Vec<methods::LineCommand>) {
        for command in lines {
            match command {
                methods::LineCommand::Create(field, prepared) => {
                    if let Some((comodel, inverse)) = one2many(model, field) {
                        self.insert(comodel, prepared, Some((inverse, id)));
                    }
                }
                methods::LineCommand::Update(field, line, prepared) => {
                    if let Some((comodel, _)) = one2many(model, field) {
                        self.update(comodel, line, prepared);
                    }
                }
                methods::LineCommand::Delete(field, line) => {
                    if let Some((comodel, _)) = one2many(model, field)
                        && let Some(table) = self.tables.get_mut(comodel.name)
                    {
                        table.remove(line);
                    }
                }
                methods::LineCommand::Clear(field) => {
                    if let Some((comodel, inverse)) = one2many(model, field)
                        && let Some(table) = self.tables.get_mut(comodel.name)
                    {
                        for line in table.holding(inverse, &json!(id)).unwrap_or_default() {
                            table.remove(line);
                        }
                    }
                }
            }
        }
    }

    /// The ids of `model`'s records whose `inverse` is `id`, by sequence.
    fn children(&self, comodel: &Model, inverse: &str, id: i64) -> Vec<i64> {
        let Some(table) = self.tables.get(comodel.name) else {
            return Vec::new();
        };
        let mut found: Vec<(i64, i64)> = table
            .holding(inverse, &json!(id))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|child| {
                let row = table.rows.get(&child)?;
                let sequence = row.get("sequence").and_then(Value::as_i64).unwrap_or(0);
                Some((sequence, child))
            })
            .collect();
        found.sort_unstable();
        found.into_iter().map(|(_, child)| child).collect()
    }

    /// The stored computed fields of a record (and of its lines / order).
    fn recompute(&mut self, model: &'static Model, id: i64) {
        match model.name {
            "sale.order" => {
                let lines = self.children(&schema::SALE_ORDER_LINE, "order_id", id);
                for line in &lines {
                    self.recompute_line(*line, id);
                }
                let untaxed: f64 = lines
                    .iter()
                    .filter_map(|line| {
                        self.value(&schema::SALE_ORDER_LINE, *line, "price_subtotal")
                            .as_f64()
                    })
                    .sum();
                let untaxed = round2(untaxed);
                let state = self.value(model, id, "state");
                let invoice_status = if state == "sale" { "to invoice" } else { "no" };
                let name = self.value(model, id, "name");
                self.edit(model, id, |row| {
                    row.insert("order_line".into(), json!(lines));
                    row.insert("amount_untaxed".into(), json!(untaxed));
                    row.insert("amount_tax".into(), json!(0.0));
                    row.insert("amount_total".into(), json!(untaxed));
                    row.insert("currency_id".into(), json!(1));
                    row.insert("invoice_status".into(), json!(invoice_status));
                    row.insert("display_name".into(), name);
                });
            }
            "sale.order.line" => {
                if let Some(order) = self.value(model, id, "order_id").as_i64() {
                    self.recompute(&schema::SALE_ORDER, order);
                }
            }
            "account.move" => {
                let line_model = &schema::ACCOUNT_MOVE_LINE;
                let lines = self.children(line_model, "move_id", id);
                let mut untaxed = 0.0;
                for line in &lines {
                    let number = |db: &Self, field| db.value(line_model, *line, field).as_f64();
                    let subtotal = round2(
                        number(self, "quantity").unwrap_or(0.0)
                            * number(self, "price_unit").unwrap_or(0.0)
                            * (1.0 - number(self, "discount").unwrap_or(0.0) / 100.0),
                    );
                    untaxed += subtotal;
                    let label = self.value(line_model, *line, "name");
                    self.edit(line_model, *line, |row| {
                        row.insert("price_subtotal".into(), json!(subtotal));
                        row.insert("price_total".into(), json!(subtotal));
                        row.insert("display_name".into(), label);
                    });
                }
                let untaxed = round2(untaxed);
                let name = self.value(model, id, "name");
                // A draft's number is "/": `_get_move_display_name` shows
                // "Draft Invoice (* 7)".
                let display = if name == "/" {
                    let kind = match self.value(model, id, "move_type").as_str() {
                        Some("out_invoice") => "Draft Invoice",
                        Some("out_refund") => "Draft Credit Note",
                        Some("in_invoice") => "Draft Bill",
                        _ => "Draft Entry",
                    };
                    json!(format!("{kind} (* {id})"))
                } else {
                    name
                };
                self.edit(model, id, |row| {
                    row.insert("invoice_line_ids".into(), json!(lines));
                    row.insert("amount_untaxed".into(), json!(untaxed));
                    row.insert("amount_tax".into(), json!(0.0));
                    row.insert("amount_total".into(), json!(untaxed));
                    row.insert("amount_residual".into(), json!(untaxed));
                    row.insert("payment_state".into(), json!("not_paid"));
                    row.insert("company_id".into(), json!(1));
                    row.insert("display_name".into(), display);
                });
            }
            "account.move.line" => {
                if let Some(entry) = self.value(model, id, "move_id").as_i64() {
                    self.recompute(&schema::ACCOUNT_MOVE, entry);
                }
            }
            _ => {
                let name = self.value(model, id, "name");
                let code = self.value(model, id, "default_code");
                let display = match (name.as_str(), code.as_str()) {
                    (Some(name), Some(code)) if !code.is_empty() => {
                        json!(format!("[{code}] {name}"))
                    }
                    _ => name,
                };
                self.edit(model, id, |row| {
                    row.insert("display_name".into(), display);
                });
            }
        }
    }

    fn recompute_line(&mut self, line: i64, order: i64) {
        let model = &schema::SALE_ORDER_LINE;
        let number = |db: &Self, field| db.value(model, line, field).as_f64().unwrap_or(0.0);
        let subtotal = round2(
            number(self, "product_uom_qty")
                * number(self, "price_unit")
                * (1.0 - number(self, "discount") / 100.0),
        );
        let state = self.value(&schema::SALE_ORDER, order, "state");
        let partner = self.value(&schema::SALE_ORDER, order, "partner_id");
        let order_name = self.value(&schema::SALE_ORDER, order, "name");
        let name = self.value(model, line, "name");
        self.edit(model, line, |row| {
            row.insert("price_subtotal".into(), json!(subtotal));
            row.insert("price_tax".into(), json!(0.0));
            row.insert("price_total".into(), json!(subtotal));
            row.insert("state".into(), state);
            row.insert("order_partner_id".into(), partner);
            row.insert("company_id".into(), json!(1));
            row.insert("currency_id".into(), json!(1));
            let first = name
                .as_str()
                .and_then(|n| n.lines().next())
                .unwrap_or_default();
            row.insert(
                "display_name".into(),
                json!(format!(
                    "{} - {first}",
                    order_name.as_str().unwrap_or_default()
                )),
            );
        });
    }

    /// A record as `read` answers it: many2one as `[id, display_name]`,
    /// one2many as ids, unset as `false`.
    fn read_row(&self, model: &'static Model, id: i64, fields: &[&'static schema::Field]) -> Value {
        let mut row = Map::new();
        row.insert("id".into(), json!(id));
        for field in fields {
            let value = match field.kind {
                Kind::Many2one(comodel) => match self.value(model, id, field.name).as_i64() {
                    Some(target) => {
                        let name = schema::model(comodel)
                            .map(|m| self.value(m, target, "display_name"))
                            .unwrap_or(Value::Bool(false));
                        json!([target, name])
                    }
                    None => Value::Bool(false),
                },
                Kind::One2many(comodel, inverse) => match schema::model(comodel) {
                    Some(comodel) => json!(self.children(comodel, inverse, id)),
                    None => json!([]),
                },
                _ => self.value(model, id, field.name),
            };
            row.insert(field.name.into(), value);
        }
        Value::Object(row)
    }
}

/// The comodel and inverse field of `model`'s one2many `field`.
fn one2many(model: &Model, field: &str) -> Option<(&'static Model, &'static str)> {
    match model.field(field)?.kind {
        Kind::One2many(comodel, inverse) => Some((schema::model(comodel)?, inverse)),
        _ => None,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
