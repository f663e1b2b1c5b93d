//! The sandbox over HTTP, as the sinks will use it: a service-account JWT
//! exchanged for a token, Sheets values read and written, Odoo records made
//! and found over JSON-RPC, faults injected through /admin and seen in the
//! answers and the request log.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sluice_sandbox::{Local, OdooAccount, Sandbox, ServiceAccountKey, TokenIssuer};

const SCOPE: &str = "https://www.googleapis.com/auth/spreadsheets";

/// One key per test process: RSA key generation takes a while.
fn key() -> &'static ServiceAccountKey {
    static KEY: OnceLock<ServiceAccountKey> = OnceLock::new();
    KEY.get_or_init(|| {
        ServiceAccountKey::generate("sink@sandbox.test", "http://sandbox/token").unwrap()
    })
}

/// A sandbox on a free loopback port with spreadsheet `s1` (sheets Orders,
/// Requests); its base URL.
async fn serve() -> String {
    let key = key();
    let issuer = TokenIssuer::new(
        &key.public_key_pem().unwrap(),
        &key.client_email,
        &key.token_uri,
    )
    .unwrap();
    let app = Sandbox::new(
        issuer,
        OdooAccount {
            database: "sluice".into(),
            login: "sluice".into(),
            password: "secret".into(),
        },
    );
    app.create_spreadsheet("s1", &["Orders".to_owned(), "Requests".to_owned()]);
    Local::start(app).await.unwrap().base
}

/// A JWT bearer assertion as Google's client libraries make it.
fn assertion(key: &ServiceAccountKey, audience: &str) -> String {
    assertion_as(key, audience, None)
}

/// An assertion for the account acting as user `sub` (domain-wide
/// delegation), or as itself.
fn assertion_as(key: &ServiceAccountKey, audience: &str, sub: Option<&str>) -> String {
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let mut claims = json!({"iss": key.client_email, "scope": SCOPE, "aud": audience, "iat": now, "exp": now + 3600});
    if let Some(sub) = sub {
        claims["sub"] = json!(sub);
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.private_key_id.clone());
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(key.private_key.as_bytes()).unwrap(),
    )
    .unwrap()
}

