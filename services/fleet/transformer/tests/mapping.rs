//! Rules applied for real: events produced as Avro to input topics, the
//! transformer's commands read back `read_committed` from the output topics
//! and decoded. One rule exercises every expression kind, six others every
//! kind of condition; the shipped rules turn orders and requests into the
//! demo's sheet rows and sale orders.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    Topics, decode, event_bytes, event_bytes_in_flow, header, mapper, send, send_with, start,
    transactional_id,
};
use rdkafka::Message;
use rdkafka::message::Headers;
use serde_json::{Value as Json, json};
use sluice_contracts::types::{ErpCommand, ErpOperation, ScalarValue, SheetRowUpsert};
use sluice_testkit::{confluent_produce, consume_exactly, unique_name};
use sluice_transformer::command_id;

const WAIT: Duration = Duration::from_secs(60);
/// 2026-11-23 12:34:56.789 UTC.
const AT: i64 = 1_795_437_296_789;

const KINDS: &str = r#"
[lookups.countries]
DE = "Germany"

[lookups.currencies]
EUR = "euro"
USD = "US dollar"

[[rules]]
id = "kinds"
aggregate = "orders"
event_type = "OrderPlaced"

[rules.sheet]
spreadsheet = "sheet-1"
sheet = "Kinds"
key = { concat = [{ constant = "row" }, { copy = "aggregate_id" }], separator = "-" }
columns = [
  { column = "Order number", value = { copy = "aggregate_id" } },
  { column = "Email", value = { copy = "payload.customer.email" } },
  { column = "Seven", value = { constant = 7 } },
  { column = "Yes", value = { constant = true } },
  { column = "Label", value = { constant = "fixed" } },
  { column = "Day", value = { date = "occurred_at", format = "%d.%m.%Y %H:%M:%S" } },
  { column = "Total", value = { number = "payload.total_minor", divide_by = 100, decimals = 2 } },
  { column = "Total (number)", value = { number = "payload.total_minor", divide_by = 100 } },
  { column = "Who", value = { concat = [{ copy = "payload.customer.name" }, { copy = "payload.shipping_country" }, { copy = "payload.currency" }], separator = " / " } },
  { column = "Currency name", value = { lookup = "payload.currency", table = "currencies" } },
  { column = "Country", value = { lookup = "payload.shipping_country", table = "countries", default = "unknown" } },
  { column = "Shipping", value = { copy = "payload.shipping_country" } },
]

[[rules]]
id = "eq"
aggregate = "orders"
event_type = "OrderPlaced"
when = [{ field = "payload.currency", equals = "EUR" }]
[rules.erp]
model = "m"
operation = "CREATE"
external_ref = { copy = "aggregate_id" }
fields = []

[[rules]]
id = "ne"
aggregate = "orders"
event_type = "OrderPlaced"
when = [{ field = "payload.currency", not_equals = "EUR" }]
[rules.erp]
model = "m"
operation = "CREATE"
external_ref = { copy = "aggregate_id" }
fields = []

[[rules]]
id = "in"
aggregate = "orders"
event_type = "OrderPlaced"
when = [{ field = "payload.total_minor", in = [1950, 100] }]
[rules.erp]
model = "m"
operation = "CREATE"
external_ref = { copy = "aggregate_id" }
fields = []

[[rules]]
id = "present"
aggregate = "orders"
event_type = "OrderPlaced"
when = [{ field = "payload.shipping_country", present = true }]
[rules.erp]
model = "m"
operation = "UPSERT"
external_ref = { copy = "aggregate_id" }
fields = []

[[rules]]
id = "absent"
aggregate = "orders"
event_type = "OrderPlaced"
when = [{ field = "payload.shipping_country", present = false }]
[rules.erp]
model = "m"
operation = "UPDATE"
external_ref = { copy = "aggregate_id" }
fields = []

