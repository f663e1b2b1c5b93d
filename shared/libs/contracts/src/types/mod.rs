//! Rust types of the contracts, serialized by serde against the registered
//! schemas (apache-avro's schema-aware serializer: unions of records are Rust
//! enums). Written to mirror the `.avsc` files and pinned to them by tests
//! that round-trip every type and variant through its schema: the code
//! generator for Avro (rsgen-avro) would bring a second apache-avro version.

mod audit;
mod commands;
mod dead_letter;
mod orders;
mod requests;

pub use audit::{AuditAction, AuditRecord, AuditRow};
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

/// A value Sluice writes: the schema file it is written with. An encoder
/// writes that schema's registered id, never the subject's latest version,
/// so a newer version registered by anyone changes nothing a running or
/// restarted writer produces.
pub trait Contract: serde::Serialize {
    /// Its `.avsc`, relative to `schemas/` (as in the topic map).
    const SCHEMA_FILE: &'static str;
}

macro_rules! contracts {
    ($($type:ty => $file:literal),+ $(,)?) => {
        $(impl Contract for $type {
            const SCHEMA_FILE: &'static str = $file;
        })+
    };
}

contracts! {
    OrderEvent => "orders/OrderEvent.avsc",
    RequestEvent => "requests/RequestEvent.avsc",
    SheetRowUpsert => "sheets/SheetRowUpsert.avsc",
    SheetRowResult => "sheets/SheetRowResult.avsc",
    ErpCommand => "erp/ErpCommand.avsc",
    ErpResult => "erp/ErpResult.avsc",
    DeadLetter => "dlq/DeadLetter.avsc",
    AuditRecord => "audit/AuditRecord.avsc",
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of<T: Contract>() -> &'static str {
        T::SCHEMA_FILE
    }

    #[test]
    fn every_contract_names_a_schema_file_of_the_catalog() {
        let catalog = crate::Catalog::embedded().unwrap();
        for file in [
            file_of::<OrderEvent>(),
            file_of::<RequestEvent>(),
            file_of::<SheetRowUpsert>(),
            file_of::<SheetRowResult>(),
            file_of::<ErpCommand>(),
            file_of::<ErpResult>(),
            file_of::<DeadLetter>(),
            file_of::<AuditRecord>(),
        ] {
            assert!(catalog.topic_with_schema(file).is_some(), "{file}");
        }
    }
}
