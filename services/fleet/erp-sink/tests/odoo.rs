//! erp-sink's applier against the sandbox's strict Odoo, call by call: a
//! reservation as the saga sends it becomes a confirmed sale order for a
//! partner found or made by e-mail, with a line per SKU; its cancellation
//! goes through `action_cancel`; an unknown SKU or field is refused naming
//! it, before anything is written; a model missing the sink's own fields
//! is found at start; an invoice is posted and cancelled by the methods its
//! model has, named by flags. Each over JSON-RPC and over JSON-2.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    DATABASE, MODEL, PASSWORD, Tuning, applier, applier_as, applier_over, applier_waiting, id,
    sandbox,
};
use serde_json::{Value, json};
use sluice_contracts::types::{ErpCommand, ErpField, ErpOperation, ScalarValue};
use sluice_erp_sink::odoo::{OdooLogin, Protocol};
use sluice_erp_sink::{Applied, ApplyError, ModelMethods};
use sluice_resilience::{Classified, ErrorClass};
use sluice_sandbox::Local;

/// Each scenario runs over both of Odoo's APIs, a sandbox each.
const PROTOCOLS: [Protocol; 2] = [Protocol::JsonRpc, Protocol::Json2];

fn text(value: &str) -> ScalarValue {
    ScalarValue::String(value.into())
}

/// A reservation of `order` for ada@example.org: the fields the saga sends.
fn reservation(n: u32, order: &str, skus: &[&str]) -> ErpCommand {
    let mut fields = vec![
        ("client_order_ref", text(order)),
        ("partner_id.email", text("ada@example.org")),
        ("partner_id.name", text("Ada Lovelace")),
    ];
    let names: Vec<(String, ScalarValue)> = skus
        .iter()
        .enumerate()
        .flat_map(|(i, sku)| {
            [
                (format!("order_line.{i}.product_id.default_code"), text(sku)),
                (
                    format!("order_line.{i}.product_uom_qty"),
                    ScalarValue::Long(2),
                ),
                (
                    format!("order_line.{i}.price_unit"),
                    ScalarValue::Double(12.5),
                ),
            ]
        })
        .collect();
    let mut all: Vec<ErpField> = fields
        .drain(..)
        .map(|(name, value)| ErpField {
            name: name.into(),
            value,
        })
        .collect();
    all.extend(
        names
            .into_iter()
            .map(|(name, value)| ErpField { name, value }),
    );
    ErpCommand {
        command_id: id(n),
        model: MODEL.into(),
        operation: ErpOperation::Create,
        external_ref: order.into(),
        fields: all,
        source_event_id: None,
        issued_at: 1_795_437_296_789,
        saga: None,
        correlation_id: None,
        causation_id: None,
    }
}

/// Command `n`: an upsert of the `model` record `external_ref`.
fn upsert(n: u32, model: &str, external_ref: &str, fields: Vec<ErpField>) -> ErpCommand {
    ErpCommand {
        model: model.into(),
        operation: ErpOperation::Upsert,
        fields,
        ..reservation(n, external_ref, &[])
    }
}

fn cancel(n: u32, order: &str) -> ErpCommand {
    ErpCommand {
        command_id: id(n),
        operation: ErpOperation::Cancel,
        fields: Vec::new(),
        ..reservation(n, order, &[])
    }
}

async fn table(base: &str, model: &str) -> Vec<serde_json::Map<String, Value>> {
    Local::at(base).records(model).await.unwrap()
}