[[rules]]
id = "both"
aggregate = "orders"
event_type = "OrderPlaced"
when = [{ field = "payload.currency", equals = "EUR" }, { field = "payload.shipping_country", present = true }]
[rules.erp]
model = "m"
operation = "CANCEL"
external_ref = { copy = "aggregate_id" }
fields = []
"#;

fn placed(total: i64, currency: &str, country: Option<&str>) -> Json {
    let mut payload = json!({
        "customer": {"customer_id": "c-1", "name": "Grace Hopper", "email": "grace@example.org"},
        "lines": [{"sku": "S-1", "description": "tea", "quantity": 1, "unit_price_minor": total}],
        "total_minor": total,
        "currency": currency,
    });
    if let Some(country) = country {
        payload["shipping_country"] = country.into();
    }
    payload
}

fn cells(row: &SheetRowUpsert) -> BTreeMap<&str, &ScalarValue> {
    row.cells
        .iter()
        .map(|cell| (cell.column.as_str(), &cell.value))
        .collect()
}

fn text(value: &str) -> ScalarValue {
    ScalarValue::String(value.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_expression_and_condition_kind() {
    let topics = Topics::new("map-kinds", 1).await;
    let (stop, running) = start(
        mapper(KINDS, &topics.names()),
        &topics.names(),
        &unique_name("map-kinds"),
        &transactional_id(),
    );
    // A: euro, 19.50, no shipping country. B: dollars, 5.00, to Germany.
    let a = "5f0c1d2e-0000-4000-8000-00000000000a";
    let b = "5f0c1d2e-0000-4000-8000-00000000000b";
    let orders = &topics.orders.name;
    let bytes = event_bytes(
        orders,
        "orders",
        a,
        "order-a",
        "OrderPlaced",
        AT,
        &placed(1950, "EUR", None),
    )
    .await;
    send(orders, "order-a", &bytes).await;
    let bytes = event_bytes(
        orders,
        "orders",
        b,
        "order-b",
        "OrderPlaced",
        AT,
        &placed(500, "USD", Some("DE")),
    )
    .await;
    send(orders, "order-b", &bytes).await;

    // Sheet rows: one per event, every kind of value.
    let rows = consume_exactly(&topics.sheets.name, 2, WAIT).await;
    let mut upserts = Vec::new();
    for message in &rows {
        let row: SheetRowUpsert = decode(message).await;
        assert_eq!(
            message.key_view::<str>().unwrap().unwrap(),
            format!("sheet-1/Kinds/{}", row.row_key)
        );
        assert_eq!(header(message, "sluice.rule").as_deref(), Some("kinds"));
        upserts.push(row);
    }
    upserts.sort_by(|x, y| x.row_key.cmp(&y.row_key));
    let (row_a, row_b) = (&upserts[0], &upserts[1]);
    assert_eq!(row_a.row_key, "row-order-a");
    assert_eq!(row_a.command_id, command_id(a, "kinds"));
    assert_eq!(row_a.source_event_id, a);
    assert_eq!(row_a.occurred_at, AT);
    let columns: Vec<&str> = row_a.cells.iter().map(|c| c.column.as_str()).collect();
    assert_eq!(
        columns[..3],
        ["Order number", "Email", "Seven"],
        "rule order"
    );
    let a_cells = cells(row_a);
    assert_eq!(
        a_cells["Order number"],
        &text("order-a"),
        "copy under another name"
    );
    assert_eq!(
        a_cells["Email"],
        &text("grace@example.org"),
        "copy of a nested field"
    );
    assert_eq!(a_cells["Seven"], &ScalarValue::Long(7));
    assert_eq!(a_cells["Yes"], &ScalarValue::Boolean(true));
    assert_eq!(a_cells["Label"], &text("fixed"));
    assert_eq!(a_cells["Day"], &text("23.11.2026 12:34:56"));
    assert_eq!(a_cells["Total"], &text("19.50"));
    assert_eq!(a_cells["Total (number)"], &ScalarValue::Double(19.5));
    assert_eq!(
        a_cells["Who"],
        &text("Grace Hopper / EUR"),
        "a null part is skipped"
    );
    assert_eq!(a_cells["Currency name"], &text("euro"));
    assert_eq!(a_cells["Country"], &text("unknown"), "lookup default");
    assert_eq!(a_cells["Shipping"], &ScalarValue::Null);
    let b_cells = cells(row_b);
    assert_eq!(b_cells["Who"], &text("Grace Hopper / DE / USD"));
    assert_eq!(b_cells["Country"], &text("Germany"));
    assert_eq!(b_cells["Total"], &text("5.00"));
    assert_eq!(b_cells["Currency name"], &text("US dollar"));

    // ERP commands: which condition rules matched which event.
    let commands = consume_exactly(&topics.erp.name, 5, WAIT).await;
    let mut matched: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for message in &commands {
        let command: ErpCommand = decode(message).await;
        let rule = header(message, "sluice.rule").unwrap();
        assert_eq!(
            command.command_id,
            command_id(command.source_event_id.as_deref().unwrap(), &rule)
        );
        assert_eq!(
            message.key_view::<str>().unwrap().unwrap(),
            command.external_ref
        );
        matched.entry(rule).or_default().push(command.external_ref);
    }
    let expected: BTreeMap<String, Vec<String>> = [
        ("eq", "order-a"),
        ("in", "order-a"),
        ("absent", "order-a"),
        ("ne", "order-b"),
        ("present", "order-b"),
    ]
    .into_iter()
    .map(|(rule, order)| (rule.to_owned(), vec![order.to_owned()]))
    .collect();
    assert_eq!(matched, expected, "\"both\" matches neither");
    // Per-rule metrics, as /metrics shows them.
    let metrics = sluice_testkit::process_metrics();
    for (series, value) in [
        ("sluice_transformer_rule_matched_total{rule=\"kinds\"}", 2),
        ("sluice_transformer_rule_produced_total{rule=\"kinds\"}", 2),
        ("sluice_transformer_rule_matched_total{rule=\"eq\"}", 1),
        ("sluice_transformer_rule_produced_total{rule=\"ne\"}", 1),
    ] {
        assert!(
            metrics
                .lines()
                .any(|line| line == format!("{series} {value}")),
            "{series} {value} in:\n{metrics}"
        );
    }
    assert!(!metrics.contains("rule=\"both\""), "\"both\" never matched");
    stop.send(()).unwrap();
    running.await.unwrap();
}

const LISTS: &str = r#"
[[rules]]
id = "lines"
aggregate = "orders"
event_type = "OrderPlaced"
each = "payload.lines"
when = [{ field = "item.quantity", not_equals = 0 }]

[rules.sheet]
spreadsheet = "sheet-1"
sheet = "Lines"
key = { concat = [{ copy = "aggregate_id" }, { copy = "item.sku" }], separator = "/" }
columns = [
  { column = "Line", value = { concat = [{ copy = "aggregate_id" }, { copy = "item.sku" }], separator = "/" } },
  { column = "Order", value = { copy = "aggregate_id" } },
  { column = "Quantity", value = { copy = "item.quantity" } },
  { column = "Price", value = { number = "item.unit_price_minor", divide_by = 100, decimals = 2 } },
  { column = "Country", value = { copy = "payload.shipping_country", default = "-" } },
  { column = "Line total", value = { product = [{ copy = "item.quantity" }, { copy = "item.unit_price_minor" }], divide_by = 100, decimals = 2 } },
  { column = "With shipping", value = { sum = [{ product = [{ copy = "item.quantity" }, { copy = "item.unit_price_minor" }] }, { constant = 495 }], divide_by = 100 } },
]

[[rules]]
id = "sale-order"
aggregate = "orders"
event_type = "OrderPlaced"

[rules.erp]
model = "sale.order"
operation = "CREATE"
external_ref = { copy = "aggregate_id" }
fields = [
  { name = "client_order_ref", value = { copy = "aggregate_id" } },
  { name = "order_line", each = "payload.lines", fields = [
    { name = "product_id.default_code", value = { copy = "item.sku" } },
    { name = "product_uom_qty", value = { copy = "item.quantity" } },
    { name = "price_unit", value = { number = "item.unit_price_minor", divide_by = 100 } },
  ] },
]
"#;

/// Lists: a rule with `each` makes a row per item (those its condition
/// holds for), each with its own command id; an ERP field group makes
/// `order_line.<i>.<field>` per item; a copy's default stands in for an
/// absent field; arithmetic on the item's numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_makes_a_row_per_item_and_the_erp_lines() {
    let topics = Topics::new("map-lists", 1).await;
    let (stop, running) = start(
        mapper(LISTS, &topics.names()),
        &topics.names(),
        &unique_name("map-lists"),
        &transactional_id(),
    );
    let event = "5f0c1d2e-0000-4000-8000-00000000000c";
    let mut payload = placed(2250, "EUR", None);
    payload["lines"] = json!([
        {"sku": "TEA-1", "description": "tea", "quantity": 2, "unit_price_minor": 650},
        {"sku": "FREE-1", "description": "sample", "quantity": 0, "unit_price_minor": 0},
        {"sku": "MUG-1", "description": "mug", "quantity": 1, "unit_price_minor": 950},
    ]);
    let orders = &topics.orders.name;
    let bytes = event_bytes(
        orders,
        "orders",
        event,
        "order-c",
        "OrderPlaced",
        AT,
        &payload,
    )
    .await;
    send(orders, "order-c", &bytes).await;

    let rows = consume_exactly(&topics.sheets.name, 2, WAIT).await;
    let mut upserts = Vec::new();
    for message in &rows {
        upserts.push(decode::<SheetRowUpsert>(message).await);
    }
    upserts.sort_by(|x, y| x.row_key.cmp(&y.row_key));
    let keys: Vec<&str> = upserts.iter().map(|row| row.row_key.as_str()).collect();
    assert_eq!(
        keys,
        ["order-c/MUG-1", "order-c/TEA-1"],
        "the free line left out"
    );
    assert_eq!(upserts[0].command_id, command_id(event, "lines#2"));
    assert_eq!(upserts[1].command_id, command_id(event, "lines#0"));
    let tea = cells(&upserts[1]);
    assert_eq!(tea["Quantity"], &ScalarValue::Long(2));
    assert_eq!(tea["Price"], &text("6.50"));
    assert_eq!(tea["Order"], &text("order-c"));
    assert_eq!(tea["Country"], &text("-"), "the copy's default");
    assert_eq!(tea["Line total"], &text("13.00"), "2 × 650 / 100");
    assert_eq!(tea["With shipping"], &ScalarValue::Double(17.95));

    let commands = consume_exactly(&topics.erp.name, 1, WAIT).await;
    let command: ErpCommand = decode(&commands[0]).await;
    assert_eq!(command.command_id, command_id(event, "sale-order"));
    let fields: Vec<(&str, &ScalarValue)> = command
        .fields
        .iter()
        .map(|field| (field.name.as_str(), &field.value))
        .collect();
    assert_eq!(
        fields,
        [
            ("client_order_ref", &text("order-c")),
            ("order_line.0.product_id.default_code", &text("TEA-1")),
            ("order_line.0.product_uom_qty", &ScalarValue::Long(2)),
            ("order_line.0.price_unit", &ScalarValue::Double(6.5)),
            ("order_line.1.product_id.default_code", &text("FREE-1")),
            ("order_line.1.product_uom_qty", &ScalarValue::Long(0)),
            ("order_line.1.price_unit", &ScalarValue::Double(0.0)),
            ("order_line.2.product_id.default_code", &text("MUG-1")),
            ("order_line.2.product_uom_qty", &ScalarValue::Long(1)),
            ("order_line.2.price_unit", &ScalarValue::Double(9.5)),
        ]
    );
    stop.send(()).unwrap();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_rules_and_the_orders_placed_example_make_the_demo_commands() {
    let topics = Topics::new("map-shipped", 1).await;
    let without_saga = concat!(
        include_str!("../rules.toml"),
        include_str!("../examples/orders-placed.toml")
    );
    let (stop, running) = start(
        mapper(without_saga, &topics.names()),
        &topics.names(),
        &unique_name("map-shipped"),
        &transactional_id(),
    );
    let placed_id = "6a000000-0000-4000-8000-000000000001";
    let orders = &topics.orders.name;
    let bytes = event_bytes(
        orders,
        "orders",
        placed_id,
        "order-9",
        "OrderPlaced",
        AT,
        &placed(2999, "EUR", Some("NL")),
    )
    .await;
    // The order arrives with a trace and a correlation id (in headers, as
    // ingest and the relays write them); its commands carry both on.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let flow = [
        ("traceparent", traceparent.as_str()),
        ("sluice.correlation_id", "order-flow-9"),
    ];
    send_with(orders, "order-9", &bytes, &flow).await;
    let request_id = "6a000000-0000-4000-8000-000000000002";
    let requests = &topics.requests.name;
    let request = json!({
        "requester_email": "ops@example.org", "subject": "Printer on fire", "description": "smoke",
        "priority": "URGENT"
    });
    // A user's own producer names the flow in the envelope, not a header.
    let bytes = event_bytes_in_flow(
        requests,
        "requests",
        (request_id, "req-1", "RequestCreated", AT),
        Some("request-flow-1"),
        &request,
    )
    .await;
    send(requests, "req-1", &bytes).await;
    // Filtered out by the rule's condition: WAITING is not a status it shows.
    let waiting = json!({"from_status": "OPEN", "to_status": "WAITING", "changed_by": "bo"});
    let bytes = event_bytes(
        requests,
        "requests",
        "6a000000-0000-4000-8000-000000000003",
        "req-1",
        "RequestStatusChanged",
        AT + 1,
        &waiting,
    )
    .await;
    send(requests, "req-1", &bytes).await;

    let rows = consume_exactly(&topics.sheets.name, 2, WAIT).await;
    let mut by_sheet = BTreeMap::new();
    for message in &rows {
        let row: SheetRowUpsert = decode(message).await;
        by_sheet.insert(row.sheet.clone(), row);
        if message
            .key()
            .is_some_and(|key| key.starts_with(b"sluice-demo/Orders/"))
        {
            let carried = header(message, "traceparent").unwrap();
            assert!(
                carried.starts_with(&format!("00-{trace_id}-")) && carried != traceparent,
                "a child of the event's trace: {carried}"
            );
            assert_eq!(
                header(message, "sluice.correlation_id").as_deref(),
                Some("order-flow-9")
            );
        } else {
            assert_eq!(
                header(message, "sluice.correlation_id").as_deref(),
                Some("request-flow-1")
            );
        }
    }
    // The flow and the cause are in the commands themselves too, for
    // consumers that read values, not headers.
    let order_row = &by_sheet["Orders"];
    assert_eq!(order_row.correlation_id.as_deref(), Some("order-flow-9"));
    assert_eq!(order_row.causation_id.as_deref(), Some(placed_id));
    let request_row = &by_sheet["Requests"];
    assert_eq!(
        request_row.correlation_id.as_deref(),
        Some("request-flow-1")
    );
    assert_eq!(request_row.causation_id.as_deref(), Some(request_id));
    let order_cells = cells(order_row);
    assert_eq!(order_row.spreadsheet_id, "sluice-demo");
    assert_eq!(order_cells["Order"], &text("order-9"));
    assert_eq!(
        order_cells["Customer"],
        &text("Grace Hopper · grace@example.org")
    );
    assert_eq!(order_cells["Total"], &text("29.99"));
    assert_eq!(order_cells["Country"], &text("Netherlands"));
    assert_eq!(order_cells["Placed at"], &text("2026-11-23 12:34 UTC"));
    let request_cells = cells(&by_sheet["Requests"]);
    assert_eq!(request_cells["Priority"], &text("1 - urgent"));
    assert_eq!(request_cells["Category"], &ScalarValue::Null);
    assert_eq!(request_cells["Subject"], &text("Printer on fire"));

    let commands = consume_exactly(&topics.erp.name, 1, WAIT).await;
    let correlation: Vec<_> = commands[0]
        .headers()
        .map(|h| {
            h.iter()
                .filter(|h| h.key == "sluice.correlation_id")
                .map(|h| h.value)
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        correlation,
        [Some(&b"order-flow-9"[..])],
        "one correlation header"
    );
    let sale: ErpCommand = decode(&commands[0]).await;
    assert_eq!(sale.correlation_id.as_deref(), Some("order-flow-9"));
    assert_eq!(sale.causation_id.as_deref(), Some(placed_id));
    assert_eq!(sale.model, "sale.order");
    assert_eq!(sale.operation, ErpOperation::Create);
    assert_eq!(sale.external_ref, "order-9");
    assert_eq!(
        sale.command_id,
        command_id(placed_id, "orders-erp-sale-order")
    );
    let fields: BTreeMap<&str, &ScalarValue> = sale
        .fields
        .iter()
        .map(|f| (f.name.as_str(), &f.value))
        .collect();
    // Only fields sale.order has (its partner resolved by erp-sink).
    assert_eq!(fields["client_order_ref"], &text("order-9"));
    assert_eq!(fields["partner_id.email"], &text("grace@example.org"));
    assert_eq!(fields["partner_id.name"], &text("Grace Hopper"));
    assert!(!fields.contains_key("amount_total"), "computed by Odoo");
    assert_eq!(fields["date_order"], &text("2026-11-23 12:34:56"));
    stop.send(()).unwrap();
    running.await.unwrap();
}

/// Another team evolves the order events from outside: Confluent's Python
/// client registers a v2 with one more optional field and produces with it.
/// The transformer reads v2 records with its own schema (the new field
/// skipped) and maps them as ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_written_with_a_newer_schema_from_outside_are_mapped() {
    let topics = Topics::new("map-evolved", 1).await;
    let catalog = sluice_contracts::Catalog::embedded().unwrap();
    let mut schema: Json = serde_json::from_str(
        catalog
            .topic("orders.events.v1")
            .unwrap()
            .value_schema_json(),
    )
    .unwrap();
    schema["fields"].as_array_mut().unwrap().push(json!(
        { "name": "tenant", "type": ["null", "string"], "default": null }
    ));
    let path = std::env::temp_dir().join(format!("{}.avsc", unique_name("map-evolved")));
    std::fs::write(&path, schema.to_string()).unwrap();
    let cancelled = json!({
        "event_id": "6a000000-0000-4000-8000-000000000020",
        "event_type": "OrderCancelled",
        "occurred_at": AT,
        "aggregate_id": "order-v2",
        "correlation_id": null,
        "causation_id": null,
        "payload": {
            "-type": "dev.sluice.orders.OrderCancelled",
            "reason": "changed mind",
            "cancelled_by": "customer"
        },
        "tenant": "acme",
    });
    let written = confluent_produce(
        &topics.orders.name,
        Some(&path),
        &[json!({ "key": "order-v2", "value": cancelled })],
    )
    .unwrap();
    std::fs::remove_file(&path).unwrap();

    let (stop, running) = start(
        mapper(include_str!("../rules.toml"), &topics.names()),
        &topics.names(),
        &unique_name("map-evolved"),
        &transactional_id(),
    );
    let rows = consume_exactly(&topics.sheets.name, 1, WAIT).await;
    stop.send(()).unwrap();
    running.await.unwrap();
    let row: SheetRowUpsert = decode(&rows[0]).await;
    let cells = cells(&row);
    assert_eq!(
        (cells["Order"], cells["Status"]),
        (&text("order-v2"), &text("CANCELLED")),
        "mapped from a record of schema id {written}"
    );
    assert_eq!(cells["Note"], &text("cancelled by customer — changed mind"));
}