async fn token_response(base: &str, assertion: &str) -> (StatusCode, Value) {
    let response = Client::new()
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion),
        ])
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn token(base: &str) -> String {
    let (status, body) = token_response(base, &assertion(key(), &key().token_uri)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn faults(base: &str, api: &str, faults: Value) {
    let response = Client::new()
        .put(format!("{base}/admin/faults/{api}"))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

/// The JSON that a GET of `url` answers.
async fn get_json(url: String) -> Value {
    Client::new()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn batch_update(base: &str, token: &str, data: Value) -> reqwest::Response {
    Client::new()
        .post(format!("{base}/v4/spreadsheets/s1/values:batchUpdate"))
        .bearer_auth(token)
        .json(&json!({"valueInputOption": "RAW", "data": data}))
        .send()
        .await
        .unwrap()
}

async fn rpc(base: &str, service: &str, method: &str, args: Value) -> Value {
    let response = Client::new()
        .post(format!("{base}/jsonrpc"))
        .json(&json!({"jsonrpc": "2.0", "method": "call", "id": 7, "params": {"service": service, "method": method, "args": args}}))
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

async fn execute(base: &str, password: &str, method: &str, args: Value, kwargs: Value) -> Value {
    rpc(
        base,
        "object",
        "execute_kw",
        json!(["sluice", 2, password, "sale.order", method, args, kwargs]),
    )
    .await
}

#[tokio::test]
async fn tokens_only_for_the_accounts_signed_assertions() {
    let base = serve().await;
    let (status, body) = token_response(&base, &assertion(key(), &key().token_uri)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["token_type"].as_str(), body["expires_in"].as_i64()),
        (Some("Bearer"), Some(3600))
    );

    let stranger = ServiceAccountKey::generate(&key().client_email, &key().token_uri).unwrap();
    let (status, body) = token_response(&base, &assertion(&stranger, &key().token_uri)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "another key's signature"
    );
    let (status, _) = token_response(&base, &assertion(key(), "https://elsewhere/token")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "another audience");

    let unauthenticated = Client::new()
        .get(format!("{base}/v4/spreadsheets/s1/values/Orders!A:A"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let body: Value = unauthenticated.json().await.unwrap();
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
}

#[tokio::test]
async fn sheets_values_are_written_and_read_back() {
    let base = serve().await;
    let token = token(&base).await;
    let client = Client::new();
    let appended = client
        .post(format!(
            "{base}/v4/spreadsheets/s1/values/Orders!A1:append?valueInputOption=RAW"
        ))
        .bearer_auth(&token)
        .json(&json!({"values": [["Order", "Total"], ["o-1", "19.50"], ["o-2", 5]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(appended.status(), StatusCode::OK);
    let body: Value = appended.json().await.unwrap();
    assert_eq!(body["updates"]["updatedRange"], "Orders!A1:B3");

    // o-1's row updated in place; a fourth row written by range.
    let updated = batch_update(
        &base,
        &token,
        json!([
            {"range": "Orders!A2:B2", "values": [["o-1", "21.00"]]},
            {"range": "Orders!A4:B4", "values": [["o-3", true]]}
        ]),
    )
    .await;
    assert_eq!(updated.status(), StatusCode::OK);
    let body: Value = updated.json().await.unwrap();
    assert_eq!(body["totalUpdatedCells"], 4);

    let keys: Value = client
        .get(format!("{base}/v4/spreadsheets/s1/values/Orders!A:A"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        keys["values"],
        json!([["Order"], ["o-1"], ["o-2"], ["o-3"]])
    );
    let grid: Value = get_json(format!("{base}/admin/spreadsheets/s1/Orders")).await;
    assert_eq!(
        grid["values"],
        json!([
            ["Order", "Total"],
            ["o-1", "21.00"],
            ["o-2", 5],
            ["o-3", true]
        ])
    );
    // A poller reads only the rows from its last count on.
    let tail: Value = get_json(format!("{base}/admin/spreadsheets/s1/Orders?from=3")).await;
    assert_eq!(tail["values"], json!([["o-3", true]]));
    let past: Value = get_json(format!("{base}/admin/spreadsheets/s1/Orders?from=9")).await;
    assert_eq!(past["values"], json!([]));

    // Google's 4xx: missing valueInputOption, an unknown sheet (nothing
    // written), an unknown spreadsheet.
    let response = client
        .post(format!("{base}/v4/spreadsheets/s1/values:batchUpdate"))
        .bearer_auth(&token)
        .json(&json!({"data": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = batch_update(
        &base,
        &token,
        json!([
            {"range": "Orders!A5", "values": [["o-4"]]},
            {"range": "Nope!A1", "values": [["x"]]}
        ]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Unable to parse range: Nope");
    let grid: Value = get_json(format!("{base}/admin/spreadsheets/s1/Orders")).await;
    assert_eq!(
        grid["values"].as_array().unwrap().len(),
        4,
        "a failed batch writes nothing"
    );
    let response = client
        .get(format!("{base}/v4/spreadsheets/nope/values/Orders!A:A"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn odoo_records_are_created_found_and_written() {
    let base = serve().await;
    let login = rpc(
        &base,
        "common",
        "authenticate",
        json!(["sluice", "sluice", "secret", {}]),
    )
    .await;
    assert_eq!(login["result"], 2);
    let refused = rpc(
        &base,
        "common",
        "authenticate",
        json!(["sluice", "sluice", "wrong", {}]),
    )
    .await;
    assert_eq!(refused["result"], false);

    let partner = rpc(
        &base,
        "object",
        "execute_kw",
        json!(["sluice", 2, "secret", "res.partner", "create", [{"name": "Ada"}], {}]),
    )
    .await;
    let partner = partner["result"].as_i64().unwrap();
    let created = execute(
        &base,
        "secret",
        "create",
        json!([{"client_order_ref": "o-1", "partner_id": partner}]),
        json!({}),
    )
    .await;
    let id = created["result"].as_i64().unwrap();
    let found = execute(
        &base,
        "secret",
        "search",
        json!([[["client_order_ref", "=", "o-1"]]]),
        json!({"limit": 1}),
    )
    .await;
    assert_eq!(found["result"], json!([id]));
    let missing = execute(
        &base,
        "secret",
        "search",
        json!([[["client_order_ref", "=", "o-9"]]]),
        json!({}),
    )
    .await;
    assert_eq!(missing["result"], json!([]));
    let written = execute(
        &base,
        "secret",
        "write",
        json!([[id], {"origin": "shop", "state": "cancel"}]),
        json!({}),
    )
    .await;
    assert_eq!(written["result"], true);
    let read = execute(
        &base,
        "secret",
        "read",
        json!([[id]]),
        json!({"fields": ["origin", "state"]}),
    )
    .await;
    assert_eq!(
        read["result"],
        json!([{"id": id, "origin": "shop", "state": "cancel"}])
    );
    let records: Value = get_json(format!("{base}/admin/erp/sale.order")).await;
    assert_eq!(records.as_array().unwrap().len(), 1);
    // A poller reads only the records created since the last it saw.
    let after = |after: i64| get_json(format!("{base}/admin/erp/sale.order?after={after}"));
    assert_eq!(after(id - 1).await, records);
    assert_eq!(after(id).await, json!([]));

    // Odoo's error shape, with HTTP 200.
    let denied = execute(&base, "wrong", "search", json!([[]]), json!({})).await;
    assert_eq!(
        denied["error"]["data"]["name"],
        "odoo.exceptions.AccessDenied"
    );
    assert_eq!(denied["id"], 7);
    let gone = execute(
        &base,
        "secret",
        "write",
        json!([[999], {"state": "x"}]),
        json!({}),
    )
    .await;
    assert_eq!(
        gone["error"]["data"]["name"],
        "odoo.exceptions.MissingError"
    );
}

#[tokio::test]
async fn faults_come_as_configured_and_are_logged() {
    let base = serve().await;
    let token = token(&base).await;
    let row = || json!([{"range": "Requests!A1", "values": [["r-1"]]}]);

    // An outage: 503 with Retry-After until it ends.
    faults(&base, "sheets", json!({"outage_secs": 2})).await;
    let response = batch_update(&base, &token, row()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "2");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(
        batch_update(&base, &token, row()).await.status(),
        StatusCode::OK
    );

    // A burst of 429s with Retry-After, then service.
    faults(
        &base,
        "sheets",
        json!({"burst_429": 2, "retry_after_secs": 7}),
    )
    .await;
    for _ in 0..2 {
        let response = batch_update(&base, &token, row()).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "7");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    }
    assert_eq!(
        batch_update(&base, &token, row()).await.status(),
        StatusCode::OK
    );

    // A per-minute write quota; reads do not count.
    faults(&base, "sheets", json!({"quota_per_minute": 3})).await;
    for _ in 0..3 {
        assert_eq!(
            batch_update(&base, &token, row()).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        batch_update(&base, &token, row()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // Every request a 500; latency added.
    faults(
        &base,
        "sheets",
        json!({"error_rates": {"500": 1.0}, "latency_ms": 300}),
    )
    .await;
    let started = Instant::now();
    assert_eq!(
        batch_update(&base, &token, row()).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A value the API refuses for good.
    faults(&base, "sheets", json!({"reject_value": "poison"})).await;
    let response = batch_update(
        &base,
        &token,
        json!([{"range": "Requests!A1", "values": [["poison"]]}]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    faults(&base, "odoo", json!({"reject_value": "poison"})).await;
    let invalid = execute(
        &base,
        "secret",
        "create",
        json!([{"client_order_ref": "poison"}]),
        json!({}),
    )
    .await;
    assert_eq!(
        invalid["error"]["data"]["name"],
        "odoo.exceptions.ValidationError"
    );
    // A value the servers fail on every time, as a transient error.
    faults(&base, "sheets", json!({"fail_value": "poison"})).await;
    let failing = batch_update(
        &base,
        &token,
        json!([{"range": "Requests!A1", "values": [["poison"]]}]),
    )
    .await;
    assert_eq!(failing.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = failing.json().await.unwrap();
    assert_eq!(body["error"]["status"], "INTERNAL", "{body}");
    assert_eq!(
        batch_update(&base, &token, row()).await.status(),
        StatusCode::OK,
        "every other write is served"
    );
    faults(&base, "odoo", json!({"fail_value": "poison"})).await;
    let conflict = execute(
        &base,
        "secret",
        "create",
        json!([{"client_order_ref": "poison"}]),
        json!({}),
    )
    .await;
    assert_eq!(
        conflict["error"]["data"]["name"],
        "psycopg2.errors.SerializationFailure"
    );
    faults(&base, "odoo", json!({"error_rates": {"503": 1.0}})).await;
    let response = Client::new()
        .post(format!("{base}/jsonrpc"))
        .json(&json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {"service": "common", "method": "login", "args": ["sluice", "sluice", "secret"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

    // The log: every Sheets call above, with its status.
    let log: Value = get_json(format!("{base}/admin/requests?api=sheets")).await;
    let statuses: Vec<i64> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            503, 200, 429, 429, 200, 200, 200, 200, 429, 500, 400, 500, 200
        ]
    );
}

/// `sandbox serve` on a free port with a key `sandbox keygen` wrote, and
/// `args` after; its base URL, the key, and the process (killed on drop).
struct Binary {
    base: String,
    key: ServiceAccountKey,
    server: std::process::Child,
    dir: std::path::PathBuf,
}

impl Binary {
    async fn serve(name: &str, args: &[&str]) -> Binary {
        let dir = std::env::temp_dir().join(format!("sandbox-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = sluice_testkit::free_port();
        let base = format!("http://127.0.0.1:{port}");
        let key_file = dir.join("key.json");
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_sandbox"))
            .args(["keygen", "--token-uri", &format!("{base}/token"), "--out"])
            .arg(&key_file)
            .status()
            .unwrap();
        assert!(status.success());
        let server = std::process::Command::new(env!("CARGO_BIN_EXE_sandbox"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .arg("--service-account")
            .arg(&key_file)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let key = ServiceAccountKey::read(&key_file).unwrap();
        let binary = Binary {
            base,
            key,
            server,
            dir,
        };
        sluice_testkit::eventually("the sandbox listening", Duration::from_secs(30), || {
            let url = format!("{}/token", binary.base);
            async move { Client::new().get(url).send().await.ok().map(drop) }
        })
        .await;
        binary
    }

    /// The token endpoint's answer for the account acting as `sub`.
    async fn token(&self, sub: Option<&str>) -> (StatusCode, Value) {
        token_response(
            &self.base,
            &assertion_as(&self.key, &self.key.token_uri, sub),
        )
        .await
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn the_binary_makes_a_key_and_serves_with_it() {
    let binary = Binary::serve("bin", &["--spreadsheet", "demo=Orders,Requests"]).await;
    let (status, body) = binary.token(None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a token for the key it wrote: {body}"
    );
}

#[tokio::test]
async fn the_binary_shares_and_delegates_as_told() {
    let binary = Binary::serve(
        "shared",
        &[
            "--spreadsheet",
            "demo=Orders",
            "--share",
            "demo=alice@example.com",
            "--share",
            "demo=carol@example.com",
            "--delegation-domain",
            "example.com",
        ],
    )
    .await;
    let read = |token: String| {
        let url = format!("{}/v4/spreadsheets/demo/values/Orders", binary.base);
        async move {
            Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    let (status, body) = binary.token(None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let as_account = read(body["access_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(
        as_account.status(),
        StatusCode::FORBIDDEN,
        "not shared with the account"
    );
    let error: Value = as_account.json().await.unwrap();
    assert_eq!(error["error"]["status"], "PERMISSION_DENIED", "{error}");

    let (status, body) = binary.token(Some("Alice@example.com")).await;
    assert_eq!(status, StatusCode::OK, "a user of the domain: {body}");
    let as_alice = read(body["access_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(as_alice.status(), StatusCode::OK, "shared with alice");
    let (_, body) = binary.token(Some("carol@example.com")).await;
    let as_carol = read(body["access_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(as_carol.status(), StatusCode::OK, "shared with carol too");

    let (status, body) = binary.token(Some("bob@other.org")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");

    // Without the flag, no delegation at all.
    let plain = Binary::serve("plain", &["--spreadsheet", "demo=Orders"]).await;
    let (status, body) = plain.token(Some("alice@example.com")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "unauthorized_client", "{body}");
}

#[tokio::test]
async fn the_binary_refuses_a_malformed_share() {
    let dir = std::env::temp_dir().join(format!("sandbox-share-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("key.json");
    key().write(&key_file).unwrap();
    let specs = [
        "demo",
        "=alice@example.com",
        "demo=",
        "demo=alice@example.com,",
        "other=alice@example.com",
    ];
    for spec in specs {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sandbox"))
            .args(["serve", "--listen", "127.0.0.1:0", "--service-account"])
            .arg(&key_file)
            .args(["--spreadsheet", "demo=Orders", "--share", spec])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{spec} accepted");
        assert!(stderr.contains("--share"), "{spec}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_sheet_is_a_page_with_its_rows_escaped() {
    let base = serve().await;
    let token = token(&base).await;
    let written = batch_update(
        &base,
        &token,
        json!([{"range": "Orders!A1:C3", "values": [
            ["Order", "Customer", "Total"],
            ["o-1", "Ada <script>alert(1)</script>", 12.5],
            ["o-2", "Grace & co", null]
        ]}]),
    )
    .await;
    assert_eq!(written.status(), StatusCode::OK);
    let page = Client::new()
        .get(format!("{base}/sheets/s1/Orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("<th>Customer</th>"), "{html}");
    assert!(
        html.contains("<td>o-1</td>") && html.contains("<td>12.5</td>"),
        "{html}"
    );
    assert!(
        html.contains("Ada &lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(
        html.contains("<td>Grace &amp; co</td>") && html.contains("2 rows"),
        "{html}"
    );
    let missing = Client::new()
        .get(format!("{base}/sheets/s1/Nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}
