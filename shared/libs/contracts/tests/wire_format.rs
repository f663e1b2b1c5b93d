//! The contracts on the wire: an OrderEvent encoded with
//! schema_registry_converter in the Confluent wire format, produced to a real
//! topic, read back and decoded by Sluice, by kcat and by Confluent's own
//! Python client.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use apache_avro::types::Value;
use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use sluice_contracts::Catalog;
use sluice_testkit::samples::order_placed;
use sluice_testkit::{Stack, TestTopic, consume_exactly, producer};

const OCCURRED_AT: i64 = 1_763_900_000_123;

/// Runs `command`, fails the test with its stderr unless it succeeds, and
/// returns its stdout.
fn run(command: &mut Command) -> Vec<u8> {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn field<'a>(record: &'a Value, name: &str) -> &'a Value {
    match record {
        Value::Record(fields) => fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no field {name} in {record:?}")),
        other => panic!("not a record: {other:?}"),
    }
}

/// Registers the OrderEvent schema under `<topic>-value`, produces one event
/// keyed by its order id, and returns the event and the bytes produced.
async fn produce_order_event(topic: &str, order_id: &str) -> (Value, Vec<u8>) {
    let stack = Stack::get();
    let catalog = Catalog::embedded().unwrap();
    let schema = catalog
        .topic("orders.events.v1")
        .unwrap()
        .value_schema_json()
        .to_owned();
    let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(
        topic.to_owned(),
        false,
        SuppliedSchema::new(None, SchemaType::Avro, schema),
    );
    let event = order_placed(order_id, OCCURRED_AT);
    let bytes = AvroEncoder::new(stack.registry_settings())
        .encode_value(event.clone(), &strategy)
        .await
        .unwrap();
    let headers = OwnedHeaders::new().insert(Header {
        key: "sluice.event_type",
        value: Some("OrderPlaced"),
    });
    producer()
        .send(
            FutureRecord::to(topic)
                .key(order_id)
                .payload(&bytes)
                .headers(headers),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    (event, bytes)
}

#[tokio::test]
async fn order_event_round_trips_through_kafka_and_the_registry() {
    let topic = TestTopic::create("wire-orders", 3).await;
    let (sent, bytes) = produce_order_event(&topic.name, "order-1001").await;

    // Confluent wire format: magic byte 0, then a 4-byte big-endian schema id.
    assert_eq!(bytes[0], 0);
    let schema_id = u32::from_be_bytes(bytes[1..5].try_into().unwrap());

    let messages = consume_exactly(&topic.name, 1, Duration::from_secs(30)).await;
    let message = &messages[0];
    assert_eq!(message.key(), Some(&b"order-1001"[..]));
    assert_eq!(message.payload(), Some(&bytes[..]));
    let header = message
        .headers()
        .unwrap()
        .iter()
        .find(|h| h.key == "sluice.event_type")
        .unwrap();
    assert_eq!(header.value, Some(&b"OrderPlaced"[..]));

    let decoded = AvroDecoder::new(Stack::get().registry_settings())
        .decode(message.payload())
        .await
        .unwrap();
    assert_eq!(decoded.name.unwrap().name(), "OrderEvent");
    let received = decoded.value;
    for name in [
        "event_id",
        "event_type",
        "occurred_at",
        "aggregate_id",
        "correlation_id",
        "causation_id",
    ] {
        assert_eq!(field(&received, name), field(&sent, name), "field {name}");
    }
    let Value::Union(0, placed) = field(&received, "payload") else {
        panic!(
            "payload is not OrderPlaced: {:?}",
            field(&received, "payload")
        );
    };
    let Value::Union(_, sent_placed) = field(&sent, "payload") else {
        unreachable!()
    };
    for name in [
        "customer",
        "lines",
        "total_minor",
        "currency",
        "shipping_country",
    ] {
        assert_eq!(
            field(placed, name),
            field(sent_placed, name),
            "payload field {name}"
        );
    }
    let Value::Array(lines) = field(placed, "lines") else {
        panic!("lines is not an array")
    };
    assert_eq!(field(&lines[0], "quantity"), &Value::Int(2));
    assert_eq!(field(&lines[1], "unit_price_minor"), &Value::Long(499));

    // The id in the bytes is the one the registry serves the schema under.
    let by_id = AvroDecoder::new(Stack::get().registry_settings())
        .get_schema(schema_id)
        .await
        .unwrap();
    assert_eq!(
        by_id.parsed.name().unwrap().fullname(None),
        "dev.sluice.orders.OrderEvent"
    );
}

#[tokio::test]
async fn kcat_lists_and_reads_the_topic() {
    let topic = TestTopic::create("wire-kcat", 2).await;
    let (_, bytes) = produce_order_event(&topic.name, "order-2002").await;
    let bootstrap = &Stack::get().kafka_bootstrap;

    let listing = run(Command::new("kcat").args(["-b", bootstrap, "-L", "-t", &topic.name]));
    let listing = String::from_utf8_lossy(&listing);
    assert!(
        listing.contains(&format!("topic \"{}\" with 2 partitions", topic.name)),
        "{listing}"
    );

    let read = |format: &str| {
        run(Command::new("kcat")
            .args(["-b", bootstrap, "-C", "-t", &topic.name])
            .args(["-o", "beginning", "-c", "1", "-e", "-q", "-f", format]))
    };
    assert_eq!(
        read("%k|%S|%h"),
        format!("order-2002|{}|sluice.event_type=OrderPlaced", bytes.len()).into_bytes()
    );
    assert_eq!(read("%s"), bytes, "kcat prints the value byte for byte");
}

#[tokio::test]
async fn confluent_python_client_reads_what_sluice_wrote() {
    let stack = Stack::get();
    let python = stack.local_dir.join("venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run deploy/local/interop.sh (make test does)",
        python.display()
    );
    let topic = TestTopic::create("wire-confluent", 1).await;
    let (sent, bytes) = produce_order_event(&topic.name, "order-3003").await;

    let output = run(Command::new(python)
        .arg(stack.path("deploy/local/interop/confluent_avro_read.py"))
        .args([
            "--bootstrap",
            &stack.kafka_bootstrap,
            "--registry",
            &stack.schema_registry_url,
        ])
        .args(["--topic", &topic.name, "--count", "1"]));
    let line: serde_json::Value = serde_json::from_slice(&output).unwrap();

    assert_eq!(line["key"], "order-3003");
    assert_eq!(
        line["schema_id"],
        u32::from_be_bytes(bytes[1..5].try_into().unwrap())
    );
    let value = &line["value"];
    let Value::Uuid(event_id) = field(&sent, "event_id") else {
        panic!("event_id")
    };
    assert_eq!(value["event_id"], event_id.to_string());
    assert_eq!(value["event_type"], "OrderPlaced");
    assert_eq!(value["occurred_at"], OCCURRED_AT);
    assert_eq!(value["aggregate_id"], "order-3003");
    assert_eq!(value["correlation_id"], "corr-7");
    assert_eq!(value["causation_id"], serde_json::Value::Null);
    let payload = &value["payload"];
    assert_eq!(payload["customer"]["email"], "ada@example.org");
    assert_eq!(payload["lines"][0]["sku"], "SKU-1");
    assert_eq!(payload["lines"][0]["quantity"], 2);
    assert_eq!(payload["lines"][1]["unit_price_minor"], 499);
    assert_eq!(payload["total_minor"], 2999);
    assert_eq!(payload["shipping_country"], "NL");
}
