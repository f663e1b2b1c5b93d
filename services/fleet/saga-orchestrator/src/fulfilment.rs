//! The order fulfilment saga: on OrderPlaced, reserve the order in the ERP,
//! then record it in the Orders sheet, then announce OrderConfirmed; when a
//! step fails or times out, cancel the reservation / mark the row cancelled
//! (whichever were done) and announce OrderRejected with the reason.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_contracts::types::{
    ErpCommand, ErpField, ErpOperation, OrderConfirmed, OrderEvent, OrderPayload, OrderPlaced,
    OrderRejected, ScalarValue, SheetCell, SheetRowUpsert,
};
use uuid::Uuid;

use crate::definition::{Context, Failure, Message, Payload, Saga, Step};

/// The saga's name.
pub const SAGA: &str = "order-fulfilment";
/// Step: the sale order in the ERP.
pub const RESERVE: &str = "reserve-in-erp";
/// Step: the order's row in the Orders sheet.
pub const RECORD: &str = "record-in-sheet";
/// The event that starts the saga, on the orders' event topic: the saga
/// owns what it does toward the ERP and the Orders sheet.
pub const STARTS_ON: &str = "OrderPlaced";

/// What the saga remembers of the order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// The order id (the key everywhere).
    pub order_id: String,
    /// The OrderPlaced event.
    pub placed_event_id: String,
    /// When it was placed, ms since the epoch.
    pub placed_at: i64,
    /// Carried into every message.
    pub correlation_id: Option<String>,
    /// Customer name.
    pub customer_name: String,
    /// Customer e-mail.
    pub customer_email: String,
    /// Total, minor units.
    pub total_minor: i64,
    /// ISO 4217.
    pub currency: String,
    /// What was ordered. Absent in sagas stored before lines were kept:
    /// their reservation goes out without lines.
    #[serde(default)]
    pub lines: Vec<Line>,
}

/// One ordered item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Stock keeping unit: the product's internal reference in the ERP.
    pub sku: String,
    /// As the customer saw it.
    pub description: String,
    /// Units.
    pub quantity: i32,
    /// Price of one unit, minor units.
    pub unit_price_minor: i64,
}

impl Order {
    /// The order an OrderPlaced event describes.
    pub fn placed(event: &OrderEvent, placed: &OrderPlaced) -> Self {
        Self {
            order_id: event.aggregate_id.clone(),
            placed_event_id: event.event_id.clone(),
            placed_at: event.occurred_at,
            correlation_id: event.correlation_id.clone(),
            customer_name: placed.customer.name.clone(),
            customer_email: placed.customer.email.clone(),
            total_minor: placed.total_minor,
            currency: placed.currency.clone(),
            lines: placed
                .lines
                .iter()
                .map(|line| Line {
                    sku: line.sku.clone(),
                    description: line.description.clone(),
                    quantity: line.quantity,
                    unit_price_minor: line.unit_price_minor,
                })
                .collect(),
        }
    }

    /// The saga of this order: one per order id, whoever sees it first.
    pub fn saga_id(&self) -> Uuid {
        Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("{SAGA}/{}", self.order_id).as_bytes(),
        )
    }
}

/// Where the saga's commands and events go, and how long steps may take.
#[derive(Debug, Clone)]
pub struct Settings {
    /// erp-sink's commands.
    pub erp_topic: String,
    /// sheets-sink's commands.
    pub sheets_topic: String,
    /// The orders' events (OrderConfirmed / OrderRejected).
    pub events_topic: String,
    /// The Orders sheet's spreadsheet.
    pub spreadsheet: String,
    /// Its sheet title.
    pub sheet: String,
    /// ERP model of the reservation.
    pub erp_model: String,
    /// How long the ERP may take to answer.
    pub erp_timeout: Duration,
    /// How long the sheet may take to answer.
    pub sheet_timeout: Duration,
    /// Sends after a timeout before a step fails.
    pub retries: u32,
}

