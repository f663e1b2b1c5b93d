//! Typed values through the real registry: what Sluice writes it reads back
//! as the same Rust value, and bytes that are not a registered Avro value are
//! refused with a permanent, named error.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use schema_registry_converter::async_impl::avro::AvroEncoder;
use schema_registry_converter::schema_registry_common::SubjectNameStrategy;
use sluice_avro::{AvroCodec, CodecError};
use sluice_contracts::types::{OrderEvent, OrderPayload, OrderStatus, OrderStatusChanged};
use sluice_resilience::{Classified, ErrorClass};
use sluice_testkit::samples::order_placed;
use sluice_testkit::{Stack, TestTopic};

#[tokio::test]
async fn typed_event_round_trips_and_generic_values_decode_typed() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "codec-orders", 1).await;
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let event = OrderEvent {
        event_id: "7d9c1b0e-0f57-4b8e-bd3a-6f0c2a9e4b21".into(),
        event_type: "OrderStatusChanged".into(),
        occurred_at: 1_763_900_000_000,
        aggregate_id: "order-7".into(),
        correlation_id: None,
        causation_id: Some("evt-6".into()),
        payload: OrderPayload::OrderStatusChanged(OrderStatusChanged {
            from_status: OrderStatus::Confirmed,
            to_status: OrderStatus::Shipped,
            reason: Some("carrier picked up".into()),
        }),
    };
    let bytes = codec.encode(&topic.name, &event).await.unwrap();
    assert_eq!(bytes[0], 0, "wire format");
    assert_eq!(codec.decode::<OrderEvent>(&bytes).await.unwrap(), event);

    // Bytes written from a generic Avro value decode into the same types.
    let strategy = SubjectNameStrategy::TopicNameStrategy(topic.name.clone(), false);
    let generic = AvroEncoder::new(Stack::get().registry_settings())
        .encode_value(order_placed("order-8", 1_763_900_000_000), &strategy)
        .await
        .unwrap();
    let decoded: OrderEvent = codec.decode(&generic).await.unwrap();
    let OrderPayload::OrderPlaced(placed) = decoded.payload else {
        panic!("{decoded:?}")
    };
    assert_eq!(
        (decoded.aggregate_id.as_str(), placed.total_minor),
        ("order-8", 2999)
    );
}

#[tokio::test]
async fn bytes_that_are_not_a_registered_value_are_permanent_errors() {
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let not_wire = codec
        .decode::<OrderEvent>(br#"{"json": 1}"#)
        .await
        .unwrap_err();
    assert!(
        matches!(not_wire, CodecError::NotWireFormat(_)),
        "{not_wire}"
    );
    assert_eq!(not_wire.class(), ErrorClass::Permanent);

    let unknown_id = codec
        .decode::<OrderEvent>(&[0, 0x7f, 0xff, 0xff, 0xf0, 2, 4])
        .await
        .unwrap_err();
    assert_eq!(unknown_id.class(), ErrorClass::Permanent, "{unknown_id}");
}
