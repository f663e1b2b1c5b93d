//! The `sluice.dlq.*` headers of a dead letter.

use rdkafka::message::{Header, OwnedHeaders};
use sluice_contracts::types::DeadLetter;

/// Prefix of the headers that mirror the DeadLetter record.
pub const HEADER_PREFIX: &str = "sluice.dlq.";

/// The original headers, then the error context as `sluice.dlq.*`.
pub(crate) fn dead_letter_headers(letter: &DeadLetter) -> OwnedHeaders {
    let facts = [
        ("original-topic", letter.original_topic.clone()),
        ("original-partition", letter.original_partition.to_string()),
        ("original-offset", letter.original_offset.to_string()),
        ("error-class", letter.error_class.as_str().to_owned()),
        ("error-message", letter.error_message.clone()),
        ("attempts", letter.attempts.to_string()),
        ("first-failure-at", letter.first_failure_at.to_string()),
        ("last-failure-at", letter.last_failure_at.to_string()),
        ("service", letter.service.clone()),
        ("service-version", letter.service_version.clone()),
    ];
    let headers = letter
        .original_headers
        .iter()
        .fold(OwnedHeaders::new(), |headers, header| {
            headers.insert(Header {
                key: &header.key,
                value: header.value.as_deref(),
            })
        });
    facts.iter().fold(headers, |headers, (name, value)| {
        headers.insert(Header {
            key: &format!("{HEADER_PREFIX}{name}"),
            value: Some(value.as_bytes()),
        })
    })
}
