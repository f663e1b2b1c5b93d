//! Sample contract values, written out field by field, for tests and the demo.

use apache_avro::types::Value;
use sluice_contracts::types::{ErpCommand, ErpField, ErpOperation, SagaStep, ScalarValue};

/// An `OrderEvent` carrying an OrderPlaced for `order_id`: two lines
/// (SKU-1 2 × 12.50, SKU-2 1 × 4.99, total 29.99 EUR), customer cust-42
/// (Ada Lovelace, ada@example.org), shipping to NL, correlation id corr-7,
/// no causation id, and a fresh event id.
pub fn order_placed(order_id: &str, occurred_at_ms: i64) -> Value {
    let line = |sku: &str, quantity: i32, price: i64| {
        Value::Record(vec![
            ("sku".into(), Value::String(sku.into())),
            ("description".into(), Value::String(format!("Item {sku}"))),
            ("quantity".into(), Value::Int(quantity)),
            ("unit_price_minor".into(), Value::Long(price)),
        ])
    };
    let customer = Value::Record(vec![
        ("customer_id".into(), Value::String("cust-42".into())),
        ("name".into(), Value::String("Ada Lovelace".into())),
        ("email".into(), Value::String("ada@example.org".into())),
    ]);
    let placed = Value::Record(vec![
        ("customer".into(), customer),
        (
            "lines".into(),
            Value::Array(vec![line("SKU-1", 2, 1250), line("SKU-2", 1, 499)]),
        ),
        ("total_minor".into(), Value::Long(2999)),
        ("currency".into(), Value::String("EUR".into())),
        ("shipping_country".into(), some(Value::String("NL".into()))),
    ]);
    Value::Record(vec![
        ("event_id".into(), Value::Uuid(uuid::Uuid::new_v4())),
        ("event_type".into(), Value::String("OrderPlaced".into())),
        ("occurred_at".into(), Value::TimestampMillis(occurred_at_ms)),
        ("aggregate_id".into(), Value::String(order_id.into())),
        (
            "correlation_id".into(),
            some(Value::String("corr-7".into())),
        ),
        (
            "causation_id".into(),
            Value::Union(0, Box::new(Value::Null)),
        ),
        ("payload".into(), Value::Union(0, Box::new(placed))),
    ])
}

/// The sale order the order saga's reservation creates (sagas/order-fulfilment.toml) for
/// `order`: Katherine Johnson (katherine@example.org) buys 2 × SKU-1 at
/// 12.50; a fresh command id; sent for `saga`'s step, or for no saga.
pub fn sale_order_create(order: &str, saga: Option<SagaStep>) -> ErpCommand {
    let text = |text: &str| ScalarValue::String(text.into());
    let fields = [
        ("client_order_ref", text(order)),
        ("partner_id.email", text("katherine@example.org")),
        ("partner_id.name", text("Katherine Johnson")),
        ("order_line.0.product_id.default_code", text("SKU-1")),
        ("order_line.0.product_uom_qty", ScalarValue::Long(2)),
        ("order_line.0.price_unit", ScalarValue::Double(12.5)),
    ];
    ErpCommand {
        command_id: uuid::Uuid::new_v4().to_string(),
        model: "sale.order".into(),
        operation: ErpOperation::Create,
        external_ref: order.to_owned(),
        fields: fields
            .into_iter()
            .map(|(name, value)| ErpField {
                name: name.into(),
                value,
            })
            .collect(),
        source_event_id: None,
        issued_at: sluice_contracts::now_millis(),
        saga,
        correlation_id: None,
        causation_id: None,
    }
}

/// The non-null branch of a `["null", T]` union.
fn some(value: Value) -> Value {
    Value::Union(1, Box::new(value))
}
