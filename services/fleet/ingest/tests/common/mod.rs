//! The events API served for a test: tokens, a webhook source, the
//! idempotency store in the stack's Postgres, and a client.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sluice_avro::AvroCodec;
use sluice_contracts::Catalog;
use sluice_ingest::{
    AppState, EventRouter, IdempotencyStore, Publisher, RefusalBudget, ServerLimits, TokenHashes,
    WebhookSource, WebhookSources, router,
};
use sluice_kafka::{AuditLog, KafkaConfig, ReplyPublisher};
use sluice_resilience::{LimiterConfig, RateLimiter};
use sluice_testkit::{Stack, TestTopic, eventually, unique_name};
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;

pub const TOKEN: &str = "test-token-3f7c";
pub const WEBHOOK_SECRET: &str = "whsec-test-91d2";

/// A client's token that may post only cancellations of orders, and any
/// event of the `requests` aggregate.
pub const SCOPED_TOKEN: &str = "test-token-5c0e";

/// A second client's token.
pub const OTHER_TOKEN: &str = "test-token-88a0";

/// The audit topic of every API served by this test binary.
pub async fn audit_topic() -> &'static str {
    static TOPIC: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    TOPIC
        .get_or_init(|| async {
            TestTopic::with_schema_of("audit.v1", "ingest-audit", 1)
                .await
                .name
        })
        .await
}

/// The stack's Kafka.
pub fn kafka() -> KafkaConfig {
    KafkaConfig::new(&Stack::get().kafka_bootstrap)
}

/// Serves the API, routing `orders` events to `topic`; returns its base URL.
pub async fn serve(topic: &str, kafka: KafkaConfig) -> String {
    serve_routes(&[("orders", topic)], kafka).await
}

/// Serves the API with `routes` (aggregate type, topic); returns its base URL.
pub async fn serve_routes(routes: &[(&str, &str)], kafka: KafkaConfig) -> String {
    serve_with(routes, kafka, shop_webhook()).await
}

/// The webhook source `shop`: Sluice's scheme, the delivery id at `/delivery`.
pub fn shop_webhook() -> WebhookSources {
    WebhookSources::from_sources([(
        "shop".to_owned(),
        WebhookSource::new(
            SecretString::from(WEBHOOK_SECRET.to_owned()),
            "orders",
            "OrderPlaced",
            "/order_id",
            "/order",
            Some("/delivery"),
        ),
    )])
}

/// What a client may take of a test's server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The server's.
    pub server: ServerLimits,
    /// Each token's requests per second (a burst of twice that).
    pub per_token_per_second: f64,
    /// Batches in their own Kafka transaction at once.
    pub transactions: usize,
    /// Refused webhooks recorded per second (a burst of twice that).
    pub refused_per_second: f64,
}

impl Default for Limits {
    /// Roomy: only the tests of the limits meet them.
    fn default() -> Self {
        Self {
            server: ServerLimits {
                header_read_timeout: Duration::from_secs(10),
                body_timeout: Duration::from_secs(30),
                max_body_bytes: 64 * 1024,
                max_connections: 256,
                max_in_flight: 64,
            },
            per_token_per_second: 10_000.0,
            transactions: 2,
            refused_per_second: 10_000.0,
        }
    }
}

/// Serves the API with `routes` and `webhooks`; returns its base URL.
pub async fn serve_with(
    routes: &[(&str, &str)],
    kafka: KafkaConfig,
    webhooks: WebhookSources,
) -> String {
    serve_limited(routes, kafka, webhooks, Limits::default()).await
}

