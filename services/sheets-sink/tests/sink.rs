//! sheets-sink against real Kafka and the sandbox over HTTP: row upserts by
//! key (one row per key, latest values), redelivery adding no row, a refused
//! command dead-lettered while the rest flow, 500s and 429s retried.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use reqwest::Client;
use sandbox::{OdooAccount, Sandbox, ServiceAccountKey, TokenIssuer};
use serde_json::{Value, json};
use sheets_sink::google::{self, SheetsClient, TokenSource};
use sheets_sink::{SheetsSink, Upserter};
use sluice_avro::AvroCodec;
use sluice_contracts::types::{DeadLetter, ScalarValue, SheetCell, SheetRowUpsert};
use sluice_dlq::DeadLetterPublisher;
use sluice_kafka::{ConsumerLoop, ConsumerSettings, KafkaConfig};
use sluice_resilience::{BreakerConfig, CircuitBreaker, LimiterConfig, RateLimiter, RetryPolicy};
use sluice_testkit::{Stack, TestTopic, consume_exactly, eventually, producer, unique_name};

const WAIT: Duration = Duration::from_secs(60);

/// One key per test process (RSA key generation takes a moment).
fn key(token_uri: &str) -> ServiceAccountKey {
    static KEY: OnceLock<ServiceAccountKey> = OnceLock::new();
    let mut key = KEY
        .get_or_init(|| ServiceAccountKey::generate("sink@sandbox.test", "unset").unwrap())
        .clone();
    key.token_uri = token_uri.to_owned();
    key
}

/// A sandbox with spreadsheet `s1` (sheet Orders); its base URL and the key
/// its token endpoint accepts.
async fn sandbox() -> (String, ServiceAccountKey) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let key = key(&format!("{base}/token"));
    let issuer = TokenIssuer::new(
        &key.public_key_pem().unwrap(),
        &key.client_email,
        &key.token_uri,
    )
    .unwrap();
    let app = Sandbox::new(
        issuer,
        OdooAccount {
            database: "unused".into(),
            login: "unused".into(),
            password: "unused".into(),
        },
    );
    app.create_spreadsheet("s1", &["Orders".to_owned()]);
    tokio::spawn(sandbox::serve(listener, app));
    (base, key)
}

/// Runs the sink on `topic` until the returned sender fires.
fn start(
    base: &str,
    key: &ServiceAccountKey,
    topic: &str,
    dlq: &str,
) -> tokio::sync::oneshot::Sender<()> {
    let stack = Stack::get();
    let key: google::ServiceAccountKey =
        serde_json::from_value(serde_json::to_value(key).unwrap()).unwrap();
    let http = Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let limiter = Arc::new(
        RateLimiter::new(
            "sheets-test",
            LimiterConfig {
                capacity: NonZeroU32::new(50).unwrap(),
                refill_per_second: 500.0,
            },
        )
        .unwrap(),
    );
    let sink = SheetsSink {
        codec: AvroCodec::new(stack.registry_settings()),
        upserter: Upserter::new(SheetsClient::new(
            base,
            http.clone(),
            TokenSource::new(key, http).unwrap(),
            limiter,
        )),
        breaker: CircuitBreaker::new(
            "sheets-test",
            BreakerConfig {
                failure_threshold: 50,
                failure_rate: None,
                slow_call: None,
                open_wait: Duration::from_secs(1),
                half_open_permits: 1,
                success_threshold: 1,
            },
        )
        .unwrap(),
    };
    let settings = ConsumerSettings {
        group_id: unique_name("sheets-sink"),
        topics: vec![topic.to_owned()],
        partition_buffer: 16,
        max_concurrent: 2,
        retry: RetryPolicy {
            max_retries: 8,
            initial_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            multiplier: 2.0,
            jitter: 0.2,
            max_elapsed: None,
        },
        pause_backoff: Duration::from_millis(200),
        shutdown_grace: Duration::from_secs(5),
    };
    let dead_letters = DeadLetterPublisher::new(
        producer(),
        Arc::new(AvroCodec::new(stack.registry_settings())),
        dlq,
        "sheets-sink",
        "0.0.0",
    );
    let run = ConsumerLoop::new(
        &KafkaConfig::new(&stack.kafka_bootstrap),
        settings,
        sink,
        dead_letters,
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        run.run(async { stopped.await.unwrap_or(()) })
            .await
            .unwrap()
    });
    stop
}

