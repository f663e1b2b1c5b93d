//! Typed values through the real registry: what Sluice writes it reads back
//! as the same Rust value, and bytes that are not a registered Avro value are
//! refused with a permanent, named error.
// Helpers fail the test by panicking, as assertions do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use schema_registry_converter::async_impl::avro::AvroEncoder;
use schema_registry_converter::async_impl::schema_registry::post_schema;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use sluice_avro::{AvroCodec, CodecError};
use sluice_contracts::Catalog;
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

/// Another team evolves the subject: a BACKWARD-compatible v2 with one more
/// optional envelope field. A codec started after that (a restarted service)
/// still writes its own schema, under that schema's id, and what it writes
/// decodes.
#[tokio::test]
async fn a_newer_registered_version_does_not_change_what_a_codec_writes() {
    let topic = TestTopic::with_schema_of("orders.events.v1", "codec-evolved", 1).await;
    let registry = Stack::get().registry_settings();
    let subject = format!("{}-value", topic.name);
    let catalog = Catalog::embedded().unwrap();
    let contract = catalog.topic("orders.events.v1").unwrap();
    let v1 = contract.value_schema_json();
    let v1_id = post_schema(&registry, subject.clone(), avro(v1))
        .await
        .unwrap()
        .id;
    let mut v2: serde_json::Value = serde_json::from_str(v1).unwrap();
    v2["fields"].as_array_mut().unwrap().push(serde_json::json!(
        { "name": "tenant", "type": ["null", "string"], "default": null }
    ));
    let v2_id = post_schema(&registry, subject, avro(&v2.to_string()))
        .await
        .unwrap()
        .id;
    assert_ne!(v1_id, v2_id, "v2 is a new version");

    let codec = AvroCodec::new(registry);
    let event = OrderEvent {
        event_id: "0b7e4c8e-3c55-4a51-9a55-1f9f1b0b8c01".into(),
        event_type: "OrderStatusChanged".into(),
        occurred_at: 1_763_900_000_000,
        aggregate_id: "order-9".into(),
        correlation_id: None,
        causation_id: None,
        payload: OrderPayload::OrderStatusChanged(OrderStatusChanged {
            from_status: OrderStatus::Confirmed,
            to_status: OrderStatus::Shipped,
            reason: None,
        }),
    };
    let typed = codec.encode(&topic.name, &event).await.unwrap();
    assert_eq!(schema_id(&typed), v1_id, "typed values are written with v1");
    assert_eq!(codec.decode::<OrderEvent>(&typed).await.unwrap(), event);

    let generic = codec
        .encode_value(
            &topic.name,
            contract,
            order_placed("order-10", 1_763_900_000_000),
        )
        .await
        .unwrap();
    assert_eq!(
        schema_id(&generic),
        v1_id,
        "generic values are written with v1"
    );
    let decoded: OrderEvent = codec.decode(&generic).await.unwrap();
    assert_eq!(decoded.aggregate_id, "order-10");
}

fn avro(schema: &str) -> SuppliedSchema {
    SuppliedSchema::new(None, SchemaType::Avro, schema.to_owned())
}

fn schema_id(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]])
}

/// A writer whose schema provisioning has not registered yet (a new binary
/// rolled out before `sluice-provision apply`) is told so, and may retry.
#[tokio::test]
async fn a_writer_schema_not_registered_is_named_and_retryable() {
    let topic = TestTopic::create("codec-unprovisioned", 1).await;
    let codec = AvroCodec::new(Stack::get().registry_settings());
    let event = sluice_testkit::samples::order_placed("order-11", 1_763_900_000_000);
    let catalog = Catalog::embedded().unwrap();
    let contract = catalog.topic("orders.events.v1").unwrap();
    let refused = codec
        .encode_value(&topic.name, contract, event)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, CodecError::NotRegistered { .. }),
        "{refused}"
    );
    assert_eq!(refused.class(), ErrorClass::Retryable);
    assert_eq!(
        refused.to_string(),
        format!(
            "schemas/orders/OrderEvent.avsc is not registered under {}-value: \
             run `sluice-provision apply` with this version's contracts",
            topic.name
        )
    );
}