/// The saga, built from `settings`.
pub fn saga(settings: &Settings) -> Saga<Order> {
    let erp = settings.erp_topic.clone();
    let erp_undo = erp.clone();
    let model = settings.erp_model.clone();
    let model_undo = model.clone();
    let sheets = settings.sheets_topic.clone();
    let sheets_undo = sheets.clone();
    let (spreadsheet, sheet) = (settings.spreadsheet.clone(), settings.sheet.clone());
    let (spreadsheet_undo, sheet_undo) = (spreadsheet.clone(), sheet.clone());
    let events = settings.events_topic.clone();
    let events_rejected = events.clone();
    Saga::new(
        SAGA,
        move |saga_id, order: &Order, _| {
            outcome(
                &events,
                saga_id,
                order,
                OrderPayload::OrderConfirmed(OrderConfirmed {
                    saga_id: saga_id.to_string(),
                    erp_reference: order.order_id.clone(),
                }),
            )
        },
        move |saga_id, order: &Order, failure| {
            let failure = failure.cloned().unwrap_or_else(|| Failure {
                step: String::new(),
                reason: String::new(),
            });
            outcome(
                &events_rejected,
                saga_id,
                order,
                OrderPayload::OrderRejected(OrderRejected {
                    saga_id: saga_id.to_string(),
                    failed_step: failure.step,
                    reason: failure.reason,
                }),
            )
        },
    )
    .correlated_by(|order: &Order| order.correlation_id.clone())
    .step(
        Step::new(RESERVE, move |ctx: &Context<'_, Order>| {
            erp_command(
                &erp,
                &model,
                ctx,
                ErpOperation::Create,
                reservation(ctx.data),
            )
        })
        // Odoo's action_cancel, through erp-sink; the reason travels in
        // OrderRejected and the Orders sheet (sale.order has no field for it).
        .compensate_with(move |ctx| {
            erp_command(
                &erp_undo,
                &model_undo,
                ctx,
                ErpOperation::Cancel,
                Vec::new(),
            )
        })
        .timeout(settings.erp_timeout)
        .retries(settings.retries),
    )
    .step(
        Step::new(RECORD, move |ctx: &Context<'_, Order>| {
            let order = ctx.data;
            let total = format!("{:.2}", order.total_minor as f64 / 100.0);
            // As of the order's placing, whenever the step is sent or sent
            // again: a status a later event of the order wrote (cancelled,
            // shipped) is newer, and stays (sheets-sink versions each cell).
            sheet_row(
                &sheets,
                &spreadsheet,
                &sheet,
                ctx,
                order.placed_at,
                vec![
                    cell("Order", text(&order.order_id)),
                    cell("Customer", text(&order.customer_name)),
                    cell("Total", text(&total)),
                    cell("Currency", text(&order.currency)),
                    cell("Status", text("CONFIRMED")),
                ],
            )
        })
        .compensate_with(move |ctx| {
            let reason = ctx.failure.map_or("", |f| f.reason.as_str());
            // The compensation is newer than the row it marks cancelled.
            sheet_row(
                &sheets_undo,
                &spreadsheet_undo,
                &sheet_undo,
                ctx,
                sluice_contracts::now_millis(),
                vec![
                    cell("Order", text(&ctx.data.order_id)),
                    cell("Status", text("CANCELLED")),
                    cell("Note", text(reason)),
                ],
            )
        })
        .timeout(settings.sheet_timeout)
        .retries(settings.retries),
    )
}

/// The sale order's fields in erp-sink's terms: the customer as a
/// res.partner found (or made) by e-mail, a line per item by the product's
/// internal reference; Odoo computes the total and takes the currency from
/// the pricelist. erp-sink creates it as a quotation and confirms it.
fn reservation(order: &Order) -> Vec<ErpField> {
    let mut fields = vec![
        field("client_order_ref", text(&order.order_id)),
        field("partner_id.email", text(&order.customer_email)),
        field("partner_id.name", text(&order.customer_name)),
    ];
    for (i, line) in order.lines.iter().enumerate() {
        let name = |part: &str| format!("order_line.{i}.{part}");
        fields.extend([
            field(&name("product_id.default_code"), text(&line.sku)),
            field(&name("name"), text(&line.description)),
            field(
                &name("product_uom_qty"),
                ScalarValue::Long(i64::from(line.quantity)),
            ),
            field(
                &name("price_unit"),
                ScalarValue::Double(line.unit_price_minor as f64 / 100.0),
            ),
        ]);
    }
    fields
}

fn erp_command(
    topic: &str,
    model: &str,
    ctx: &Context<'_, Order>,
    operation: ErpOperation,
    fields: Vec<ErpField>,
) -> Message {
    Message {
        topic: topic.to_owned(),
        key: ctx.data.order_id.clone(),
        value: Payload::Erp(ErpCommand {
            command_id: ctx.command_id.to_string(),
            model: model.to_owned(),
            operation,
            external_ref: ctx.data.order_id.clone(),
            fields,
            source_event_id: Some(ctx.data.placed_event_id.clone()),
            issued_at: sluice_contracts::now_millis(),
            saga: Some(ctx.step.clone()),
            correlation_id: ctx.data.correlation_id.clone(),
            causation_id: Some(ctx.data.placed_event_id.clone()),
        }),
    }
}

fn sheet_row(
    topic: &str,
    spreadsheet: &str,
    sheet: &str,
    ctx: &Context<'_, Order>,
    occurred_at: i64,
    cells: Vec<SheetCell>,
) -> Message {
    let order = ctx.data;
    Message {
        topic: topic.to_owned(),
        key: format!("{spreadsheet}/{sheet}/{}", order.order_id),
        value: Payload::Sheet(SheetRowUpsert {
            command_id: ctx.command_id.to_string(),
            spreadsheet_id: spreadsheet.to_owned(),
            sheet: sheet.to_owned(),
            row_key: order.order_id.clone(),
            cells,
            source_event_id: order.placed_event_id.clone(),
            occurred_at,
            saga: Some(ctx.step.clone()),
            correlation_id: order.correlation_id.clone(),
            causation_id: Some(order.placed_event_id.clone()),
        }),
    }
}

