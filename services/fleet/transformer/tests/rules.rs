//! The rules file: the shipped one is valid; a broken one is refused at
//! start-up with the rule and the field (or option) named.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use sluice_contracts::Catalog;
use sluice_mapping::load_rules;

const SHIPPED: &str = include_str!("../rules.toml");

fn refusal(rules: &str) -> String {
    load_rules(rules, &Catalog::embedded().unwrap())
        .expect_err("the rules must be refused")
        .to_string()
}

/// A one-rule file for orders' OrderPlaced with these sheet columns.
fn orders_sheet(columns: &str, extra: &str) -> String {
    format!(
        r#"
[lookups.countries]
DE = "Germany"

[[rules]]
id = "orders-sheet"
aggregate = "orders"
event_type = "OrderPlaced"
{extra}

[rules.sheet]
spreadsheet = "s"
sheet = "Orders"
key = {{ copy = "aggregate_id" }}
columns = [{columns}]
"#
    )
}

#[test]
fn the_shipped_rules_and_the_example_for_a_deployment_without_the_saga_are_valid() {
    let catalog = Catalog::embedded().unwrap();
    assert_eq!(load_rules(SHIPPED, &catalog).unwrap().rules.len(), 6);
    let without_saga = format!(
        "{SHIPPED}{}",
        include_str!("../examples/orders-placed.toml")
    );
    assert_eq!(load_rules(&without_saga, &catalog).unwrap().rules.len(), 8);
}

#[test]
fn a_field_that_does_not_exist_is_named_with_its_rule() {
    let message = refusal(&orders_sheet(
        r#"{ column = "Total", value = { copy = "payload.totl_minor" } }"#,
        "",
    ));
    assert_eq!(
        message,
        "rule \"orders-sheet\": sheet.columns[0] \"Total\": field payload.totl_minor does not exist: \
         OrderPlaced has customer, lines, total_minor, currency, shipping_country"
    );
}

#[test]
fn type_mismatches_are_named() {
    let cases = [
        (
            r#"{ column = "At", value = { date = "payload.currency", format = "%Y" } }"#,
            "sheet.columns[0] \"At\": date needs a timestamp; payload.currency is not one",
        ),
        (
            r#"{ column = "N", value = { number = "payload.customer.name" } }"#,
            "number needs a numeric field; payload.customer.name is not one",
        ),
        (
            r#"{ column = "L", value = { copy = "payload.lines" } }"#,
            "field payload.lines is a list, not a single value",
        ),
        (
            r#"{ column = "C", value = { copy = "payload.customer" } }"#,
            "field payload.customer is a record, not a single value",
        ),
        (
            r#"{ column = "D", value = { date = "occurred_at", format = "%Q" } }"#,
            "\"%Q\" is not a strftime format",
        ),
        (
            r#"{ column = "X", value = { lookup = "payload.currency", table = "nope" } }"#,
            "no table \"nope\" under [lookups]",
        ),
        (
            r#"{ column = "X", value = { lookup = "payload.total_minor", table = "countries" } }"#,
            "lookup needs a text field; payload.total_minor is not one",
        ),
        (
            r#"{ column = "X", value = { copy = "aggregate_id", constant = "x" } }"#,
            "give exactly one of copy, constant, date, number, sum, product, concat, lookup",
        ),
        (
            r#"{ column = "X", value = { copy = "aggregate_id", decimals = 2 } }"#,
            "decimals goes with number or sum or product, not copy",
        ),
        (
            r#"{ column = "X", value = { concat = [{ copy = "payload.nope" }] } }"#,
            "sheet.columns[0] \"X\".concat[0]: field payload.nope does not exist",
        ),
    ];
    for (column, expected) in cases {
        let message = refusal(&orders_sheet(column, ""));
        assert!(
            message.starts_with("rule \"orders-sheet\": ") && message.contains(expected),
            "for {column}: {message}"
        );
    }
}

#[test]
fn conditions_are_checked_against_the_schema() {
    let column = r#"{ column = "Order", value = { copy = "aggregate_id" } }"#;
    let cases = [
        (
            r#"when = [{ field = "payload.shipping", equals = "DE" }]"#,
            "when[0]: field payload.shipping does not exist",
        ),
        (
            r#"when = [{ field = "payload.total_minor", equals = "many" }]"#,
            "when[0]: payload.total_minor cannot be compared with String(\"many\")",
        ),
        (
            r#"when = [{ field = "payload.currency", equals = "EUR", present = true }]"#,
            "when[0]: give exactly one of equals, not_equals, in, present",
        ),
    ];
    for (extra, expected) in cases {
        let message = refusal(&orders_sheet(column, extra));
        assert!(message.contains(expected), "for {extra}: {message}");
    }
    // An enum condition names a symbol of the enum.
    let status = r#"
[[rules]]
id = "status"
aggregate = "orders"
event_type = "OrderStatusChanged"
when = [{ field = "payload.to_status", in = ["SHIPPED", "TELEPORTED"] }]
[rules.sheet]
spreadsheet = "s"
sheet = "Orders"
key = { copy = "aggregate_id" }
columns = [{ column = "Status", value = { copy = "payload.to_status" } }]
"#;
    assert!(
        refusal(status).contains(
            "when[0]: \"TELEPORTED\" is not a value of payload.to_status (UNKNOWN, PLACED"
        ),
        "{}",
        refusal(status)
    );
}

