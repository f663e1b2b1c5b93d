//! Rust types of the contracts, serialized by serde against the registered
//! schemas (apache-avro's schema-aware serializer). Each type has a test that
//! round-trips it through its `.avsc`, so a drift between the two fails.

mod dead_letter;

pub use dead_letter::{DeadLetter, DeadLetterClass, OriginalHeader};
