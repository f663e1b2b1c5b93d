//! The sandbox's Odoo holds the models the sinks touch as Odoo 17/18 define
//! them (addons/sale, base, product): unknown fields, wrong types and missing
//! required fields are refused with Odoo's own exceptions; computed totals
//! come from the lines; a quotation is confirmed by `action_confirm` and
//! cancelled by `action_cancel`, an invoice (addons/account) posted by
//! `action_post` and cancelled by `button_cancel`.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sluice_sandbox::{Local, OdooAccount, Sandbox, ServiceAccountKey, TokenIssuer};

async fn serve() -> String {
    let key = ServiceAccountKey::generate("unused@sandbox.test", "unused").unwrap();
    let issuer =
        TokenIssuer::new(&key.public_key_pem().unwrap(), &key.client_email, "unused").unwrap();
    let app = Sandbox::new(
        issuer,
        OdooAccount {
            database: "sluice".into(),
            login: "sluice".into(),
            password: "secret".into(),
        },
    );
    Local::start(app).await.unwrap().base
}

/// `execute_kw` on `model`; the whole JSON-RPC answer.
async fn call(base: &str, model: &str, method: &str, args: Value, kwargs: Value) -> Value {
    let response = Client::new()
        .post(format!("{base}/jsonrpc"))
        .json(
            &json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {
            "service": "object", "method": "execute_kw",
            "args": ["sluice", 2, "secret", model, method, args, kwargs]}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "Odoo answers errors with 200"
    );
    response.json().await.unwrap()
}

/// The answer's result; panics on an error.
fn ok(answer: Value) -> Value {
    assert!(answer.get("error").is_none(), "{answer}");
    answer["result"].clone()
}