#[test]
fn rule_level_mistakes_are_named() {
    let column = r#"{ column = "Order", value = { copy = "aggregate_id" } }"#;
    let wrong_event = orders_sheet(column, "").replace("OrderPlaced", "OrderTeleported");
    assert!(
        refusal(&wrong_event).contains(
            "rule \"orders-sheet\": event_type: \"OrderTeleported\" is not an event of orders (it has OrderPlaced,"
        ),
        "{}",
        refusal(&wrong_event)
    );
    let wrong_aggregate = orders_sheet(column, "").replace("\"orders\"", "\"invoices\"");
    assert!(refusal(&wrong_aggregate).contains("aggregate: no contract invoices.events.v1"));
    let twice = format!(
        "{}{}",
        orders_sheet(column, ""),
        orders_sheet(column, "").replace("[lookups.countries]\nDE = \"Germany\"", "")
    );
    assert!(refusal(&twice).contains("rule \"orders-sheet\": id: used by two rules"));
    let versions = r#"{ column = "Order", value = { copy = "aggregate_id" } }, { column = "sluice:versions", value = { constant = "{}" } }"#;
    assert!(
        refusal(&orders_sheet(versions, "")).contains(
            "rule \"orders-sheet\": sheet.columns[1] \"sluice:versions\": sheets-sink's own column"
        ),
        "{}",
        refusal(&orders_sheet(versions, ""))
    );
    let unknown_key = orders_sheet(column, "colour = \"blue\"");
    assert!(
        refusal(&unknown_key).contains("unknown field `colour`"),
        "{}",
        refusal(&unknown_key)
    );
}

