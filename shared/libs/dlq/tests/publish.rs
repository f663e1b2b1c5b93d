//! A dead letter on a real topic: the original key, value and headers byte for
//! byte in the DeadLetter record, the facts mirrored in sluice.dlq.* headers.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use sluice_avro::AvroCodec;
use sluice_contracts::types::{DeadLetter, DeadLetterClass, OriginalHeader};
use sluice_dlq::{DeadLetterPublisher, Failure};
use sluice_testkit::{Stack, TestTopic, consume_exactly, producer};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn dead_letter_keeps_the_original_bytes_and_mirrors_facts_in_headers() {
    let input = TestTopic::create("dlq-input", 2).await;
    let dlq = TestTopic::with_schema_of("dlq.transformer.v1", "dlq-out", 1).await;
    let poison: &[u8] = b"{\"this is\": \"not avro\"}";
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "traceparent",
            value: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        })
        .insert(Header {
            key: "no-value",
            value: None::<&[u8]>,
        });
    producer()
        .send(
            FutureRecord::to(&input.name)
                .key("order-9")
                .payload(poison)
                .headers(headers),
            WAIT,
        )
        .await
        .unwrap();
    let original = consume_exactly(&input.name, 1, WAIT).await.remove(0);

    let codec = Arc::new(AvroCodec::new(Stack::get().registry_settings()));
    let publisher = DeadLetterPublisher::new(
        producer(),
        Arc::clone(&codec),
        &dlq.name,
        "transformer",
        "0.1.0",
    );
    let failure = Failure {
        class: DeadLetterClass::Decode,
        message: "not in the Confluent wire format: first byte is 0x7b".into(),
        attempts: 1,
        first_failure_at: 1_763_900_000_000,
        last_failure_at: 1_763_900_000_000,
    };
    publisher.publish(&original, failure).await.unwrap();

    let letter = consume_exactly(&dlq.name, 1, WAIT).await.remove(0);
    assert_eq!(
        letter.key(),
        Some(&b"order-9"[..]),
        "the DLQ keeps the original key"
    );
    let record: DeadLetter = codec.decode(letter.payload().unwrap()).await.unwrap();
    assert_eq!(
        record,
        DeadLetter {
            original_topic: input.name.clone(),
            original_partition: original.partition(),
            original_offset: original.offset(),
            original_timestamp: original.timestamp().to_millis(),
            original_key: Some(b"order-9".to_vec()),
            original_value: Some(poison.to_vec()),
            original_headers: vec![
                OriginalHeader {
                    key: "traceparent".into(),
                    value: Some(
                        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_vec()
                    ),
                },
                OriginalHeader {
                    key: "no-value".into(),
                    value: None
                },
            ],
            error_class: DeadLetterClass::Decode,
            error_message: "not in the Confluent wire format: first byte is 0x7b".into(),
            attempts: 1,
            first_failure_at: 1_763_900_000_000,
            last_failure_at: 1_763_900_000_000,
            service: "transformer".into(),
            service_version: "0.1.0".into(),
        }
    );

    let headers: HashMap<String, Option<String>> = letter
        .headers()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h.key.to_owned(),
                h.value.map(|v| String::from_utf8_lossy(v).into_owned()),
            )
        })
        .collect();
    let header = |name: &str| headers.get(name).cloned().flatten();
    assert_eq!(header("sluice.dlq.error-class").as_deref(), Some("DECODE"));
    assert_eq!(
        header("sluice.dlq.original-topic"),
        Some(input.name.clone())
    );
    assert_eq!(
        header("sluice.dlq.original-offset"),
        Some(original.offset().to_string())
    );
    assert_eq!(header("sluice.dlq.attempts").as_deref(), Some("1"));
    assert_eq!(header("sluice.dlq.service").as_deref(), Some("transformer"));
    assert!(
        header("traceparent").is_some(),
        "the original headers travel too"
    );
}
