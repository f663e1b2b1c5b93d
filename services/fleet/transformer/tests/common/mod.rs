//! A transformer on topics of its own: input topics for orders and
//! requests, output and dead-letter topics, the loop running in the
//! background, and helpers to send events and read commands back.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use serde_json::Value as Json;
use sluice_avro::{AvroCodec, EventInput, event_record};
use sluice_contracts::Catalog;
use sluice_dlq::DeadLetterPublisher;
use sluice_kafka::{KafkaConfig, TransactionalLoop, TransactionalSettings, Transformer};
use sluice_mapping::load_rules;
use sluice_resilience::RetryPolicy;
use sluice_testkit::{Stack, TestTopic, process_metrics, producer, unique_name};
use sluice_transformer::{Mapper, OutputTopics};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The topics of one test.
pub struct Topics {
    pub orders: TestTopic,
    pub requests: TestTopic,
    pub sheets: TestTopic,
    pub erp: TestTopic,
    pub dlq: TestTopic,
}

impl Topics {
    pub async fn new(prefix: &str, partitions: i32) -> Self {
        Self {
            orders: TestTopic::with_schema_of(
                "orders.events.v1",
                &format!("{prefix}-orders"),
                partitions,
            )
            .await,
            requests: TestTopic::with_schema_of(
                "requests.events.v1",
                &format!("{prefix}-requests"),
                partitions,
            )
            .await,
            sheets: TestTopic::with_schema_of(
                "sheets.rows.v1",
                &format!("{prefix}-sheets"),
                partitions,
            )
            .await,
            erp: TestTopic::with_schema_of("erp.commands.v1", &format!("{prefix}-erp"), partitions)
                .await,
            dlq: TestTopic::with_schema_of("dlq.transformer.v1", &format!("{prefix}-dlq"), 1).await,
        }
    }

    /// Their names.
    pub fn names(&self) -> Names {
        Names {
            orders: self.orders.name.clone(),
            requests: self.requests.name.clone(),
            sheets: self.sheets.name.clone(),
            erp: self.erp.name.clone(),
            dlq: self.dlq.name.clone(),
        }
    }
}

/// The topic names a transformer is configured with.
#[derive(Debug, Clone)]
pub struct Names {
    pub orders: String,
    pub requests: String,
    pub sheets: String,
    pub erp: String,
    pub dlq: String,
}

impl Names {
    /// `--route` of the inputs.
    pub fn routes(&self) -> HashMap<String, String> {
        HashMap::from([
            ("orders".to_owned(), self.orders.clone()),
            ("requests".to_owned(), self.requests.clone()),
        ])
    }

    /// As environment variables, for a child process.
    pub fn env(&self) -> [(&'static str, &str); 5] {
        [
            ("ORDERS", &self.orders),
            ("REQUESTS", &self.requests),
            ("SHEETS", &self.sheets),
            ("ERP", &self.erp),
            ("DLQ", &self.dlq),
        ]
    }

    /// Read back in the child process.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"));
        Self {
            orders: var("ORDERS"),
            requests: var("REQUESTS"),
            sheets: var("SHEETS"),
            erp: var("ERP"),
            dlq: var("DLQ"),
        }
    }
}

/// The mapper of `rules` over these topics.
pub fn mapper(rules: &str, topics: &Names) -> Mapper {
    let stack = Stack::get();
    Mapper::new(
        load_rules(rules, &Catalog::embedded().unwrap()).unwrap(),
        &topics.routes(),
        AvroCodec::new(stack.registry_settings()),
        OutputTopics {
            sheets: topics.sheets.clone(),
            erp: topics.erp.clone(),
        },
    )
}

/// Rule `id`: each OrderCancelled a row of sheet "Cancelled" of
/// spreadsheet "s", keyed by its order, with `columns` (TOML inline tables).
pub fn cancelled_row_rule(id: &str, columns: &[&str]) -> String {
    format!(
        "[[rules]]\nid = \"{id}\"\naggregate = \"orders\"\nevent_type = \"OrderCancelled\"\n\n\
         [rules.sheet]\nspreadsheet = \"s\"\nsheet = \"Cancelled\"\n\
         key = {{ copy = \"aggregate_id\" }}\ncolumns = [\n  {},\n]\n",
        columns.join(",\n  ")
    )
}