/// A deployment that rolled out a newer version of a command contract (an
/// optional field added) writes its typed values with that version, the
/// field at its default; a reader built with the old one reads them.
#[tokio::test]
async fn typed_values_are_written_with_the_deployment_s_version_of_their_contract() {
    use sluice_contracts::types::{ScalarValue, SheetCell, SheetRowUpsert};
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "codec-deployed", 1).await;
    let registry = Stack::get().registry_settings();
    let dir = Stack::get().contracts_copy();
    let file = dir.join("sheets/SheetRowUpsert.avsc");
    let mut v2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    v2["fields"].as_array_mut().unwrap().push(serde_json::json!(
        {"name": "note", "type": ["null", "string"], "default": null, "doc": "A remark for people."}
    ));
    std::fs::write(&file, v2.to_string()).unwrap();
    let deployed = Catalog::from_dir(&dir).unwrap();
    let v2_json = deployed
        .topic("sheets.rows.v1")
        .unwrap()
        .value_schema_json()
        .to_owned();
    let subject = format!("{}-value", topic.name);
    let v2_id = post_schema(&registry, subject, avro(&v2_json))
        .await
        .unwrap()
        .id;

    let row = SheetRowUpsert {
        command_id: "5f0c2a9e-4b21-4b8e-bd3a-7d9c1b0e0f57".into(),
        spreadsheet_id: "books".into(),
        sheet: "Invoices".into(),
        row_key: "INV-1".into(),
        cells: vec![SheetCell {
            column: "Invoice".into(),
            value: ScalarValue::String("INV-1".into()),
        }],
        source_event_id: "0b7e4c8e-3c55-4a51-9a55-1f9f1b0b8c01".into(),
        occurred_at: 1_763_900_000_000,
        saga: None,
        correlation_id: None,
        causation_id: None,
    };
    let codec = AvroCodec::new(registry.clone()).with_contracts(std::sync::Arc::new(deployed));
    let bytes = codec.encode(&topic.name, &row).await.unwrap();
    assert_eq!(
        schema_id(&bytes),
        v2_id,
        "written with the deployment's version"
    );
    let value = codec.decode_value(&bytes).await.unwrap();
    let apache_avro::types::Value::Record(fields) = value else {
        panic!("a record: {value:?}")
    };
    let note = fields
        .iter()
        .find(|(name, _)| name == "note")
        .map(|(_, v)| v);
    assert_eq!(
        note,
        Some(&apache_avro::types::Value::Union(
            0,
            Box::new(apache_avro::types::Value::Null)
        ))
    );
    let built_in = AvroCodec::new(registry);
    assert_eq!(
        built_in.decode::<SheetRowUpsert>(&bytes).await.unwrap(),
        row
    );
}

/// A deployment whose contracts are older than the binary (a field this
/// binary writes is not in its version) writes with the binary's own.
#[tokio::test]
async fn typed_values_the_deployment_s_older_contract_cannot_hold_use_the_built_in_one() {
    use sluice_contracts::types::{SheetCell, SheetRowUpsert};
    let topic = TestTopic::with_schema_of("sheets.rows.v1", "codec-older", 1).await;
    let registry = Stack::get().registry_settings();
    let dir = Stack::get().contracts_copy();
    let file = dir.join("sheets/SheetRowUpsert.avsc");
    let mut older: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    older["fields"]
        .as_array_mut()
        .unwrap()
        .retain(|field| field["name"] != "saga");
    std::fs::write(&file, older.to_string()).unwrap();
    let row = SheetRowUpsert {
        command_id: "5f0c2a9e-4b21-4b8e-bd3a-7d9c1b0e0f58".into(),
        spreadsheet_id: "books".into(),
        sheet: "Invoices".into(),
        row_key: "INV-2".into(),
        cells: vec![SheetCell {
            column: "Invoice".into(),
            value: sluice_contracts::types::ScalarValue::String("INV-2".into()),
        }],
        source_event_id: "0b7e4c8e-3c55-4a51-9a55-1f9f1b0b8c02".into(),
        occurred_at: 1_763_900_000_000,
        saga: None,
        correlation_id: None,
        causation_id: None,
    };
    let built_in = AvroCodec::new(registry.clone());
    let own = schema_id(&built_in.encode(&topic.name, &row).await.unwrap());
    let deployed = Catalog::from_dir(&dir).unwrap();
    let codec = AvroCodec::new(registry).with_contracts(std::sync::Arc::new(deployed));
    let bytes = codec.encode(&topic.name, &row).await.unwrap();
    assert_eq!(
        schema_id(&bytes),
        own,
        "written with the binary's own version"
    );
    assert_eq!(
        built_in.decode::<SheetRowUpsert>(&bytes).await.unwrap(),
        row
    );
}