fn command(id: &str, key: &str, total: &str, status: Option<&str>) -> SheetRowUpsert {
    let mut cells = vec![
        SheetCell {
            column: "Order".into(),
            value: ScalarValue::String(key.into()),
        },
        SheetCell {
            column: "Total".into(),
            value: ScalarValue::String(total.into()),
        },
    ];
    if let Some(status) = status {
        cells.push(SheetCell {
            column: "Status".into(),
            value: ScalarValue::String(status.into()),
        });
    }
    SheetRowUpsert {
        command_id: id.into(),
        spreadsheet_id: "s1".into(),
        sheet: "Orders".into(),
        row_key: key.into(),
        cells,
        source_event_id: id.into(),
        occurred_at: 1_795_437_296_789,
        saga: None,
    }
}

async fn send(topic: &str, commands: &[SheetRowUpsert]) {
    let codec = AvroCodec::new(Stack::get().registry_settings());
    for command in commands {
        let bytes = codec.encode(topic, command).await.unwrap();
        let key = format!("s1/Orders/{}", command.row_key);
        producer()
            .send(
                FutureRecord::to(topic).key(&key).payload(&bytes),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
    }
}

async fn grid(base: &str) -> Vec<Vec<Value>> {
    let body: Value = Client::new()
        .get(format!("{base}/admin/spreadsheets/s1/Orders"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    serde_json::from_value(body["values"].clone()).unwrap()
}

async fn faults(base: &str, faults: Value) {
    Client::new()
        .put(format!("{base}/admin/faults/sheets"))
        .json(&faults)
        .send()
        .await
        .unwrap();
}

fn id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_upsert_by_key_and_a_refused_command_is_dead_lettered() {
    let (base, key) = sandbox().await;
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "sheets-sink", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.sheets-sink.v1", "sheets-sink-dlq", 1).await;
    faults(&base, json!({"reject_value": "poison"})).await;
    let stop = start(&base, &key, &topic.name, &dlq.name);
    let first = command(&id(1), "o-1", "19.50", None);
    send(
        &topic.name,
        &[
            first.clone(),
            command(&id(2), "o-2", "5.00", None),
            command(&id(3), "o-1", "21.00", Some("SHIPPED")),
            command(&id(4), "o-3", "poison", None),
            command(&id(5), "o-4", "1.00", None),
            // Redelivered: the same command again adds no row.
            command(&id(2), "o-2", "5.00", None),
        ],
    )
    .await;
    let letters = consume_exactly(&dlq.name, 1, WAIT).await;
    let expected = vec![
        vec![json!("Order"), json!("Total"), json!("Status")],
        vec![json!("o-1"), json!("21.00"), json!("SHIPPED")],
        vec![json!("o-2"), json!("5.00")],
        vec![json!("o-4"), json!("1.00")],
    ];
    eventually("the rows", WAIT, || {
        let base = &base;
        let expected = &expected;
        async move { (grid(base).await == *expected).then_some(()) }
    })
    .await;
    let letter: DeadLetter = AvroCodec::new(Stack::get().registry_settings())
        .decode(rdkafka::Message::payload(&letters[0]).unwrap())
        .await
        .unwrap();
    assert!(
        letter.error_message.contains("HTTP 400") && letter.error_message.contains("poison"),
        "{}",
        letter.error_message
    );
    stop.send(()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_429s_are_retried_without_a_duplicate_row() {
    let (base, key) = sandbox().await;
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "sheets-sink-faults", 1).await;
    let dlq = TestTopic::with_schema_of("dlq.sheets-sink.v1", "sheets-sink-faults-dlq", 1).await;
    faults(
        &base,
        json!({"error_rates": {"500": 0.3}, "burst_429": 3, "retry_after_secs": 1}),
    )
    .await;
    let stop = start(&base, &key, &topic.name, &dlq.name);
    // 60 commands over 10 keys; the last for each key carries its round.
    let commands: Vec<SheetRowUpsert> = (0..60u32)
        .map(|n| {
            command(
                &id(100 + n),
                &format!("k-{}", n % 10),
                &format!("round {}", n / 10),
                None,
            )
        })
        .collect();
    send(&topic.name, &commands).await;
    let rows = eventually("every key's last value", WAIT, || {
        let base = &base;
        async move {
            let rows = grid(base).await;
            let done = rows.len() == 11
                && rows
                    .iter()
                    .skip(1)
                    .all(|row| row.get(1) == Some(&json!("round 5")));
            done.then_some(rows)
        }
    })
    .await;
    let keys: std::collections::BTreeSet<String> =
        rows.iter().skip(1).map(|row| row[0].to_string()).collect();
    assert_eq!(keys.len(), 10, "one row per key");
    let log: Value = Client::new()
        .get(format!("{base}/admin/requests?api=sheets"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses: Vec<i64> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert!(
        statuses.contains(&500) && statuses.contains(&429),
        "the faults happened: {statuses:?}"
    );
    stop.send(()).unwrap();
    let letters = sluice_testkit::message_count(&dlq.name);
    assert_eq!(letters, 0, "nothing dead-lettered");
}
