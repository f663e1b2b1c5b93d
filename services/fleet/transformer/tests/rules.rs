//! The rules file: the shipped one is valid; a broken one is refused at
//! start-up with the rule and the field (or option) named.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use sluice_contracts::Catalog;
use sluice_transformer::load_rules;

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
            r#"{ column = "X", value = { copy = "aggregate_id", constant = "x" } }"#,
            "give exactly one of copy, constant, date, number, concat, lookup",
        ),
        (
            r#"{ column = "X", value = { copy = "aggregate_id", decimals = 2 } }"#,
            "decimals goes with number, not copy",
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