async fn operations(base: &str) -> Vec<String> {
    Local::at(base)
        .requests("odoo")
        .await
        .unwrap()
        .iter()
        .filter_map(|r| r["operation"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_reservation_is_a_confirmed_quotation_with_its_customer_and_lines() {
    for protocol in PROTOCOLS {
        let base = sandbox().await;
        let tuning = Tuning::quick();
        let sink = applier_over(&base, protocol, tuning.breaker, tuning.limiter);
        sink.check(&[MODEL.to_owned()]).await.unwrap();

        let first = sink
            .apply(&reservation(1, "o-1", &["SKU-1", "MUG-1"]))
            .await
            .unwrap();
        let again = sink
            .apply(&reservation(1, "o-1", &["SKU-1", "MUG-1"]))
            .await
            .unwrap();
        assert!(!first.already && again.already);
        sink.apply(&reservation(2, "o-2", &["TEA-7"]))
            .await
            .unwrap();

        let partners = table(&base, "res.partner").await;
        assert_eq!(
            partners.len(),
            1,
            "one partner for one e-mail: {partners:?}"
        );
        assert_eq!(partners[0]["email"], "ada@example.org");
        assert_eq!(partners[0]["name"], "Ada Lovelace");
        let orders = table(&base, "sale.order").await;
        assert_eq!(orders.len(), 2);
        let order = &orders[0];
        assert_eq!(order["id"], json!(first.record_id));
        assert_eq!(order["partner_id"], partners[0]["id"]);
        assert_eq!(order["client_order_ref"], "o-1");
        assert_eq!(order["state"], "sale", "confirmed by action_confirm");
        assert_eq!(order["amount_total"], json!(50.0), "2 × 12.50 twice");
        let lines = table(&base, "sale.order.line").await;
        let products: Vec<&Value> = lines
            .iter()
            .filter(|l| l["order_id"] == json!(first.record_id))
            .map(|l| &l["name"])
            .collect();
        assert_eq!(products, [&json!("[SKU-1] Widget"), &json!("[MUG-1] Mug")]);
        let ops = operations(&base).await;
        assert_eq!(ops.iter().filter(|o| *o == "action_confirm").count(), 2);
        // Each order looked up by its reference (3), each product once (3),
        // the new customer once before it is made: one search, not two.
        assert_eq!(
            ops.iter().filter(|o| *o == "search_read").count(),
            7,
            "{ops:?}"
        );
        assert_eq!(
            ops.iter().filter(|o| *o == "fields_get").count(),
            2,
            "once per model (order, line): {ops:?}"
        );
    }
}

#[tokio::test]
async fn orders_of_one_new_customer_at_once_make_one_partner() {
    for protocol in PROTOCOLS {
        let base = sandbox().await;
        let tuning = Tuning::quick();
        let sink = applier_over(&base, protocol, tuning.breaker, tuning.limiter);
        let commands: Vec<ErpCommand> = (1..=8)
            .map(|n| reservation(n, &format!("o-{n}"), &["SKU-2"]))
            .collect();
        let applied = futures::future::join_all(commands.iter().map(|c| sink.apply(c))).await;
        assert!(applied.iter().all(Result::is_ok), "{applied:?}");
        let partners = table(&base, "res.partner").await;
        assert_eq!(partners.len(), 1, "{partners:?}");
        assert_eq!(table(&base, "sale.order").await.len(), 8);
    }
}

/// A contact upserted by its own command while an order makes the same
/// contact as its customer (the reference keyed by the sink's field):
/// every write applied 300 ms late, the second command 100 ms after the
/// first, so its search misses what the first is making; each first. One
/// partner, which the upsert wrote and the order points at.
#[tokio::test]
async fn a_record_and_a_reference_to_it_made_at_once_are_one_record() {
    for (protocol, upsert_first) in [
        (Protocol::JsonRpc, true),
        (Protocol::JsonRpc, false),
        (Protocol::Json2, false),
    ] {
        let base = sandbox().await;
        common::faults(&base, json!({"write_latency_ms": 300})).await;
        let tuning = Tuning::quick();
        let sink = applier_over(&base, protocol, tuning.breaker, tuning.limiter);
        let field = |name: &str, value: &str| ErpField {
            name: name.into(),
            value: text(value),
        };
        let contact = upsert(
            1,
            "res.partner",
            "C-1",
            vec![field("name", "Carol"), field("email", "carol@example.org")],
        );
        let order = ErpCommand {
            fields: vec![
                field("partner_id.x_sluice_external_ref", "C-1"),
                field("partner_id.name", "Carol"),
            ],
            ..reservation(2, "o-1", &["SKU-1"])
        };
        let (first, second) = if upsert_first {
            (&contact, &order)
        } else {
            (&order, &contact)
        };
        let (first, second) = tokio::join!(sink.apply(first), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            sink.apply(second).await
        });
        let (upserted, ordered) = if upsert_first {
            (first, second)
        } else {
            (second, first)
        };
        let (upserted, ordered) = (upserted.unwrap(), ordered.unwrap());
        let partner = one_contact(&base, protocol, upserted, ordered).await;
        assert!(!upserted.already);
        assert_eq!(partner["x_sluice_commands"], json!(id(1)));
    }
}

/// The one partner of `base`, the `upserted` contact with its e-mail, and
/// the `ordered` sale order's customer.
async fn one_contact(
    base: &str,
    protocol: Protocol,
    upserted: Applied,
    ordered: Applied,
) -> serde_json::Map<String, Value> {
    let mut partners = table(base, "res.partner").await;
    assert_eq!(
        partners.len(),
        1,
        "{protocol:?}: one contact C-1: {partners:?}"
    );
    let partner = partners.remove(0);
    assert_eq!(partner["id"], json!(upserted.record_id));
    assert_eq!(partner["email"], "carol@example.org", "the upsert wrote it");
    let orders = table(base, "sale.order").await;
    assert_eq!(orders[0]["id"], json!(ordered.record_id));
    assert_eq!(orders[0]["partner_id"], json!(upserted.record_id));
    partner
}

/// The same race with the id forgotten in between: an order makes contact
/// C-1 while the contact's own upsert, which searched before, makes its
/// company; then a command naming C-1 is refused, which forgets C-1's id
/// (as a full cache forgets every id). The upsert still finds what was
/// made under its gate since its search, and writes it.
#[tokio::test]
async fn a_record_made_since_the_search_is_found_though_its_id_is_forgotten() {
    const WRITE_MS: u64 = 1_000;
    for protocol in PROTOCOLS {
        let base = sandbox().await;
        common::faults(&base, json!({"write_latency_ms": WRITE_MS})).await;
        let tuning = Tuning::quick();
        let sink = applier_over(&base, protocol, tuning.breaker, tuning.limiter);
        let field = |name: &str, value: ScalarValue| ErpField {
            name: name.into(),
            value,
        };
        let order = ErpCommand {
            fields: vec![
                field("partner_id.x_sluice_external_ref", text("C-1")),
                field("partner_id.name", text("Carol")),
            ],
            ..reservation(1, "o-1", &[])
        };
        let contact = upsert(
            2,
            "res.partner",
            "C-1",
            vec![
                field("name", text("Carol")),
                field("email", text("carol@example.org")),
                field("company_id.name", text("NewCo")),
                field("company_id.currency_id", ScalarValue::Long(1)),
            ],
        );
        // sale.order.line has no external reference field: its search is
        // refused, and the ids of its references forgotten.
        let refused = upsert(
            3,
            "sale.order.line",
            "L-1",
            vec![field("order_partner_id.x_sluice_external_ref", text("C-1"))],
        );
        let after = |ms: u64| tokio::time::sleep(Duration::from_millis(ms));
        // The order holds C-1's gate for 0–1 000 ms and remembers it; the
        // upsert searches at 500 (nothing yet) and makes NewCo until 1 500;
        // the refusal forgets C-1 at 1 250.
        let (ordered, upserted, refused) = tokio::join!(
            sink.apply(&order),
            async {
                after(WRITE_MS / 2).await;
                sink.apply(&contact).await
            },
            async {
                after(WRITE_MS * 5 / 4).await;
                sink.apply(&refused).await
            },
        );
        let refused = refused.unwrap_err();
        assert_eq!(refused.class(), ErrorClass::Permanent, "{refused}");
        one_contact(&base, protocol, upserted.unwrap(), ordered.unwrap()).await;
    }
}

#[tokio::test]
async fn a_cancel_calls_action_cancel_and_an_unknown_sku_or_field_is_refused_by_name() {
    for protocol in PROTOCOLS {
        let base = sandbox().await;
        let tuning = Tuning::quick();
        let sink = applier_over(&base, protocol, tuning.breaker, tuning.limiter);
        sink.apply(&reservation(1, "o-1", &["SKU-1"]))
            .await
            .unwrap();
        let cancelled = sink.apply(&cancel(2, "o-1")).await.unwrap();
        let again = sink.apply(&cancel(2, "o-1")).await.unwrap();
        assert!(!cancelled.already && again.already);
        let orders = table(&base, "sale.order").await;
        assert_eq!(orders[0]["state"], "cancel");
        let ops = operations(&base).await;
        assert_eq!(
            ops.iter().filter(|o| *o == "action_cancel").count(),
            1,
            "{ops:?}"
        );

        let before = operations(&base).await.len();
        let refused = sink
            .apply(&reservation(3, "o-3", &["SKU-1", "TEA-999"]))
            .await
            .unwrap_err();
        assert_eq!(refused.class(), ErrorClass::Permanent);
        assert_eq!(refused.code(), "unknown_reference");
        assert!(refused.to_string().contains("TEA-999"), "{refused}");
        let mut shipped = reservation(4, "o-4", &["SKU-1"]);
        shipped.fields.push(ErpField {
            name: "partner_name".into(),
            value: text("Ada"),
        });
        let refused = sink.apply(&shipped).await.unwrap_err();
        assert!(
            matches!(&refused, ApplyError::UnknownField { field, .. } if field == "partner_name"),
            "{refused}"
        );
        let writes: Vec<String> = operations(&base).await[before..]
            .iter()
            .filter(|o| matches!(o.as_str(), "create" | "write"))
            .cloned()
            .collect();
        assert!(
            writes.is_empty(),
            "nothing written for refused commands: {writes:?}"
        );
        assert_eq!(table(&base, "sale.order").await.len(), 1);
    }
}

/// An invoice for `customer` as the invoices example's rule makes it.
fn invoice(n: u32, number: &str, operation: ErpOperation, lines: &[(&str, i64)]) -> ErpCommand {
    let mut fields = vec![
        ("move_type".to_owned(), text("out_invoice")),
        ("partner_id.name".to_owned(), text("Ada Ltd")),
        (
            "partner_id.is_company".to_owned(),
            ScalarValue::Boolean(true),
        ),
        ("currency_id.name".to_owned(), text("EUR")),
    ];
    for (i, (sku, quantity)) in lines.iter().enumerate() {
        let line = format!("invoice_line_ids.{i}");
        fields.push((format!("{line}.product_id.default_code"), text(sku)));
        fields.push((format!("{line}.quantity"), ScalarValue::Long(*quantity)));
    }
    ErpCommand {
        model: "account.move".into(),
        operation,
        fields: fields
            .into_iter()
            .map(|(name, value)| ErpField { name, value })
            .collect(),
        ..reservation(n, number, &[])
    }
}

#[tokio::test]
async fn an_invoice_is_posted_and_cancelled_by_the_methods_its_model_has() {
    for protocol in PROTOCOLS {
        let base = sandbox().await;
        let tuning = Tuning::quick();
        let models = vec!["account.move".to_owned()];
        // Told nothing of invoices, the sink calls sale.order's methods on
        // one: the invoice stays a draft, and Odoo has no action_cancel on
        // account.move. Each command's write landed before its action.
        let untold = applier_over(&base, protocol, tuning.breaker.clone(), tuning.limiter);
        untold.check(&models).await.unwrap();
        let draft = invoice(1, "INV-1", ErpOperation::Create, &[("SKU-1", 2)]);
        let made = untold.apply(&draft).await.unwrap();
        let moves = table(&base, "account.move").await;
        assert_eq!(moves[0]["state"], "draft", "not posted: {moves:?}");
        let cancel_first = invoice(2, "INV-1", ErpOperation::Cancel, &[]);
        let refused = untold.apply(&cancel_first).await.unwrap_err();
        assert!(refused.to_string().contains("action_cancel"), "{refused}");

        let sink = applier_over(&base, protocol, tuning.breaker, tuning.limiter)
            .confirm_on_create(ModelMethods::confirming("account.move=action_post").unwrap())
            .cancel_with(ModelMethods::cancelling("account.move=button_cancel").unwrap());
        sink.check(&models).await.unwrap();
        // Redelivered, the CREATE whose action never ran is posted now.
        let redelivered = sink.apply(&draft).await.unwrap();
        assert!(redelivered.already);
        let moves = table(&base, "account.move").await;
        assert_eq!(moves[0]["state"], "posted", "{moves:?}");
        let lines = [("SKU-1", 2), ("MUG-1", 1)];
        let posted = sink
            .apply(&invoice(3, "INV-2", ErpOperation::Create, &lines))
            .await
            .unwrap();
        let again = sink
            .apply(&invoice(3, "INV-2", ErpOperation::Create, &lines))
            .await
            .unwrap();
        assert!(!posted.already && again.already);
        let moves = table(&base, "account.move").await;
        let second = moves
            .iter()
            .find(|m| m["id"] == json!(posted.record_id))
            .unwrap();
        assert_eq!(second["state"], "posted", "{second:?}");
        assert_eq!(second["amount_total"], json!(34.0), "2 × 12.50 + 9.00");
        assert!(
            second["name"].as_str().unwrap().starts_with("INV/"),
            "{second:?}"
        );
        let partners = table(&base, "res.partner").await;
        assert_eq!(partners.len(), 1, "{partners:?}");
        assert_eq!(partners[0]["is_company"], true);
        // A posted invoice's lines stay: a second issue of it is refused.
        let reissued = sink
            .apply(&invoice(5, "INV-2", ErpOperation::Create, &lines))
            .await
            .unwrap_err();
        assert_eq!(reissued.class(), ErrorClass::Permanent);
        assert!(
            reissued
                .to_string()
                .contains("You cannot delete an item linked to a posted entry."),
            "{reissued}"
        );

        // Cancelled by button_cancel, each once: a redelivery calls nothing.
        let cancel = invoice(4, "INV-2", ErpOperation::Cancel, &[]);
        sink.apply(&cancel).await.unwrap();
        assert!(sink.apply(&cancel).await.unwrap().already);
        sink.apply(&cancel_first).await.unwrap();
        let moves = table(&base, "account.move").await;
        let states: Vec<(&Value, &Value)> = moves.iter().map(|m| (&m["id"], &m["state"])).collect();
        assert_eq!(
            states,
            [
                (&json!(made.record_id), &json!("cancel")),
                (&json!(posted.record_id), &json!("cancel"))
            ]
        );
        let ops = operations(&base).await;
        let calls = |name: &str| ops.iter().filter(|o| *o == name).count();
        assert_eq!(calls("action_post"), 2, "{ops:?}");
        assert_eq!(calls("button_cancel"), 2, "{ops:?}");
        // An unknown currency is named, nothing written.
        let mut francs = invoice(6, "INV-3", ErpOperation::Create, &[("SKU-1", 1)]);
        francs.fields[3].value = text("XYZ");
        let refused = sink.apply(&francs).await.unwrap_err();
        assert_eq!(refused.code(), "unknown_reference");
        assert!(refused.to_string().contains("XYZ"), "{refused}");
    }
}

/// A model a confirm or cancel method is named for is checked at start
/// like `--models`: one without a `state` would be cancelled again on
/// every redelivery.
#[tokio::test]
async fn the_models_the_methods_name_are_checked_at_start() {
    let base = sandbox().await;
    let tuning = Tuning::quick();
    let sink = applier_over(&base, Protocol::JsonRpc, tuning.breaker, tuning.limiter)
        .cancel_with(ModelMethods::cancelling("res.partner=action_archive").unwrap());
    let refused = sink.check(&[]).await.unwrap_err();
    assert!(
        matches!(&refused, ApplyError::UnknownField { model, .. } if model == "res.partner"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_model_without_the_sinks_fields_is_named_at_start() {
    for protocol in PROTOCOLS {
        let base = sandbox().await;
        let tuning = Tuning::quick();
        let sink = applier_over(&base, protocol, tuning.breaker.clone(), tuning.limiter);
        let err = sink
            .check(&["product.product".to_owned()])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ApplyError::UnknownField { model, field, .. } if model == "product.product" && field == "x_sluice_external_ref"),
            "{err}"
        );
        let err = sink.check(&["sale.orders".to_owned()]).await.unwrap_err();
        let missing = match protocol {
            Protocol::JsonRpc => "Object sale.orders doesn't exist",
            Protocol::Json2 => "the model 'sale.orders' does not exist",
        };
        assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
        assert!(err.to_string().contains(missing), "{err}");
        assert_eq!(err.stops_start(protocol), Some(""), "{err}");
        // A URL that is not Odoo's is a 404 (over JSON-2 a wrong database
        // too, and an Odoo before 19, which has no JSON-2: the hint says so).
        let wrong_url = OdooLogin {
            url: format!("{base}/not-odoo"),
            ..common::login(&base, protocol)
        };
        let sink = applier_as(wrong_url, tuning.breaker, tuning.limiter);
        let err = sink.check(&[MODEL.to_owned()]).await.unwrap_err();
        let hint = err
            .stops_start(protocol)
            .unwrap_or_else(|| panic!("{protocol:?}: {err}"));
        let expected = match protocol {
            Protocol::Json2 => "--odoo-protocol json-rpc",
            Protocol::JsonRpc => "check --odoo-url",
        };
        assert!(hint.contains(expected), "{protocol:?}: {hint}");
    }
}

/// The ERP rules the transformer ships (rules.toml and the example for a
/// deployment without the saga): (operation, field names) of each.
fn shipped_erp_rules() -> Vec<(String, Vec<String>)> {
    let files = [
        include_str!("../../transformer/rules.toml"),
        include_str!("../../transformer/examples/orders-placed.toml"),
    ];
    let mut rules = Vec::new();
    for file in files {
        let parsed: toml::Table = toml::from_str(file).unwrap();
        for rule in parsed["rules"].as_array().unwrap() {
            let Some(erp) = rule.get("erp") else {
                continue;
            };
            assert_eq!(erp["model"].as_str(), Some(MODEL));
            let names = erp["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap().to_owned())
                .collect();
            rules.push((erp["operation"].as_str().unwrap().to_owned(), names));
        }
    }
    rules
}

#[tokio::test]
async fn the_shipped_mappings_erp_commands_are_accepted_by_the_strict_odoo() {
    let base = sandbox().await;
    let tuning = Tuning::quick();
    let sink = applier(&base, tuning.breaker, tuning.limiter);
    let sample = |name: &str| match name {
        "client_order_ref" => text("order-9"),
        "partner_id.email" => text("grace@example.org"),
        "partner_id.name" => text("Grace Hopper"),
        "date_order" => text("2026-11-23 12:34:56"),
        // What the mapping shipped before: sale.order has none of them.
        "partner_name" | "partner_email" | "currency" | "cancel_reason" => text("x"),
        "amount_total" => ScalarValue::Double(29.99),
        other => panic!("a shipped ERP field without a sample value here: {other}"),
    };
    let mut rules = shipped_erp_rules();
    // The CREATE first, then the CANCEL of the same order.
    rules.sort_by_key(|(operation, _)| operation != "CREATE");
    assert_eq!(rules.len(), 2, "{rules:?}");
    for (n, (operation, names)) in (1..).zip(rules) {
        let operation = match operation.as_str() {
            "CREATE" => ErpOperation::Create,
            "CANCEL" => ErpOperation::Cancel,
            other => panic!("operation {other}"),
        };
        let command = ErpCommand {
            operation,
            fields: names
                .iter()
                .map(|name| ErpField {
                    name: name.clone(),
                    value: sample(name),
                })
                .collect(),
            ..reservation(n, "order-9", &[])
        };
        sink.apply(&command)
            .await
            .unwrap_or_else(|err| panic!("{operation:?} {names:?}: {err}"));
    }
    let orders = table(&base, "sale.order").await;
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["state"], "cancel");
    // Odoo's action_confirm sets the order date to the confirmation's.
    assert_ne!(orders[0]["date_order"], "2026-11-23 12:34:56");
}

/// JSON-2's answers that are not about the command: a wrong key or
/// database holds (every command would meet it), a conflict Odoo could not
/// retry away is retried, and a model name from a command that is no name
/// is refused before anything is sent (it would make another URL).
#[tokio::test]
async fn over_json_2_wrong_credentials_hold_and_a_conflict_is_retried() {
    let base = sandbox().await;
    let tuning = Tuning::quick();
    // What the start's check meets as `database` with `key`: its class and code.
    let check_as = |database: &str, key: &str| {
        let login = OdooLogin {
            url: base.clone(),
            protocol: Protocol::Json2,
            database: database.into(),
            login: String::new(),
            password: key.to_owned().into(),
        };
        let sink = applier_as(login, tuning.breaker.clone(), tuning.limiter);
        async move {
            let err = sink.check(&[MODEL.to_owned()]).await.unwrap_err();
            (err.class(), err.code())
        }
    };
    assert_eq!(
        check_as(DATABASE, "not-the-key").await,
        (ErrorClass::Pause, "login_refused".to_owned())
    );
    assert_eq!(
        check_as("nosuchdb", PASSWORD).await,
        (ErrorClass::Pause, "http_404".to_owned())
    );

    Local::at(&base)
        .set_faults("odoo", &json!({"fail_value": "FLAKY"}))
        .await
        .unwrap();
    let sink = applier_over(&base, Protocol::Json2, tuning.breaker, tuning.limiter);
    let conflict = sink
        .apply(&reservation(1, "FLAKY", &["SKU-1"]))
        .await
        .unwrap_err();
    assert_eq!(conflict.class(), ErrorClass::Retryable, "{conflict}");
    assert!(
        conflict.to_string().contains("SerializationFailure"),
        "{conflict}"
    );

    let before = operations(&base).await.len();
    let mut outside = reservation(2, "o-2", &["SKU-1"]);
    outside.model = "sale.order/../../web/session".into();
    let invalid = sink.apply(&outside).await.unwrap_err();
    assert_eq!(
        (invalid.class(), invalid.code().as_str()),
        (ErrorClass::Permanent, "invalid_name"),
        "{invalid}"
    );
    assert_eq!(operations(&base).await.len(), before, "nothing sent");
}

/// A proxy's error page that never ends is read only so far: the refusal
/// is its status, known at once, not at the end of a call that may take a
/// minute (before, the client read the page until its timeout).
#[tokio::test]
async fn an_error_page_that_never_ends_is_read_only_so_far() {
    let base = sandbox().await;
    let endless = json!({"error_rates": {"502": 1.0}, "endless_error_body": true});
    Local::at(&base).set_faults("odoo", &endless).await.unwrap();
    for protocol in PROTOCOLS {
        let sink = applier_waiting(&base, protocol, Duration::from_secs(60));
        let answer = tokio::time::timeout(
            Duration::from_secs(20),
            sink.apply(&reservation(1, "o-1", &["SKU-1"])),
        )
        .await
        .unwrap_or_else(|_| panic!("{protocol:?}: still reading the page after 20 s"));
        let err = answer.unwrap_err();
        assert_eq!(
            (err.class(), err.code().as_str()),
            (ErrorClass::Retryable, "http_502"),
            "{protocol:?}: {err}"
        );
    }
}