/// The error's (data.name, data.message); panics on a result.
fn refused(answer: &Value) -> (String, String) {
    let data = &answer["error"]["data"];
    assert_eq!(answer["error"]["code"], 200, "{answer}");
    assert_eq!(answer["error"]["message"], "Odoo Server Error", "{answer}");
    (
        data["name"].as_str().unwrap_or_default().to_owned(),
        data["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The id of the product whose internal reference is `sku`.
async fn product(base: &str, sku: &str) -> i64 {
    let found = ok(call(
        base,
        "product.product",
        "search",
        json!([[["default_code", "=", sku]]]),
        json!({}),
    )
    .await);
    found[0]
        .as_i64()
        .unwrap_or_else(|| panic!("no product {sku}: {found}"))
}

#[tokio::test]
async fn the_shipped_mappings_sale_order_fields_are_refused() {
    let base = serve().await;
    // What the saga and examples/orders-placed.toml sent before.
    let answer = call(
        &base,
        "sale.order",
        "create",
        json!([{"client_order_ref": "o-1", "partner_name": "Ada", "partner_email": "ada@example.org",
                "amount_total": 19.5, "currency": "EUR"}]),
        json!({}),
    )
    .await;
    let (name, message) = refused(&answer);
    assert_eq!(name, "builtins.ValueError");
    let named = ["partner_name", "partner_email", "currency"]
        .map(|field| format!("Invalid field '{field}' on model 'sale.order'"));
    assert!(named.contains(&message), "{message}");
    // And the cancel the shipped rules sent.
    let partner = ok(call(
        &base,
        "res.partner",
        "create",
        json!([{"name": "Ada"}]),
        json!({}),
    )
    .await);
    let order = ok(call(
        &base,
        "sale.order",
        "create",
        json!([{"partner_id": partner}]),
        json!({}),
    )
    .await);
    let answer = call(
        &base,
        "sale.order",
        "write",
        json!([[order], {"cancel_reason": "changed mind"}]),
        json!({}),
    )
    .await;
    assert_eq!(
        refused(&answer),
        (
            "builtins.ValueError".to_owned(),
            "Invalid field 'cancel_reason' on model 'sale.order'".to_owned()
        )
    );
    let answer = call(
        &base,
        "sale.order",
        "create",
        json!([{"client_order_ref": "o-1"}]),
        json!({}),
    )
    .await;
    let (name, message) = refused(&answer);
    assert_eq!(name, "odoo.exceptions.ValidationError");
    assert!(
        message.contains("a mandatory field is not set"),
        "{message}"
    );
    assert!(
        message.contains("Field: Customer (partner_id)"),
        "{message}"
    );
    let orders = ok(call(&base, "sale.order", "search", json!([[]]), json!({})).await);
    assert_eq!(orders, json!([order]), "nothing refused was kept");
}

#[tokio::test]
async fn wrong_types_and_missing_records_are_refused_as_odoo_does() {
    let base = serve().await;
    let partner = ok(call(
        &base,
        "res.partner",
        "create",
        json!([{"name": "Ada", "email": "ada@example.org"}]),
        json!({}),
    )
    .await);
    let cases = [
        (
            json!({"partner_id": "Ada"}),
            "builtins.ValueError",
            "Wrong value for sale.order.partner_id: 'Ada'",
        ),
        (
            json!({"partner_id": partner, "state": "shipped"}),
            "builtins.ValueError",
            "Wrong value for sale.order.state: 'shipped'",
        ),
        (
            json!({"partner_id": partner, "date_order": "yesterday"}),
            "builtins.ValueError",
            "time data 'yesterday' does not match format '%Y-%m-%d %H:%M:%S'",
        ),
        (
            json!({"partner_id": 999_999}),
            "odoo.exceptions.ValidationError",
            "Constraint: sale_order_partner_id_fkey",
        ),
        (
            json!({"partner_id": partner, "order_line": [[0, 0, {"product_id": 1, "product_uom_qty": "two"}]]}),
            "builtins.ValueError",
            "could not convert string to float: 'two'",
        ),
    ];
    for (values, name, message) in cases {
        let answer = call(&base, "sale.order", "create", json!([values]), json!({})).await;
        let (got_name, got_message) = refused(&answer);
        assert_eq!(got_name, name, "{values}: {answer}");
        assert!(got_message.contains(message), "{values}: {got_message}");
    }
    let answer = call(
        &base,
        "res.partner",
        "read",
        json!([[partner]]),
        json!({"fields": ["email", "x_shoe_size"]}),
    )
    .await;
    assert_eq!(
        refused(&answer).1,
        "Invalid field 'x_shoe_size' on model 'res.partner'"
    );
    let answer = call(&base, "sale.orders", "search", json!([[]]), json!({})).await;
    assert_eq!(
        refused(&answer),
        (
            "odoo.exceptions.UserError".to_owned(),
            "Object sale.orders doesn't exist".to_owned()
        )
    );
    let answer = call(
        &base,
        "sale.order",
        "write",
        json!([[4242], {"origin": "x"}]),
        json!({}),
    )
    .await;
    assert_eq!(refused(&answer).0, "odoo.exceptions.MissingError");
}

#[tokio::test]
async fn a_quotation_with_lines_is_confirmed_then_cancelled() {
    let base = serve().await;
    let partner = ok(call(
        &base,
        "res.partner",
        "create",
        json!([{"name": "Ada", "email": "ada@example.org"}]),
        json!({}),
    )
    .await);
    let (tea, mug) = (product(&base, "TEA-1").await, product(&base, "MUG-1").await);
    let order = ok(call(
        &base,
        "sale.order",
        "create",
        json!([{"partner_id": partner, "client_order_ref": "o-1", "amount_total": 1000.0,
                "order_line": [[0, 0, {"product_id": tea, "product_uom_qty": 2, "price_unit": 6.5}],
                               [0, 0, {"product_id": mug, "product_uom_qty": 1, "price_unit": 9.0, "name": "Mug"}]]}]),
        json!({}),
    )
    .await)
    .as_i64()
    .unwrap();
    let read = |fields: Value| {
        call(
            &base,
            "sale.order",
            "read",
            json!([[order]]),
            json!({"fields": fields}),
        )
    };
    let row = ok(read(json!([
        "state",
        "amount_total",
        "partner_id",
        "order_line",
        "name"
    ]))
    .await);
    // The written total is recomputed from the lines, as the ORM does.
    assert_eq!(row[0]["amount_total"], json!(22.0), "{row}");
    assert_eq!(row[0]["state"], "draft");
    assert_eq!(row[0]["partner_id"], json!([partner, "Ada"]));
    assert_eq!(row[0]["order_line"].as_array().unwrap().len(), 2);
    assert!(row[0]["name"].as_str().unwrap().starts_with('S'), "{row}");
    let lines = ok(call(
        &base,
        "sale.order.line",
        "search_read",
        json!([[["order_id", "=", order]]]),
        json!({"fields": ["product_id", "name", "price_subtotal"]}),
    )
    .await);
    assert_eq!(lines[0]["price_subtotal"], json!(13.0), "{lines}");
    assert_eq!(
        lines[0]["name"], "[TEA-1] Assam tea",
        "the description defaults to the product's"
    );

    assert_eq!(
        ok(call(
            &base,
            "sale.order",
            "action_confirm",
            json!([[order]]),
            json!({})
        )
        .await),
        true
    );
    assert_eq!(ok(read(json!(["state"])).await)[0]["state"], "sale");
    let again = call(
        &base,
        "sale.order",
        "action_confirm",
        json!([[order]]),
        json!({}),
    )
    .await;
    assert_eq!(
        refused(&again),
        (
            "odoo.exceptions.UserError".to_owned(),
            "Some orders are not in a state requiring confirmation.".to_owned()
        )
    );
    // A confirmed order: Odoo answers the cancel wizard's action and cancels nothing ...
    let wizard = ok(call(
        &base,
        "sale.order",
        "action_cancel",
        json!([[order]]),
        json!({}),
    )
    .await);
    assert_eq!(wizard["res_model"], "sale.order.cancel", "{wizard}");
    assert_eq!(ok(read(json!(["state"])).await)[0]["state"], "sale");
    // ... unless the caller says it needs no wizard.
    let cancelled = call(
        &base,
        "sale.order",
        "action_cancel",
        json!([[order]]),
        json!({"context": {"disable_cancel_warning": true}}),
    )
    .await;
    assert_eq!(ok(cancelled), true);
    assert_eq!(ok(read(json!(["state"])).await)[0]["state"], "cancel");

    let fields = ok(call(
        &base,
        "sale.order",
        "fields_get",
        json!([]),
        json!({"attributes": ["type", "required", "relation"]}),
    )
    .await);
    assert_eq!(
        fields["partner_id"],
        json!({"type": "many2one", "required": true, "relation": "res.partner"})
    );
    assert!(fields.get("partner_name").is_none());
    let named = ok(call(
        &base,
        "res.partner",
        "name_search",
        json!(["ad"]),
        json!({"limit": 5}),
    )
    .await);
    assert_eq!(named, json!([[partner, "Ada"]]));
}

#[tokio::test]
async fn an_invoice_is_posted_only_with_a_customer_and_lines_then_cancelled() {
    let base = serve().await;
    let sku = product(&base, "SKU-1").await;
    let create = |vals: Value| call(&base, "account.move", "create", json!([vals]), json!({}));
    // Born posted: account_move.py's create refuses it.
    let posted = create(json!({"move_type": "out_invoice", "state": "posted"})).await;
    assert_eq!(
        refused(&posted),
        (
            "odoo.exceptions.UserError".to_owned(),
            "You cannot create a move already in the posted state. Please create a draft move and post it after.".to_owned()
        )
    );
    // A draft without customer or lines is made; posting it is refused with
    // every reason at once, and leaves it a draft.
    let empty = ok(create(json!({"move_type": "out_invoice"})).await)
        .as_i64()
        .unwrap();
    let post = |id: i64| {
        call(
            &base,
            "account.move",
            "action_post",
            json!([[id]]),
            json!({}),
        )
    };
    assert_eq!(
        refused(&post(empty).await),
        (
            "odoo.exceptions.UserError".to_owned(),
            "The field 'Customer' is required, please complete it to validate the Customer Invoice.\nYou need to add a line before posting.".to_owned()
        )
    );
    let read = |id: i64| {
        call(
            &base,
            "account.move",
            "read",
            json!([[id]]),
            json!({"fields": ["state", "name", "amount_total", "invoice_line_ids", "partner_id", "invoice_date"]}),
        )
    };
    assert_eq!(ok(read(empty).await)[0]["state"], "draft");
    let partner = ok(call(
        &base,
        "res.partner",
        "create",
        json!([{"name": "Ada Ltd", "is_company": true}]),
        json!({}),
    )
    .await);
    let invoice = ok(create(
        json!({"move_type": "out_invoice", "partner_id": partner, "amount_total": 1.0,
        "invoice_line_ids": [[0, 0, {"product_id": sku, "quantity": 3}],
                             [0, 0, {"name": "Delivery", "quantity": 1, "price_unit": 4.5}]]}),
    )
    .await)
    .as_i64()
    .unwrap();
    let row = ok(read(invoice).await);
    // Lines priced from the product where not given; the total computed.
    assert_eq!(row[0]["amount_total"], json!(42.0), "{row}");
    assert_eq!(row[0]["name"], "/", "{row}");
    assert_eq!(row[0]["invoice_line_ids"].as_array().unwrap().len(), 2);
    assert_eq!(ok(post(invoice).await), false, "action_post answers False");
    let row = ok(read(invoice).await);
    assert_eq!(row[0]["state"], "posted");
    assert!(
        row[0]["name"].as_str().unwrap().starts_with("INV/"),
        "{row}"
    );
    assert!(row[0]["invoice_date"].as_str().is_some(), "{row}");
    let again = post(invoice).await;
    let name = row[0]["name"].as_str().unwrap();
    assert_eq!(
        refused(&again).1,
        format!("The entry {name} (id {invoice}) must be in draft.")
    );
    // A posted entry's lines stay.
    let rewrite = call(
        &base,
        "account.move",
        "write",
        json!([[invoice], {"invoice_line_ids": [[5, 0, 0]]}]),
        json!({}),
    )
    .await;
    assert_eq!(
        refused(&rewrite).1,
        "You cannot delete an item linked to a posted entry."
    );
    let draft = |id: i64| {
        call(
            &base,
            "account.move",
            "button_draft",
            json!([[id]]),
            json!({}),
        )
    };
    assert_eq!(
        refused(&draft(empty).await).1,
        "Only posted/cancelled journal entries can be reset to draft."
    );
    // A negative invoice is a credit note's job.
    let negative = ok(
        create(json!({"move_type": "out_invoice", "partner_id": partner,
        "invoice_line_ids": [[0, 0, {"name": "Refund", "quantity": 1, "price_unit": -5.0}]]}))
        .await,
    )
    .as_i64()
    .unwrap();
    assert!(
        refused(&post(negative).await)
            .1
            .starts_with("You cannot validate an invoice with a negative total amount."),
    );
    // A sale order's action is not an invoice's.
    let wrong = call(
        &base,
        "account.move",
        "action_confirm",
        json!([[invoice]]),
        json!({}),
    )
    .await;
    assert_eq!(refused(&wrong).0, "builtins.AttributeError");
    let cancel = |id: i64| {
        call(
            &base,
            "account.move",
            "button_cancel",
            json!([[id]]),
            json!({}),
        )
    };
    assert_eq!(ok(cancel(invoice).await), Value::Null);
    assert_eq!(ok(read(invoice).await)[0]["state"], "cancel");
    assert_eq!(
        refused(&cancel(invoice).await).1,
        "Only draft journal entries can be cancelled."
    );
    let fields = ok(call(
        &base,
        "account.move",
        "fields_get",
        json!([]),
        json!({"attributes": ["type", "relation"]}),
    )
    .await);
    assert_eq!(
        fields["invoice_line_ids"],
        json!({"type": "one2many", "relation": "account.move.line"})
    );
}

/// A JSON-2 call (`POST /json/2/<model>/<method>`) with `key`; the status
/// and the body.
async fn json2(base: &str, key: Option<&str>, path: &str, body: Value) -> (StatusCode, Value) {
    let mut request = Client::new()
        .post(format!("{base}/json/2/{path}"))
        .header("X-Odoo-Database", "sluice")
        .json(&body);
    if let Some(key) = key {
        request = request.header("Authorization", format!("bearer {key}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Odoo 19's JSON-2 API as its dispatcher answers: the key as a bearer
/// token, parameters by name, `ids` only for record methods, the bare
/// result, and errors with their HTTP status and Odoo's JSON error.
#[tokio::test]
async fn json_2_calls_answer_with_statuses_and_odoos_errors() {
    let base = serve().await;
    let key = Some("secret");
    let (status, body) = json2(&base, None, "res.partner/search", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = json2(&base, Some("wrong"), "res.partner/search", json!({})).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Invalid apikey"))
    );
    let (status, body) = json2(&base, key, "res.partnerz/search", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["name"], "werkzeug.exceptions.NotFound");

    let partner = json!({"name": "Ada", "email": "ada@example.org"});
    let (status, ids) = json2(
        &base,
        key,
        "res.partner/create",
        json!({"vals_list": partner}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ids}");
    assert!(
        ids.as_array().is_some_and(|ids| ids.len() == 1),
        "a list of ids: {ids}"
    );
    let (status, body) = json2(
        &base,
        key,
        "res.partner/create",
        json!({"ids": [1], "vals_list": partner}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = json2(
        &base,
        key,
        "res.partner/search_read",
        json!({"domain": [], "colour": "red"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("'colour'"),
        "{body}"
    );
    let (status, body) = json2(
        &base,
        key,
        "sale.order/write",
        json!({"ids": [999], "vals": {"note": "x"}}),
    )
    .await;
    assert_eq!(
        (status, body["name"].as_str()),
        (StatusCode::NOT_FOUND, Some("odoo.exceptions.MissingError")),
        "{body}"
    );
    let (status, body) = json2(
        &base,
        key,
        "sale.order/create",
        json!({"vals_list": [{"partner_name": "Ada"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(
        body["name"], "builtins.ValueError",
        "an unknown field: {body}"
    );
    let (status, found) = json2(
        &base,
        key,
        "res.partner/search_read",
        json!({"domain": [["email", "=", "ada@example.org"]], "fields": ["name"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found[0]["name"], "Ada", "{found}");
}

/// The ids `domain` finds on `model`.
async fn search(base: &str, model: &str, domain: Value) -> Value {
    ok(call(base, model, "search", json!([domain]), json!({})).await)
}

#[tokio::test]
async fn searches_see_every_write_and_removal() {
    let base = serve().await;
    let create = |email: &'static str| {
        let base = base.clone();
        async move {
            ok(call(
                &base,
                "res.partner",
                "create",
                json!([{"name": "Ada", "email": email}]),
                json!({}),
            )
            .await)
            .as_i64()
            .unwrap()
        }
    };
    let (ada, bob) = (
        create("ada@example.org").await,
        create("bob@example.org").await,
    );
    let by_email =
        |email: &'static str| search(&base, "res.partner", json!([["email", "=", email]]));
    assert_eq!(by_email("ada@example.org").await, json!([ada]));
    ok(call(
        &base,
        "res.partner",
        "write",
        json!([[ada], {"email": "ada@example.net"}]),
        json!({}),
    )
    .await);
    assert_eq!(
        by_email("ada@example.org").await,
        json!([]),
        "the old value is gone"
    );
    assert_eq!(by_email("ada@example.net").await, json!([ada]));
    // The other leaves of the domain still hold, and `|` and `!` still scan.
    let both = json!([
        "|",
        ["email", "=", "ada@example.net"],
        ["email", "=", "bob@example.org"]
    ]);
    assert_eq!(search(&base, "res.partner", both).await, json!([ada, bob]));
    let named = json!([["email", "=", "ada@example.net"], ["name", "=", "Bob"]]);
    assert_eq!(search(&base, "res.partner", named).await, json!([]));
    let not_ada = json!(["!", ["email", "=", "ada@example.net"], ["name", "=", "Ada"]]);
    assert_eq!(search(&base, "res.partner", not_ada).await, json!([bob]));

    let tea = product(&base, "TEA-1").await;
    let order = ok(call(
        &base,
        "sale.order",
        "create",
        json!([{"partner_id": bob,
                "order_line": [[0, 0, {"product_id": tea, "product_uom_qty": 2}],
                               [0, 0, {"product_id": tea, "product_uom_qty": 3}]]}]),
        json!({}),
    )
    .await)
    .as_i64()
    .unwrap();
    let lines = search(&base, "sale.order.line", json!([["order_id", "=", order]])).await;
    let lines: Vec<i64> = lines
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert_eq!(lines.len(), 2);
    // A number matches as a number, 2 as 2.0.
    let two = json!([["order_id", "=", order], ["product_uom_qty", "=", 2.0]]);
    assert_eq!(
        search(&base, "sale.order.line", two).await,
        json!([lines[0]])
    );
    ok(call(
        &base,
        "sale.order",
        "write",
        json!([[order], {"order_line": [[2, lines[0], 0]]}]),
        json!({}),
    )
    .await);
    assert_eq!(
        search(&base, "sale.order.line", json!([["order_id", "=", order]])).await,
        json!([lines[1]]),
        "a removed line is not found"
    );
    let read = ok(call(
        &base,
        "sale.order",
        "read",
        json!([[order]]),
        json!({"fields": ["order_line", "amount_total"]}),
    )
    .await);
    assert_eq!(read[0]["order_line"], json!([lines[1]]), "{read}");
    ok(call(
        &base,
        "sale.order",
        "write",
        json!([[order], {"order_line": [[5, 0, 0]]}]),
        json!({}),
    )
    .await);
    assert_eq!(
        search(&base, "sale.order.line", json!([["order_id", "=", order]])).await,
        json!([]),
        "(5, 0, 0) removes every line"
    );
}
