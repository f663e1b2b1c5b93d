//! Rust types of the contracts, serialized by serde against the registered
//! schemas (apache-avro's schema-aware serializer: unions of records are Rust
//! enums). Written to mirror the `.avsc` files and pinned to them by tests
//! that round-trip every type and variant through its schema: the code
//! generator for Avro (rsgen-avro) would bring a second apache-avro version.

mod commands;
mod dead_letter;
mod orders;
mod requests;

pub use commands::{
    ErpCommand, ErpError, ErpField, ErpOperation, ErpOutcome, ErpResult, SagaStep, ScalarValue,
    SheetCell, SheetOutcome, SheetRowResult, SheetRowUpsert,
};
pub use dead_letter::{DeadLetter, DeadLetterClass, OriginalHeader};
pub use orders::{
    Customer, OrderCancelled, OrderConfirmed, OrderEvent, OrderLine, OrderPayload, OrderPlaced,
    OrderRejected, OrderStatus, OrderStatusChanged,
};
pub use requests::{
    CommentAdded, RequestCreated, RequestEvent, RequestPayload, RequestPriority, RequestStatus,
    RequestStatusChanged,
};

/// Writes `value` with the value schema of `topic` and reads it back, with
/// the same schema-aware serde the registry codec uses.
#[cfg(test)]
pub(crate) fn round_trip<T>(topic: &str, value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::writer::datum::GenericDatumWriter;
    let catalog = crate::Catalog::embedded().unwrap();
    let schema = catalog.topic(topic).unwrap().value_schema();
    let bytes = GenericDatumWriter::builder(schema)
        .build()
        .unwrap()
        .write_ser_to_vec(value)
        .unwrap();
    let reader = GenericDatumReader::builder(schema).build().unwrap();
    assert_eq!(&reader.read_deser::<T>(&mut &bytes[..]).unwrap(), value);
}