#[test]
fn the_binary_refuses_a_broken_rules_file_at_start() {
    let dir = std::env::temp_dir().join(format!("transformer-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.toml");
    std::fs::write(
        &broken,
        orders_sheet(
            r#"{ column = "Total", value = { copy = "payload.totl_minor" } }"#,
            "",
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_transformer"))
        .arg("--rules")
        .arg(&broken)
        .args([
            "--transactional-id",
            "unused",
            "--kafka-bootstrap",
            "127.0.0.1:9",
        ])
        .args(["--schema-registry-url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("orders-sheet") && stderr.contains("payload.totl_minor does not exist"),
        "{stderr}"
    );

    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/rules.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_transformer"))
        .args(["--rules", shipped, "--check"])
        .args(["--kafka-bootstrap", "127.0.0.1:9"])
        .args(["--schema-registry-url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("6 rules, valid"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shipped_rules_can_be_left_out_by_id_and_an_unknown_id_is_refused() {
    let shipped = load_rules(SHIPPED, &Catalog::embedded().unwrap()).unwrap();
    let all = shipped.rules.len();
    let requests = [
        "requests-sheet-created".to_owned(),
        "requests-sheet-status".to_owned(),
    ];
    let left = shipped.clone().without(&requests).unwrap();
    assert_eq!(left.rules.len(), all - 2);
    assert!(left.rules.iter().all(|rule| !requests.contains(&rule.id)));
    let err = shipped
        .without(&["orders-nope".to_owned()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("orders-nope") && err.contains("no rule has it"),
        "{err}"
    );
}

/// A one-rule file for orders' OrderPlaced making an ERP command with
/// these fields.
fn orders_erp(fields: &str, extra: &str) -> String {
    format!(
        r#"
[[rules]]
id = "orders-erp"
aggregate = "orders"
event_type = "OrderPlaced"
{extra}

[rules.erp]
model = "sale.order"
operation = "CREATE"
external_ref = {{ copy = "aggregate_id" }}
fields = [{fields}]
"#
    )
}

/// Lists: a rule's `each` and an ERP field group's are checked as lists,
/// `item.…` against their items, and only inside one; a copy's default and
/// a lookup's are checked for what they may be.
#[test]
fn lists_items_and_defaults_are_checked() {
    let catalog = Catalog::embedded().unwrap();
    let per_line = orders_sheet(
        r#"{ column = "SKU", value = { copy = "item.sku" } }, { column = "Qty", value = { number = "item.quantity" } }"#,
        r#"each = "payload.lines"
when = [{ field = "item.quantity", not_equals = 0 }]"#,
    )
    .replace(
        r#"key = { copy = "aggregate_id" }"#,
        r#"key = { concat = [{ copy = "aggregate_id" }, { copy = "item.sku" }] }"#,
    );
    load_rules(&per_line, &catalog).expect("a row per line");
    // The key reads no item: every item's row would be the same row.
    let one_row = per_line.replace(
        r#"key = { concat = [{ copy = "aggregate_id" }, { copy = "item.sku" }] }"#,
        r#"key = { copy = "aggregate_id" }"#,
    );
    assert!(
        refusal(&one_row).contains("sheet.key: a rule with each makes a command per item"),
        "{}",
        refusal(&one_row)
    );
    let hashed = per_line.replace(r#"id = "orders-sheet""#, r#"id = "orders-sheet#0""#);
    assert!(refusal(&hashed).contains("# is kept for items of each"));
    let lines = r#"{ name = "client_order_ref", value = { copy = "aggregate_id" } },
        { name = "order_line", each = "payload.lines", fields = [
          { name = "product_id.default_code", value = { copy = "item.sku" } },
          { name = "price_unit", value = { number = "item.unit_price_minor", divide_by = 100 } },
        ] }"#;
    load_rules(&orders_erp(lines, ""), &catalog).expect("ERP lines");
    let defaulted = orders_sheet(
        r#"{ column = "Country", value = { copy = "payload.shipping_country", default = "—" } }"#,
        "",
    );
    load_rules(&defaulted, &catalog).expect("a copy with a default");
    let totalled = orders_sheet(
        r#"{ column = "Total", value = { sum = [{ copy = "payload.total_minor" }, { constant = 495 }], divide_by = 100, decimals = 2 } }"#,
        "",
    );
    load_rules(&totalled, &catalog).expect("a sum");

    let cases = [
        (
            orders_sheet(
                r#"{ column = "T", value = { product = [{ copy = "payload.total_minor" }, { copy = "payload.currency" }] } }"#,
                "",
            ),
            "sheet.columns[0] \"T\".product[1]: arithmetic takes numbers, not payload.currency, not a numeric field",
        ),
        (
            orders_sheet(
                r#"{ column = "T", value = { sum = [{ copy = "payload.total_minor" }, { constant = "1" }] } }"#,
                "",
            ),
            "arithmetic takes numbers, not the constant String(\"1\")",
        ),
        (
            orders_sheet(
                r#"{ column = "T", value = { sum = [{ copy = "payload.total_minor" }] } }"#,
                "",
            ),
            "sum needs two parts or more",
        ),
        (
            orders_sheet(
                r#"{ column = "T", value = { concat = [{ copy = "aggregate_id" }], decimals = 2 } }"#,
                "",
            ),
            "decimals goes with number or sum or product, not concat",
        ),
        (
            orders_sheet(
                r#"{ column = "T", value = { product = [{ copy = "payload.total_minor" }, { constant = 2 }], divide_by = 0 } }"#,
                "",
            ),
            "divide_by must be a non-zero number",
        ),
        (
            orders_sheet(r#"{ column = "S", value = { copy = "item.sku" } }"#, ""),
            "sheet.columns[0] \"S\": item.sku: item.… reads an item of each, and no each encloses it",
        ),
        (
            orders_sheet(
                r#"{ column = "S", value = { copy = "item.colour" } }"#,
                r#"each = "payload.lines""#,
            )
            .replace(
                r#"key = { copy = "aggregate_id" }"#,
                r#"key = { copy = "item.sku" }"#,
            ),
            "field item.colour does not exist: OrderLine has sku, description, quantity, unit_price_minor",
        ),
        (
            orders_sheet(
                r#"{ column = "S", value = { copy = "aggregate_id" } }"#,
                r#"each = "payload.customer""#,
            )
            .replace(
                r#"key = { copy = "aggregate_id" }"#,
                r#"key = { copy = "item.name" }"#,
            ),
            "each: payload.customer is a record, not a list",
        ),
        (
            orders_erp(
                r#"{ name = "order_line", each = "payload.lines", fields = [{ name = "x", value = { date = "item.sku", format = "%Y" } }] }"#,
                "",
            ),
            "erp.fields[0] \"order_line\".fields[0] \"x\": date needs a timestamp; item.sku is not one",
        ),
        (
            orders_erp(r#"{ name = "order_line", each = "payload.lines" }"#, ""),
            "erp.fields[0] \"order_line\": give a value, or each (a list) with the fields of each item",
        ),
        (
            orders_sheet(
                r#"{ column = "X", value = { number = "payload.total_minor", default = 0 } }"#,
                "",
            ),
            "default goes with copy or lookup, not number",
        ),
        (
            orders_sheet(
                r#"{ column = "X", value = { lookup = "payload.currency", table = "countries", default = 1 } }"#,
                "",
            ),
            "a lookup's default is text, not 1",
        ),
        (
            orders_sheet(
                r#"{ column = "X", value = { copy = "payload.total_minor", default = "none" } }"#,
                "",
            ),
            "default String(\"none\") is not of payload.total_minor's type (Integer)",
        ),
        (
            orders_sheet(
                r#"{ column = "X", value = { copy = "payload.total_minor", default = 1.5 } }"#,
                "",
            ),
            "default Double(1.5) is not of payload.total_minor's type (Integer)",
        ),
    ];
    for (rules, expected) in cases {
        let message = refusal(&rules);
        assert!(message.contains(expected), "{expected}\n  got: {message}");
    }
}
