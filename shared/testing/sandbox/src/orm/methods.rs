//! The model methods the external API calls: `create`, `write`, `read`,
//! `search`, `search_read`, `search_count`, `fields_get`, `name_search`, and
//! `sale.order`'s `action_confirm`, `action_cancel`, `action_draft`,
//! `action_lock`, `action_unlock` (addons/sale/models/sale_order.py), and
//! `account.move`'s `action_post`, `button_cancel`, `button_draft`
//! (addons/account/models/account_move.py).

use serde_json::{Map, Value, json};

use super::Database;
use super::domain::Domain;
use super::schema::{self, Field, Kind, Model};
use super::values::{OdooError, repr, truthy};

/// Checked values for one record, and its one2many commands.
#[derive(Debug)]
pub struct Prepared {
    pub values: Map<String, Value>,
    pub lines: Vec<LineCommand>,
}

/// A checked one2many command (fields.py `Command`), with its field.
#[derive(Debug)]
pub enum LineCommand {
    /// `(0, 0, vals)`.
    Create(&'static str, Prepared),
    /// `(1, id, vals)`.
    Update(&'static str, i64, Prepared),
    /// `(2, id, 0)` and `(3, id, 0)`: a line cannot live without its order.
    Delete(&'static str, i64),
    /// `(5, 0, 0)`.
    Clear(&'static str),
}

/// Positional argument `index` or keyword `name`.
fn arg<'a>(
    args: &'a [Value],
    kwargs: &'a Map<String, Value>,
    index: usize,
    name: &str,
) -> Option<&'a Value> {
    kwargs
        .get(name)
        .or_else(|| args.get(index))
        .filter(|v| !v.is_null())
}

/// The record ids a method is called on (`[1, 2]` or `1`).
fn ids_of(value: Option<&Value>) -> Vec<i64> {
    match value {
        Some(Value::Array(ids)) => ids.iter().filter_map(Value::as_i64).collect(),
        Some(Value::Number(id)) => id.as_i64().into_iter().collect(),
        _ => Vec::new(),
    }
}

pub fn call(
    db: &mut Database,
    model: &'static Model,
    method: &str,
    args: &[Value],
    kwargs: &Map<String, Value>,
) -> Result<Value, OdooError> {
    match method {
        "create" => create(db, model, args.first().or_else(|| kwargs.get("vals_list"))),
        "write" => {
            let ids = ids_of(args.first());
            let values = arg(args, kwargs, 1, "vals")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            write(db, model, &ids, &values).map(|()| json!(true))
        }
        "read" => {
            let ids = ids_of(args.first());
            let fields = fields_of(model, arg(args, kwargs, 1, "fields"))?;
            check_exist(db, model, &ids)?;
            Ok(json!(
                ids.iter()
                    .map(|id| db.read_row(model, *id, &fields))
                    .collect::<Vec<_>>()
            ))
        }
        "search" | "search_read" | "search_count" => {
            let read = method == "search_read";
            let domain = arg(args, kwargs, 0, "domain")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let (fields, offset, limit, order) = if read {
                (
                    arg(args, kwargs, 1, "fields"),
                    arg(args, kwargs, 2, "offset"),
                    arg(args, kwargs, 3, "limit"),
                    arg(args, kwargs, 4, "order"),
                )
            } else {
                (
                    None,
                    arg(args, kwargs, 1, "offset"),
                    arg(args, kwargs, 2, "limit"),
                    arg(args, kwargs, 3, "order"),
                )
            };
            let fields = if read {
                Some(fields_of(model, fields)?)
            } else {
                None
            };
            let mut ids = search(db, model, &domain)?;
            if method == "search_count" {
                return Ok(json!(ids.len()));
            }
            if order
                .and_then(Value::as_str)
                .is_some_and(|o| o.trim().eq_ignore_ascii_case("id desc"))
            {
                ids.reverse();
            }
            let offset = offset
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0);
            let limit = limit
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(usize::MAX);
            let ids: Vec<i64> = ids.into_iter().skip(offset).take(limit).collect();
            Ok(match fields {
                Some(fields) => json!(
                    ids.iter()
                        .map(|id| db.read_row(model, *id, &fields))
                        .collect::<Vec<_>>()
                ),
                None => json!(ids),
            })
        }
        "fields_get" => Ok(fields_get(
            model,
            arg(args, kwargs, 0, "allfields"),
            arg(args, kwargs, 1, "attributes"),
        )),
        "name_search" => {
            let name = arg(args, kwargs, 0, "name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_lowercase();
            let domain = arg(args, kwargs, 1, "domain")
                .or_else(|| kwargs.get("args"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let limit = arg(args, kwargs, 3, "limit")
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(100);
            let found: Vec<Value> = search(db, model, &domain)?
                .into_iter()
                .filter_map(|id| {
                    let display = db.value(model, id, "display_name");
                    let text = display.as_str().unwrap_or_default().to_lowercase();
                    text.contains(&name).then(|| json!([id, display]))
                })
                .take(limit)
                .collect();
            Ok(json!(found))
        }
        "action_confirm" | "action_cancel" | "action_draft" | "action_lock" | "action_unlock"
            if model.name == "sale.order" =>
        {
            let ids = ids_of(args.first());
            check_exist(db, model, &ids)?;
            let context = kwargs
                .get("context")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            sale_order_action(db, model, method, &ids, &context)
        }
        "action_post" | "button_cancel" | "button_draft" if model.name == "account.move" => {
            let ids = ids_of(args.first());
            check_exist(db, model, &ids)?;
            account_move_action(db, model, method, &ids)
        }
        other => Err(OdooError::new(
            "builtins.AttributeError",
            format!("type object '{}' has no attribute '{other}'", model.name),
        )),
    }
}

fn check_exist(db: &Database, model: &Model, ids: &[i64]) -> Result<(), OdooError> {
    let missing: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|id| !db.exists(model.name, *id))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(OdooError::missing(model.name, &missing))
    }
}

/// The fields a `read` names (all without a list); an unknown one refused.
fn fields_of(model: &Model, names: Option<&Value>) -> Result<Vec<&'static Field>, OdooError> {
    let names: Vec<&str> = names
        .and_then(Value::as_array)
        .map(|n| n.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if names.is_empty() {
        return Ok(model.fields.iter().collect());
    }
    names
        .into_iter()
        .filter(|name| *name != "id")
        .map(|name| {
            model
                .field(name)
                .ok_or_else(|| OdooError::invalid_field(name, model.name))
        })
        .collect()
}

fn search(db: &Database, model: &'static Model, domain: &[Value]) -> Result<Vec<i64>, OdooError> {
    let domain = Domain::parse(model, domain)?;
    // Archived records are left out unless the domain asks about `active`.
    let active = model.field("active").is_some();
    Ok(db
        .candidates(model, &domain)
        .into_iter()
        .filter(|id| !active || db.value(model, *id, "active") != json!(false))
        .filter(|id| domain.matches(db, model, *id))
        .collect())
}

fn fields_get(model: &Model, allfields: Option<&Value>, attributes: Option<&Value>) -> Value {
    let wanted: Vec<&str> = allfields
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let attributes: Vec<&str> = attributes
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut all = Map::new();
    let id = json!({"type": "integer", "string": "ID", "required": false, "readonly": true, "store": true});
    all.insert("id".into(), id);
    for field in model.fields {
        let mut description = Map::new();
        description.insert("type".into(), json!(field.kind.name()));
        description.insert("string".into(), json!(field.string));
        description.insert("required".into(), json!(field.required));
        description.insert("readonly".into(), json!(field.readonly));
        description.insert("store".into(), json!(field.name != "display_name"));
        match field.kind {
            Kind::Many2one(comodel) => {
                description.insert("relation".into(), json!(comodel));
            }
            Kind::One2many(comodel, inverse) => {
                description.insert("relation".into(), json!(comodel));
                description.insert("relation_field".into(), json!(inverse));
            }
            Kind::Selection(choices) => {
                description.insert(
                    "selection".into(),
                    json!(
                        choices
                            .iter()
                            .map(|(k, l)| json!([k, l]))
                            .collect::<Vec<_>>()
                    ),
                );
            }
            _ => {}
        }
        all.insert(field.name.into(), Value::Object(description));
    }
    let all = all
        .into_iter()
        .filter(|(name, _)| wanted.is_empty() || wanted.contains(&name.as_str()))
        .map(|(name, description)| {
            let description = match description {
                Value::Object(d) if !attributes.is_empty() => Value::Object(
                    d.into_iter()
                        .filter(|(a, _)| attributes.contains(&a.as_str()))
                        .collect(),
                ),
                other => other,
            };
            (name, description)
        })
        .collect();
    Value::Object(all)
}

fn create(
    db: &mut Database,
    model: &'static Model,
    vals: Option<&Value>,
) -> Result<Value, OdooError> {
    let (list, single) = match vals {
        Some(Value::Array(list)) => (list.clone(), false),
        Some(one @ Value::Object(_)) => (vec![one.clone()], true),
        _ => {
            return Err(OdooError::new(
                "builtins.TypeError",
                "create() missing 1 required positional argument: 'vals_list'",
            ));
        }
    };
    let mut prepared = Vec::with_capacity(list.len());
    for vals in &list {
        let vals = vals
            .as_object()
            .ok_or_else(|| OdooError::value(format!("Wrong value for create: {}", repr(vals))))?;
        // account_move.py `create`.
        if model.name == "account.move" && vals.get("state") == Some(&json!("posted")) {
            return Err(OdooError::user(
                "You cannot create a move already in the posted state. Please create a draft move and post it after.",
            ));
        }
        prepared.push(prepare(db, model, vals, true, None)?);
    }
    let ids: Vec<i64> = prepared
        .into_iter()
        .map(|p| db.insert(model, p, None))
        .collect();
    Ok(if single { json!(ids[0]) } else { json!(ids) })
}

fn write(
    db: &mut Database,
    model: &'static Model,
    ids: &[i64],
    vals: &Map<String, Value>,
) -> Result<(), OdooError> {
    check_exist(db, model, ids)?;
    let mut prepared = Vec::with_capacity(ids.len());
    for id in ids {
        prepared.push((*id, prepare(db, model, vals, false, Some(*id))?));
    }
    for (id, p) in prepared {
        db.update(model, id, p);
    }
    Ok(())
}

/// Checks `vals` for a record of `model` (new when `creating`, else the
/// existing `record`).
fn prepare(
    db: &Database,
    model: &'static Model,
    vals: &Map<String, Value>,
    creating: bool,
    record: Option<i64>,
) -> Result<Prepared, OdooError> {
    prepare_in(db, model, vals, creating, record, None)
}

/// [`prepare`] for a line: `parent` is the inverse field its order fills
/// in, so it is not required of the line's own values.
fn prepare_in(
    db: &Database,
    model: &'static Model,
    vals: &Map<String, Value>,
    creating: bool,
    record: Option<i64>,
    parent: Option<&'static str>,
) -> Result<Prepared, OdooError> {
    let mut values = Map::new();
    let mut lines = Vec::new();
    for (name, value) in vals {
        if name == "id" {
            continue;
        }
        let field = model
            .field(name)
            .ok_or_else(|| OdooError::invalid_field(name, model.name))?;
        if field.computed {
            // Recomputed from its dependencies whatever is written.
            continue;
        }
        if let Kind::One2many(comodel, inverse) = field.kind {
            lines.extend(commands(db, model, field, comodel, inverse, record, value)?);
            continue;
        }
        values.insert(field.name.into(), db.convert(model, field, value)?);
    }
    if creating {
        defaults(db, model, &mut values);
        for field in model
            .fields
            .iter()
            .filter(|f| f.required && !f.computed && Some(f.name) != parent)
        {
            if values.get(field.name).is_none_or(|v| *v == json!(false)) {
                return Err(OdooError::not_null(model, field));
            }
        }
    } else if let Some(field) = model
        .fields
        .iter()
        .find(|f| f.required && values.get(f.name) == Some(&json!(false)))
    {
        return Err(OdooError::not_null(model, field));
    }
    constraints(db, model, &values, record)?;
    Ok(Prepared { values, lines })
}

/// One2many command triples (fields.py `Command`).
fn commands(
    db: &Database,
    model: &'static Model,
    field: &'static Field,
    comodel: &str,
    inverse: &'static str,
    record: Option<i64>,
    value: &Value,
) -> Result<Vec<LineCommand>, OdooError> {
    let comodel =
        schema::model(comodel).ok_or_else(|| OdooError::wrong_value(model, field, value))?;
    let Some(list) = value.as_array() else {
        return Err(OdooError::wrong_value(model, field, value));
    };
    // account_move_line.py `_unlink_except_posted`: a posted entry's lines
    // stay (a write replacing them is refused whole).
    let posted = model.name == "account.move"
        && record.is_some_and(|id| db.value(model, id, "state") == "posted");
    let mut out = Vec::with_capacity(list.len());
    for command in list {
        let parts = command.as_array().map(Vec::as_slice).unwrap_or_default();
        let code = parts.first().and_then(Value::as_i64);
        let target = parts.get(1).and_then(Value::as_i64).unwrap_or(0);
        let vals = parts.get(2).and_then(Value::as_object);
        let owned =
            |line: i64| record.is_some_and(|r| db.value(comodel, line, inverse) == json!(r));
        if posted && matches!(code, Some(2 | 3 | 5)) {
            return Err(OdooError::user(
                "You cannot delete an item linked to a posted entry.",
            ));
        }
        out.push(match (code, vals) {
            (Some(0), Some(vals)) => LineCommand::Create(
                field.name,
                prepare_in(db, comodel, vals, true, None, Some(inverse))?,
            ),
            (Some(1), Some(vals)) if owned(target) => LineCommand::Update(
                field.name,
                target,
                prepare_in(db, comodel, vals, false, Some(target), Some(inverse))?,
            ),
            (Some(2 | 3), _) if owned(target) => LineCommand::Delete(field.name, target),
            (Some(1..=3), _) => return Err(OdooError::missing(comodel.name, &[target])),
            (Some(5), _) => LineCommand::Clear(field.name),
            _ => {
                return Err(OdooError::value(format!(
                    "Wrong value for {}.{}: {}",
                    model.name,
                    field.name,
                    repr(command)
                )));
            }
        });
    }
    Ok(out)
}

/// Default values, and those computed from others at creation.
fn defaults(db: &Database, model: &Model, values: &mut Map<String, Value>) {
    let mut default = |name: &str, value: Value| {
        if values.get(name).is_none() {
            values.insert(name.into(), value);
        }
    };
    match model.name {
        "sale.order" => {
            default("name", json!("New"));
            default("company_id", json!(1));
            default("state", json!("draft"));
            default("locked", json!(false));
            default("date_order", json!(now()));
            let partner = values.get("partner_id").cloned().unwrap_or(json!(false));
            for address in ["partner_invoice_id", "partner_shipping_id"] {
                if values.get(address).is_none_or(|v| !truthy(v)) {
                    values.insert(address.into(), partner.clone());
                }
            }
        }
        "sale.order.line" => {
            default("sequence", json!(10));
            default("product_uom_qty", json!(1.0));
            default("discount", json!(0.0));
            default("display_type", json!(false));
            from_product(db, values);
        }
        "account.move" => {
            default("name", json!("/"));
            default("move_type", json!("entry"));
            default("state", json!("draft"));
            default("currency_id", json!(1));
            // The accounting date is the invoice's, else today.
            if values.get("date").is_none() {
                let date = values
                    .get("invoice_date")
                    .filter(|date| truthy(date))
                    .cloned()
                    .unwrap_or_else(|| json!(today()));
                values.insert("date".into(), date);
            }
        }
        "account.move.line" => {
            default("sequence", json!(10));
            default("display_type", json!("product"));
            default("quantity", json!(1.0));
            default("discount", json!(0.0));
            from_product(db, values);
        }
        "res.partner" => {
            default("active", json!(true));
            default("type", json!("contact"));
            default("is_company", json!(false));
            default("customer_rank", json!(0));
        }
        "product.product" => {
            default("active", json!(true));
            default("sale_ok", json!(true));
            default("type", json!("consu"));
            default("lst_price", json!(0.0));
        }
        _ => {}
    }
}

/// A line's description and unit price, where not given, from its product
/// (sale and invoice lines alike compute them so).
fn from_product(db: &Database, values: &mut Map<String, Value>) {
    let Some(product) = values.get("product_id").and_then(Value::as_i64) else {
        return;
    };
    let model = &schema::PRODUCT_PRODUCT;
    if values.get("name").is_none_or(|v| !truthy(v)) {
        values.insert("name".into(), db.value(model, product, "display_name"));
    }
    if values.get("price_unit").is_none_or(|v| *v == json!(false)) {
        values.insert("price_unit".into(), db.value(model, product, "lst_price"));
    }
}

/// The SQL constraints of the models, as `_as_validation_error` words them.
fn constraints(
    db: &Database,
    model: &Model,
    values: &Map<String, Value>,
    record: Option<i64>,
) -> Result<(), OdooError> {
    let current = |name: &str| match values.get(name) {
        Some(v) => v.clone(),
        None => record.map_or(json!(false), |id| db.value(model, id, name)),
    };
    let refused = |message: &str| {
        Err(OdooError::new(
            "odoo.exceptions.ValidationError",
            format!("The operation cannot be completed: {message}"),
        ))
    };
    match model.name {
        // res_partner.py: check_name
        "res.partner" if current("type") == "contact" && !truthy(&current("name")) => {
            refused("Contacts require a name")
        }
        // sale_order_line.py: _accountable_required_fields
        "sale.order.line"
            if !truthy(&current("display_type")) && !truthy(&current("product_id")) =>
        {
            refused("Missing required fields on accountable sale order line.")
        }
        _ => Ok(()),
    }
}

fn sale_order_action(
    db: &mut Database,
    model: &'static Model,
    method: &str,
    ids: &[i64],
    context: &Map<String, Value>,
) -> Result<Value, OdooError> {
    let state = |db: &Database, id: i64| db.value(model, id, "state");
    let set = |db: &mut Database, values: Value| {
        if let Value::Object(values) = values {
            for id in ids {
                db.update(
                    model,
                    *id,
                    Prepared {
                        values: values.clone(),
                        lines: Vec::new(),
                    },
                );
            }
        }
    };
    match method {
        "action_confirm" => {
            // _confirmation_error_message
            for id in ids {
                let s = state(db, *id);
                if s != "draft" && s != "sent" {
                    return Err(OdooError::user(
                        "Some orders are not in a state requiring confirmation.",
                    ));
                }
                let lines = db.children(&schema::SALE_ORDER_LINE, "order_id", *id);
                let productless = lines.iter().any(|line| {
                    let line_model = &schema::SALE_ORDER_LINE;
                    !truthy(&db.value(line_model, *line, "display_type"))
                        && !truthy(&db.value(line_model, *line, "product_id"))
                });
                if productless {
                    return Err(OdooError::user(
                        "A line on these orders missing a product, you cannot confirm it.",
                    ));
                }
            }
            set(db, json!({"state": "sale", "date_order": now()}));
            Ok(json!(true))
        }
        "action_cancel" => {
            if ids
                .iter()
                .any(|id| db.value(model, *id, "locked") == json!(true))
            {
                return Err(OdooError::user(
                    "You cannot cancel a locked order. Please unlock it first.",
                ));
            }
            // _show_cancel_wizard: any order past draft, unless the context
            // says disable_cancel_warning; the wizard is returned, nothing done.
            let warn = !context.get("disable_cancel_warning").is_some_and(truthy)
                && ids.iter().any(|id| state(db, *id) != "draft");
            if warn {
                let [id] = ids else {
                    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
                    return Err(OdooError::value(format!(
                        "Expected singleton: sale.order({})",
                        list.join(", ")
                    )));
                };
                return Ok(json!({
                    "name": "Cancel Sales Order",
                    "view_mode": "form",
                    "res_model": "sale.order.cancel",
                    "type": "ir.actions.act_window",
                    "context": {"default_order_id": id, "mark_so_as_canceled": true},
                    "target": "new"
                }));
            }
            set(db, json!({"state": "cancel"}));
            Ok(json!(true))
        }
        "action_draft" => {
            let drafts: Vec<i64> = ids
                .iter()
                .copied()
                .filter(|id| {
                    let s = state(db, *id);
                    s == "cancel" || s == "sent"
                })
                .collect();
            for id in drafts {
                db.update(
                    model,
                    id,
                    Prepared {
                        values: json!({"state": "draft"})
                            .as_object()
                            .cloned()
                            .unwrap_or_default(),
                        lines: Vec::new(),
                    },
                );
            }
            Ok(json!(true))
        }
        "action_lock" => {
            set(db, json!({"locked": true}));
            Ok(json!(true))
        }
        _ => {
            set(db, json!({"locked": false}));
            Ok(json!(true))
        }
    }
}

/// `account.move`'s actions: each checks every move first and changes
/// none if one fails, as `_post` gathers its errors into one UserError.
fn account_move_action(
    db: &mut Database,
    model: &'static Model,
    method: &str,
    ids: &[i64],
) -> Result<Value, OdooError> {
    let text = |db: &Database, id: i64, field: &str| {
        db.value(model, id, field)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let set = |db: &mut Database, id: i64, values: Value| {
        let values = values.as_object().cloned().unwrap_or_default();
        db.update(
            model,
            id,
            Prepared {
                values,
                lines: Vec::new(),
            },
        );
    };
    match method {
        "action_post" => {
            // `_post` gathers its messages in a set: each once.
            let mut errors: Vec<String> = Vec::new();
            let mut refuse = |message: String| {
                if !errors.contains(&message) {
                    errors.push(message);
                }
            };
            for id in ids {
                let id = *id;
                let move_type = text(db, id, "move_type");
                let invoice = matches!(
                    move_type.as_str(),
                    "out_invoice" | "out_refund" | "in_invoice" | "in_refund"
                );
                let partnerless = !truthy(&db.value(model, id, "partner_id"));
                if partnerless && matches!(move_type.as_str(), "out_invoice" | "out_refund") {
                    refuse("The field 'Customer' is required, please complete it to validate the Customer Invoice.".into());
                }
                if partnerless && matches!(move_type.as_str(), "in_invoice" | "in_refund") {
                    refuse("The field 'Vendor' is required, please complete it to validate the Vendor Bill.".into());
                }
                if text(db, id, "state") != "draft" {
                    let name = text(db, id, "name");
                    refuse(format!("The entry {name} (id {id}) must be in draft."));
                }
                let line_model = &schema::ACCOUNT_MOVE_LINE;
                let lines = db.children(line_model, "move_id", id);
                if !lines
                    .iter()
                    .any(|line| db.value(line_model, *line, "display_type") == "product")
                {
                    refuse("You need to add a line before posting.".into());
                }
                let total = db.value(model, id, "amount_total").as_f64();
                if invoice && total.is_some_and(|total| total < 0.0) {
                    refuse("You cannot validate an invoice with a negative total amount. You should create a credit note instead. Use the action menu to transform it into a credit note or refund.".into());
                }
            }
            if !errors.is_empty() {
                return Err(OdooError::user(errors.join("\n")));
            }
            for id in ids {
                let id = *id;
                let mut values = json!({"state": "posted"});
                if text(db, id, "name") == "/" {
                    // The sale journal's sequence: INV/2026/00001, …
                    let prefix = match text(db, id, "move_type").as_str() {
                        "out_invoice" | "out_receipt" => "INV",
                        "out_refund" => "RINV",
                        "in_invoice" | "in_receipt" | "in_refund" => "BILL",
                        _ => "MISC",
                    };
                    let year = &today()[..4];
                    values["name"] = json!(format!("{prefix}/{year}/{id:05}"));
                }
                if !truthy(&db.value(model, id, "invoice_date")) {
                    values["invoice_date"] = json!(today());
                }
                set(db, id, values);
            }
            Ok(json!(false))
        }
        "button_draft" | "button_cancel" => {
            let cancelling = method == "button_cancel";
            for id in ids {
                let state = text(db, *id, "state");
                // button_cancel resets posted moves to draft first.
                if cancelling && state == "cancel" {
                    return Err(OdooError::user(
                        "Only draft journal entries can be cancelled.",
                    ));
                }
                if !cancelling && state == "draft" {
                    return Err(OdooError::user(
                        "Only posted/cancelled journal entries can be reset to draft.",
                    ));
                }
            }
            let state = if cancelling { "cancel" } else { "draft" };
            for id in ids {
                set(db, *id, json!({"state": state}));
            }
            Ok(Value::Null)
        }
        _ => Ok(Value::Null),
    }
}

/// Today, as Odoo writes dates (UTC).
fn today() -> String {
    now()[..10].to_owned()
}

/// Now, as Odoo writes datetimes (UTC, no zone).
fn now() -> String {
    let secs = sluice_contracts::now_millis().div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