fn outcome(topic: &str, saga_id: Uuid, order: &Order, payload: OrderPayload) -> Message {
    let event_type = match &payload {
        OrderPayload::OrderConfirmed(_) => "OrderConfirmed",
        _ => "OrderRejected",
    };
    Message {
        topic: topic.to_owned(),
        key: order.order_id.clone(),
        value: Payload::Order(OrderEvent {
            event_id: Uuid::new_v5(&saga_id, b"end").to_string(),
            event_type: event_type.to_owned(),
            occurred_at: sluice_contracts::now_millis(),
            aggregate_id: order.order_id.clone(),
            correlation_id: order.correlation_id.clone(),
            causation_id: Some(order.placed_event_id.clone()),
            payload,
        }),
    }
}

fn text(value: &str) -> ScalarValue {
    ScalarValue::String(value.to_owned())
}

fn field(name: &str, value: ScalarValue) -> ErpField {
    ErpField {
        name: name.to_owned(),
        value,
    }
}

fn cell(column: &str, value: ScalarValue) -> SheetCell {
    SheetCell {
        column: column.to_owned(),
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Order {
        Order {
            order_id: "o-1".into(),
            placed_event_id: "e-1".into(),
            placed_at: 0,
            correlation_id: None,
            customer_name: "Ada".into(),
            customer_email: "ada@example.org".into(),
            total_minor: 3_399,
            currency: "EUR".into(),
            lines: vec![
                Line {
                    sku: "TEA-1".into(),
                    description: "Assam".into(),
                    quantity: 2,
                    unit_price_minor: 1_250,
                },
                Line {
                    sku: "MUG-1".into(),
                    description: "Mug".into(),
                    quantity: 1,
                    unit_price_minor: 899,
                },
            ],
        }
    }

    #[test]
    fn a_reservation_names_the_customer_by_email_and_a_line_per_item() {
        let order = order();
        let fields: Vec<(String, ScalarValue)> = reservation(&order)
            .into_iter()
            .map(|f| (f.name, f.value))
            .collect();
        let value = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(value("client_order_ref"), Some(text("o-1")));
        assert_eq!(value("partner_id.email"), Some(text("ada@example.org")));
        assert_eq!(value("partner_id.name"), Some(text("Ada")));
        assert_eq!(
            value("order_line.1.product_id.default_code"),
            Some(text("MUG-1"))
        );
        assert_eq!(
            value("order_line.0.product_uom_qty"),
            Some(ScalarValue::Long(2))
        );
        assert_eq!(
            value("order_line.1.price_unit"),
            Some(ScalarValue::Double(8.99))
        );
        // Fields sale.order does not have, or computes itself.
        for refused in ["partner_name", "partner_email", "currency", "amount_total"] {
            assert_eq!(value(refused), None, "{refused}");
        }
        // A saga stored before lines were kept still reads.
        let stored = serde_json::json!({
            "order_id": "o-2", "placed_event_id": "e", "placed_at": 0, "correlation_id": null,
            "customer_name": "B", "customer_email": "b@example.org", "total_minor": 1, "currency": "EUR"
        });
        let old: Order = serde_json::from_value(stored).unwrap();
        assert!(old.lines.is_empty());
    }

    /// The row the saga records is as of the order's placing, on every
    /// attempt: an event of the order after it (a cancel, a shipment) is
    /// newer in the sheet, however late it arrives. Its compensation is
    /// as of when it is sent.
    #[test]
    fn the_recorded_row_is_as_of_the_placing_and_its_undo_as_of_now() {
        let settings = Settings {
            erp_topic: "erp".into(),
            sheets_topic: "sheets".into(),
            events_topic: "orders".into(),
            spreadsheet: "s".into(),
            sheet: "Orders".into(),
            erp_model: "sale.order".into(),
            erp_timeout: std::time::Duration::from_secs(1),
            sheet_timeout: std::time::Duration::from_secs(1),
            retries: 2,
        };
        let saga = saga(&settings);
        let record = saga.steps.iter().find(|step| step.name == RECORD).unwrap();
        let data = Order {
            placed_at: 1_000,
            ..order()
        };
        let sent_at = |attempt: i32, compensating: bool| {
            let saga_id = Uuid::nil();
            let ctx = Context {
                saga_id,
                data: &data,
                command_id: Uuid::nil(),
                step: sluice_contracts::types::SagaStep {
                    saga_id: saga_id.to_string(),
                    step: RECORD.into(),
                    attempt,
                },
                failure: None,
            };
            let build = match compensating {
                false => &record.command,
                true => record.compensation.as_ref().unwrap(),
            };
            match build(&ctx).value {
                Payload::Sheet(upsert) => upsert.occurred_at,
                _ => panic!("not a row"),
            }
        };
        assert_eq!(sent_at(1, false), data.placed_at);
        assert_eq!(sent_at(3, false), data.placed_at);
        assert!(sent_at(1, true) > data.placed_at);
    }
}