/// Runs the transactional loop with `mapper` on the input topics until the
/// sender fires.
pub fn start<T: Transformer>(
    mapper: T,
    topics: &Names,
    group: &str,
    transactional_id: &str,
) -> (oneshot::Sender<()>, JoinHandle<()>) {
    process_metrics();
    let stack = Stack::get();
    let settings = TransactionalSettings {
        group_id: group.to_owned(),
        topics: vec![topics.orders.clone(), topics.requests.clone()],
        transactional_id: transactional_id.to_owned(),
        max_batch: 200,
        batch_linger: Duration::from_millis(20),
        retry: RetryPolicy {
            max_retries: 0,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
            multiplier: 1.0,
            jitter: 0.0,
            max_elapsed: None,
        },
        abort_backoff: Duration::from_millis(200),
        transaction_timeout: Duration::from_secs(30),
        stall_after: Duration::from_secs(300),
    };
    let dead_letters = DeadLetterPublisher::new(
        producer(),
        Arc::new(AvroCodec::new(stack.registry_settings())),
        &topics.dlq,
        "transformer",
        "0.0.0",
    );
    // A killed instance's partitions move on after 6 s, not the default 45.
    let kafka =
        KafkaConfig::new(&stack.kafka_bootstrap).with_property("session.timeout.ms", "6000");
    let run = TransactionalLoop::new(&kafka, settings, mapper, &dead_letters).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        run.run(async { stopped.await.unwrap_or(()) })
            .await
            .unwrap();
    });
    (stop, running)
}

/// A fresh transactional id.
pub fn transactional_id() -> String {
    unique_name("transformer-tx")
}

/// The contracts and a codec shared by a test process, so encoding many
/// events hits the codec's schema cache.
fn shared() -> &'static (Catalog, AvroCodec) {
    static SHARED: OnceLock<(Catalog, AvroCodec)> = OnceLock::new();
    SHARED.get_or_init(|| {
        (
            Catalog::embedded().unwrap(),
            AvroCodec::new(Stack::get().registry_settings()),
        )
    })
}

/// An event of `aggregate_type` (envelope and payload as JSON), as Avro
/// for `topic`.
pub async fn event_bytes(
    topic: &str,
    aggregate_type: &str,
    id: &str,
    aggregate_id: &str,
    event_type: &str,
    occurred_at_ms: i64,
    payload: &Json,
) -> Vec<u8> {
    let event = (id, aggregate_id, event_type, occurred_at_ms);
    event_bytes_in_flow(topic, aggregate_type, event, None, payload).await
}

/// [`event_bytes`] of an event (id, aggregate id, type, time) whose
/// envelope names the flow it is part of.
pub async fn event_bytes_in_flow(
    topic: &str,
    aggregate_type: &str,
    (id, aggregate_id, event_type, occurred_at_ms): (&str, &str, &str, i64),
    correlation_id: Option<&str>,
    payload: &Json,
) -> Vec<u8> {
    let (catalog, codec) = shared();
    let (contract, value) = event_record(
        catalog,
        &EventInput {
            aggregate_type,
            aggregate_id,
            event_type,
            event_id: id,
            occurred_at_ms,
            correlation_id,
            causation_id: None,
            payload,
        },
    )
    .unwrap();
    codec.encode_value(topic, contract, value).await.unwrap()
}

/// Produces raw bytes to `topic` with `key`.
pub async fn send(topic: &str, key: &str, payload: &[u8]) {
    send_with(topic, key, payload, &[]).await;
}

/// Produces raw bytes to `topic` with `key` and `headers`.
pub async fn send_with(topic: &str, key: &str, payload: &[u8], headers: &[(&str, &str)]) {
    let headers = headers
        .iter()
        .fold(OwnedHeaders::new(), |all, (name, value)| {
            all.insert(Header {
                key: name,
                value: Some(*value),
            })
        });
    producer()
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(headers),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
}

/// The value of header `name`, as text.
pub fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Decodes a message's value as `T`.
pub async fn decode<T: serde::de::DeserializeOwned>(message: &OwnedMessage) -> T {
    shared().1.decode(message.payload().unwrap()).await.unwrap()
}

/// Event ids `<prefix>-0000-4000-8000-<n>`, so a test can tell event n.
pub fn numbered_id(prefix: &str, n: usize) -> String {
    format!("{prefix}-0000-4000-8000-{n:012}")
}

/// Produces OrderCancelled events `range` to the orders topic: event n has
/// id `numbered_id(prefix, n)`, belongs to order `n % aggregates` (its key)
/// and carries n as its reason; `cancelled_by(n)` says who cancelled.
pub async fn produce_cancellations(
    names: &Names,
    range: std::ops::Range<usize>,
    prefix: &str,
    aggregates: usize,
    cancelled_by: impl Fn(usize) -> &'static str,
) {
    let producer = producer();
    let mut encoded = Vec::with_capacity(range.len());
    for n in range {
        let order = format!("order-{}", n % aggregates);
        let payload = serde_json::json!({"reason": n.to_string(), "cancelled_by": cancelled_by(n)});
        let bytes = event_bytes(
            &names.orders,
            "orders",
            &numbered_id(prefix, n),
            &order,
            "OrderCancelled",
            1_795_437_296_789,
            &payload,
        )
        .await;
        encoded.push((order, bytes));
    }
    let sends = encoded.iter().map(|(order, bytes)| {
        producer.send(
            FutureRecord::to(&names.orders).key(order).payload(bytes),
            Duration::from_secs(60),
        )
    });
    for sent in futures::future::join_all(sends).await {
        sent.unwrap();
    }
}
