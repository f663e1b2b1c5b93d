//! Produces one OrderPlaced event to `orders.events.v1` in the Confluent wire
//! format (schema looked up in the registry), reads that very message back,
//! decodes it, and prints it as JSON. The demo runs it until the fleet's
//! services exist.
//!
//! Reads SLUICE_KAFKA_BOOTSTRAP and SLUICE_SCHEMA_REGISTRY_URL.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use apache_avro::types::Value;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::SubjectNameStrategy;

const TOPIC: &str = "orders.events.v1";

#[tokio::main]
async fn main() -> Result<()> {
    let bootstrap = std::env::var("SLUICE_KAFKA_BOOTSTRAP").context("SLUICE_KAFKA_BOOTSTRAP")?;
    let registry = SrSettings::new(
        std::env::var("SLUICE_SCHEMA_REGISTRY_URL").context("SLUICE_SCHEMA_REGISTRY_URL")?,
    );

    let order_id = format!("order-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let event = order_placed(&order_id)?;
    let bytes = AvroEncoder::new(registry.clone())
        .encode_value(
            event,
            &SubjectNameStrategy::TopicNameStrategy(TOPIC.to_owned(), false),
        )
        .await
        .context("encoding (is the schema provisioned?)")?;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    let delivered = producer
        .send(
            FutureRecord::to(TOPIC).key(&order_id).payload(&bytes),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(err, _)| anyhow!("producing to {TOPIC}: {err}"))?;
    println!(
        "produced {order_id} to {TOPIC} partition {} offset {} ({} bytes, schema id {})",
        delivered.partition,
        delivered.offset,
        bytes.len(),
        u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]])
    );

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "sluice-demo-round-trip")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(
        TOPIC,
        delivered.partition,
        Offset::Offset(delivered.offset),
    )?;
    consumer.assign(&assignment)?;
    let message = consumer
        .poll(Duration::from_secs(30))
        .context("no message read back in 30 s")??;
    let decoded = AvroDecoder::new(registry).decode(message.payload()).await?;
    let json = serde_json::Value::try_from(decoded.value)?;
    println!(
        "read back and decoded:\n{}",
        serde_json::to_string_pretty(&json)?
    );
    Ok(())
}

fn order_placed(order_id: &str) -> Result<Value> {
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let line = Value::Record(vec![
        ("sku".into(), Value::String("SKU-TEA-1".into())),
        (
            "description".into(),
            Value::String("Green tea, 250 g".into()),
        ),
        ("quantity".into(), Value::Int(3)),
        ("unit_price_minor".into(), Value::Long(650)),
    ]);
    let placed = Value::Record(vec![
        (
            "customer".into(),
            Value::Record(vec![
                ("customer_id".into(), Value::String("cust-1".into())),
                ("name".into(), Value::String("Grace Hopper".into())),
                ("email".into(), Value::String("grace@example.org".into())),
            ]),
        ),
        ("lines".into(), Value::Array(vec![line])),
        ("total_minor".into(), Value::Long(1950)),
        ("currency".into(), Value::String("EUR".into())),
        (
            "shipping_country".into(),
            Value::Union(1, Box::new(Value::String("DE".into()))),
        ),
    ]);
    Ok(Value::Record(vec![
        ("event_id".into(), Value::Uuid(uuid::Uuid::new_v4())),
        ("event_type".into(), Value::String("OrderPlaced".into())),
        ("occurred_at".into(), Value::TimestampMillis(now)),
        ("aggregate_id".into(), Value::String(order_id.into())),
        (
            "correlation_id".into(),
            Value::Union(0, Box::new(Value::Null)),
        ),
        (
            "causation_id".into(),
            Value::Union(0, Box::new(Value::Null)),
        ),
        ("payload".into(), Value::Union(0, Box::new(placed))),
    ]))
}
