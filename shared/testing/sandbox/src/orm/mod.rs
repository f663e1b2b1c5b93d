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

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use self::schema::{Kind, Model};
pub use self::values::OdooError;
use self::values::convert;

/// One model's rows: id → stored values.
#[derive(Debug, Default, Clone)]
struct Table {
    next_id: i64,
    rows: BTreeMap<i64, Map<String, Value>>,
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
    /// The stored records of `model` (empty for a model it does not hold).
    pub fn table(&self, model: &str) -> BTreeMap<i64, Map<String, Value>> {
        self.tables
            .get(model)
            .map(|t| t.rows.clone())
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

    fn rows(&self, model: &Model) -> impl Iterator<Item = (&i64, &Map<String, Value>)> {
        self.tables
            .get(model.name)
            .into_iter()
            .flat_map(|t| t.rows.iter())
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

    fn row_mut(&mut self, model: &Model, id: i64) -> Option<&mut Map<String, Value>> {
        self.tables.get_mut(model.name)?.rows.get_mut(&id)
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
        table.rows.insert(id, values);
        self.apply_lines(model, id, prepared.lines);
        self.recompute(model, id);
        id
    }

    /// Writes checked values to existing records.
    fn update(&mut self, model: &'static Model, id: i64, prepared: methods::Prepared) {
        if let Some(row) = self.row_mut(model, id) {
            row.extend(prepared.values);
        }
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
                        table.rows.remove(&line);
                    }
                }
                methods::LineCommand::Clear(field) => {
                    if let Some((comodel, inverse)) = one2many(model, field)
                        && let Some(table) = self.tables.get_mut(comodel.name)
                    {
                        table
                            .rows
                            .retain(|_, row| row.get(inverse) != Some(&json!(id)));
                    }
                }
            }
        }
    }

    /// The ids of `model`'s records whose `inverse` is `id`, by sequence.
    fn children(&self, comodel: &Model, inverse: &str, id: i64) -> Vec<i64> {
        let mut found: Vec<(i64, i64)> = self
            .rows(comodel)
            .filter(|(_, row)| row.get(inverse) == Some(&json!(id)))
            .map(|(child, row)| {
                let sequence = row.get("sequence").and_then(Value::as_i64).unwrap_or(0);
                (sequence, *child)
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
                if let Some(row) = self.row_mut(model, id) {
                    row.insert("order_line".into(), json!(lines));
                    row.insert("amount_untaxed".into(), json!(untaxed));
                    row.insert("amount_tax".into(), json!(0.0));
                    row.insert("amount_total".into(), json!(untaxed));
                    row.insert("currency_id".into(), json!(1));
                    row.insert("invoice_status".into(), json!(invoice_status));
                    row.insert("display_name".into(), name);
                }
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
                    if let Some(row) = self.row_mut(line_model, *line) {
                        row.insert("price_subtotal".into(), json!(subtotal));
                        row.insert("price_total".into(), json!(subtotal));
                        row.insert("display_name".into(), label);
                    }
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
                if let Some(row) = self.row_mut(model, id) {
                    row.insert("invoice_line_ids".into(), json!(lines));
                    row.insert("amount_untaxed".into(), json!(untaxed));
                    row.insert("amount_tax".into(), json!(0.0));
                    row.insert("amount_total".into(), json!(untaxed));
                    row.insert("amount_residual".into(), json!(untaxed));
                    row.insert("payment_state".into(), json!("not_paid"));
                    row.insert("company_id".into(), json!(1));
                    row.insert("display_name".into(), display);
                }
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
                if let Some(row) = self.row_mut(model, id) {
                    row.insert("display_name".into(), display);
                }
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
        if let Some(row) = self.row_mut(model, line) {
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
        }
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