/// Serves the API within `limits`; returns its base URL.
pub async fn serve_limited(
    routes: &[(&str, &str)],
    kafka: KafkaConfig,
    webhooks: WebhookSources,
    limits: Limits,
) -> String {
    let ack_timeout = Duration::from_secs(5);
    let state = Arc::new(AppState {
        tokens: TokenHashes::parse(
            &[
                hex::encode(Sha256::digest(TOKEN)),
                hex::encode(Sha256::digest(OTHER_TOKEN)),
                format!(
                    "{}:orders.OrderCancelled+requests",
                    hex::encode(Sha256::digest(SCOPED_TOKEN))
                ),
            ],
            &Catalog::embedded().unwrap(),
        )
        .unwrap(),
        events: EventRouter::new(
            Catalog::embedded().unwrap(),
            routes
                .iter()
                .map(|(aggregate, topic)| ((*aggregate).to_owned(), (*topic).to_owned()))
                .collect(),
        ),
        codec: AvroCodec::new(Stack::get().registry_settings()),
        publisher: Publisher::new(
            &kafka,
            &unique_name("ingest-test"),
            limits.transactions,
            ack_timeout,
        )
        .unwrap(),
        idempotency: idempotency().await,
        webhooks,
        per_token: RateLimiter::new(
            "test-token",
            LimiterConfig::rate_with_burst(limits.per_token_per_second),
        )
        .unwrap(),
        audit: AuditLog::new(
            ReplyPublisher::immediate(
                &kafka,
                Arc::new(AvroCodec::new(Stack::get().registry_settings())),
                audit_topic().await,
            )
            .unwrap(),
            "ingest",
            "ingest@test".into(),
        ),
        refusals: RefusalBudget::new(LimiterConfig::rate_with_burst(limits.refused_per_second))
            .unwrap(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = router(state, limits.server.max_body_bytes);
    tokio::spawn(sluice_ingest::serve(
        listener,
        app,
        limits.server,
        std::future::pending(),
    ));
    format!("http://{address}")
}

/// The built ingest binary, as a process: on the stack, accepting [`TOKEN`],
/// routing orders to `topic`, its API on `api` and health on another port;
/// `env` added.
pub fn ingest_process(api: u16, topic: &str, env: &[(&str, String)]) -> sluice_testkit::KillOnDrop {
    let child = ingest_command(api, topic)
        .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
        .spawn()
        .expect("starting the ingest binary");
    sluice_testkit::KillOnDrop(child)
}

/// The command [`ingest_process`] runs, for a test that changes more than
/// adding variables.
pub fn ingest_command(api: u16, topic: &str) -> std::process::Command {
    let stack = Stack::get();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ingest"));
    command
        .env_clear()
        .env("SLUICE_KAFKA_BOOTSTRAP", &stack.kafka_bootstrap)
        .env("SLUICE_SCHEMA_REGISTRY_URL", &stack.schema_registry_url)
        .env("SLUICE_DATABASE_URL", &stack.database_url)
        .env(
            "SLUICE_INGEST_TOKEN_SHA256",
            hex::encode(Sha256::digest(TOKEN)),
        )
        .env("SLUICE_INGEST_LISTEN", format!("127.0.0.1:{api}"))
        .env(
            "SLUICE_HTTP_LISTEN",
            format!("127.0.0.1:{}", sluice_testkit::free_port()),
        )
        .env("SLUICE_ROUTES", format!("orders={topic}"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    command
}

pub async fn idempotency() -> IdempotencyStore {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&Stack::get().database_url)
        .await
        .unwrap();
    let store = IdempotencyStore::new(
        pool,
        Duration::from_secs(10),
        Duration::from_secs(24 * 3600),
    );
    store.migrate().await.unwrap();
    store
}

pub fn order_placed() -> Value {
    json!({
        "aggregate_type": "orders",
        "aggregate_id": "order-77",
        "event_type": "OrderPlaced",
        "event_id": "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
        "occurred_at": 1_763_900_000_000_i64,
        "payload": {
            "customer": {"customer_id": "c-9", "name": "Grace", "email": "grace@example.org"},
            "lines": [{"sku": "S-1", "description": "tea", "quantity": 3, "unit_price_minor": 650}],
            "total_minor": 1950,
            "currency": "EUR"
        }
    })
}

pub async fn post(base: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// Sends [`order_placed`] with [`TOKEN`] and `headers` to the events API at
/// `base` until it is answered 202 (the process may still be starting, or
/// waiting for a server to come back), within `within`.
pub async fn accepted(base: &str, headers: &[(&str, &str)], within: Duration) {
    let client = reqwest::Client::new();
    eventually("the event accepted", within, || async {
        let request = client
            .post(format!("{base}/v1/events"))
            .bearer_auth(TOKEN)
            .json(&order_placed());
        let request = headers.iter().fold(request, |request, (name, value)| {
            request.header(*name, *value)
        });
        (request.send().await.ok()?.status().as_u16() == 202).then_some(())
    })
    .await;
}
