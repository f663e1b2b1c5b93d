//! Produces one OrderPlaced event to `orders.events.v1` in the Confluent wire
//! format (schema looked up in the registry), reads that very message back,
//! decodes it, and prints it as JSON. The demo runs it until the fleet's
//! services exist.
//!
//! Reads SLUICE_KAFKA_BOOTSTRAP and SLUICE_SCHEMA_REGISTRY_URL.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::SubjectNameStrategy;
use sluice_testkit::samples::order_placed;
use sluice_testkit::unique_name;

const TOPIC: &str = "orders.events.v1";

#[tokio::main]
async fn main() -> Result<()> {
    let bootstrap = std::env::var("SLUICE_KAFKA_BOOTSTRAP").context("SLUICE_KAFKA_BOOTSTRAP")?;
    let registry = SrSettings::new(
        std::env::var("SLUICE_SCHEMA_REGISTRY_URL").context("SLUICE_SCHEMA_REGISTRY_URL")?,
    );

    let order_id = unique_name("order");
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    // The same sample order the wire-format tests send.
    let event = order_placed(&order_id, now_ms);
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
