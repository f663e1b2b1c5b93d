use serde::{Deserialize, Serialize};

/// `dev.sluice.dlq.DeadLetter`: a message a service could not handle, kept
/// byte for byte with why it failed (schemas/dlq/DeadLetter.avsc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Topic the message was read from.
    pub original_topic: String,
    /// Its partition.
    pub original_partition: i32,
    /// Its offset.
    pub original_offset: i64,
    /// Its Kafka timestamp (ms since the epoch), when it had one.
    pub original_timestamp: Option<i64>,
    /// Its key, byte for byte.
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub original_key: Option<Vec<u8>>,
    /// Its value, byte for byte.
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub original_value: Option<Vec<u8>>,
    /// Its headers, in order.
    pub original_headers: Vec<OriginalHeader>,
    /// Why it was dead-lettered.
    pub error_class: DeadLetterClass,
    /// The error, with its context.
    pub error_message: String,
    /// How many times the service tried it.
    pub attempts: i32,
    /// When the first attempt failed (ms since the epoch).
    pub first_failure_at: i64,
    /// When the last attempt failed (ms since the epoch).
    pub last_failure_at: i64,
    /// The service that gave up.
    pub service: String,
    /// Its version.
    pub service_version: String,
}

/// One Kafka header of the original message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginalHeader {
    /// Header name.
    pub key: String,
    /// Header value; `None` for a header without one.
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub value: Option<Vec<u8>>,
}

/// `dev.sluice.dlq.ErrorClass`: why a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeadLetterClass {
    /// A class this reader does not know (written by a newer service).
    Unknown,
    /// Not Avro, or an unknown schema.
    Decode,
    /// Decoded, but breaks a rule.
    Validation,
    /// No valid output could be built from it.
    Mapping,
    /// The target refused it for good.
    Permanent,
    /// Retryable failures outlasted the retry budget.
    RetriesExhausted,
    /// A reply for nothing we know.
    Uncorrelated,
}

impl DeadLetterClass {
    /// Every class a service writes (`Unknown` is only ever read).
    pub const WRITTEN: [Self; 6] = [
        Self::Decode,
        Self::Validation,
        Self::Mapping,
        Self::Permanent,
        Self::RetriesExhausted,
        Self::Uncorrelated,
    ];

    /// The symbol, as in the schema and the `sluice.dlq.error-class` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::Decode => "DECODE",
            Self::Validation => "VALIDATION",
            Self::Mapping => "MAPPING",
            Self::Permanent => "PERMANENT",
            Self::RetriesExhausted => "RETRIES_EXHAUSTED",
            Self::Uncorrelated => "UNCORRELATED",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::round_trip;

    #[test]
    fn round_trips_through_its_schema() {
        round_trip(
            "dlq.sheets-sink.v1",
            &DeadLetter {
                original_topic: "sheets.rows.v1".into(),
                original_partition: 3,
                original_offset: 42,
                original_timestamp: Some(1_763_900_000_000),
                original_key: Some(b"sheet/Orders/o-1".to_vec()),
                original_value: Some(vec![0, 0, 0, 0, 7, 0xff]),
                original_headers: vec![
                    OriginalHeader {
                        key: "traceparent".into(),
                        value: Some(b"00-abc-def-01".to_vec()),
                    },
                    OriginalHeader {
                        key: "empty".into(),
                        value: None,
                    },
                ],
                error_class: DeadLetterClass::RetriesExhausted,
                error_message: "HTTP 503 after 6 attempts".into(),
                attempts: 6,
                first_failure_at: 1_763_900_000_100,
                last_failure_at: 1_763_900_062_100,
                service: "sheets-sink".into(),
                service_version: "0.1.0".into(),
            },
        );
    }
}
