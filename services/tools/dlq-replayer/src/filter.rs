//! Which dead letters a command is about.

use std::time::Duration;

use sluice_contracts::types::DeadLetterClass;

use crate::scan::Letter;

/// The filters `list`, `replay` and `stats` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Filters {
    /// DLQ topic to read (repeatable); every dlq.*.v1 topic when none.
    #[arg(long = "topic", value_name = "TOPIC")]
    pub topics: Vec<String>,
    /// Only dead letters of this service (erp-sink, transformer, ...).
    #[arg(long)]
    pub service: Option<String>,
    /// Only dead letters read from this topic.
    #[arg(long, value_name = "TOPIC")]
    pub source_topic: Option<String>,
    /// Only this error class (decode, validation, mapping, permanent,
    /// retries_exhausted, uncorrelated).
    #[arg(long, value_name = "CLASS", value_parser = parse_class)]
    pub class: Option<DeadLetterClass>,
    /// Only dead letters whose error message contains this text.
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,
    /// Only dead letters of this message key.
    #[arg(long)]
    pub key: Option<String>,
    /// Only dead letters of this flow: their message's correlation id (its
    /// sluice.correlation_id header, set from the event's correlation_id).
    #[arg(long, value_name = "ID")]
    pub correlation: Option<String>,
    /// Only those that failed at or after this time: RFC 3339
    /// (2026-11-23T10:00:00Z) or a span ago (90s, 30m, 2h, 7d).
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    pub since: Option<When>,
    /// Only those that failed before this time (same forms as --since).
    #[arg(long, value_name = "WHEN", value_parser = parse_when)]
    pub until: Option<When>,
}

/// A moment a filter names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Milliseconds since the epoch.
    At(i64),
    /// This long before now.
    Ago(Duration),
}

impl std::fmt::Display for When {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::At(ms) => f.write_str(&crate::render::time(*ms)),
            Self::Ago(span) => write!(f, "{}", humantime::format_duration(*span)),
        }
    }
}

impl When {
    pub(crate) fn millis(self, now_ms: i64) -> i64 {
        match self {
            Self::At(ms) => ms,
            Self::Ago(span) => now_ms - i64::try_from(span.as_millis()).unwrap_or(i64::MAX),
        }
    }
}

pub(crate) fn parse_when(text: &str) -> Result<When, String> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(When::At(at.timestamp_millis()));
    }
    humantime::parse_duration(text).map(When::Ago).map_err(|_| {
        format!(
            "{text:?} is neither an RFC 3339 time (2026-11-23T10:00:00Z) nor a span (30m, 2h, 7d)"
        )
    })
}

fn parse_class(text: &str) -> Result<DeadLetterClass, String> {
    const CLASSES: [DeadLetterClass; 6] = [
        DeadLetterClass::Decode,
        DeadLetterClass::Validation,
        DeadLetterClass::Mapping,
        DeadLetterClass::Permanent,
        DeadLetterClass::RetriesExhausted,
        DeadLetterClass::Uncorrelated,
    ];
    CLASSES
        .into_iter()
        .find(|class| class.as_str().eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            let names: Vec<String> = CLASSES
                .iter()
                .map(|c| c.as_str().to_ascii_lowercase())
                .collect();
            format!("unknown error class {text:?}; one of {}", names.join(", "))
        })
}

impl Filters {
    /// Whether `letter` passes every filter given; `now_ms` anchors spans.
    pub fn matches(&self, letter: &Letter, now_ms: i64) -> bool {
        let record = &letter.record;
        let failed_at = record.last_failure_at;
        self.service.as_ref().is_none_or(|s| *s == record.service)
            && self
                .source_topic
                .as_ref()
                .is_none_or(|t| *t == record.original_topic)
            && self.class.is_none_or(|c| c == record.error_class)
            && self
                .grep
                .as_ref()
                .is_none_or(|text| record.error_message.contains(text.as_str()))
            && self
                .key
                .as_ref()
                .is_none_or(|key| record.original_key.as_deref() == Some(key.as_bytes()))
            && self.correlation.as_ref().is_none_or(|id| {
                record.original_headers.iter().any(|header| {
                    header.key == sluice_telemetry::CORRELATION_ID_HEADER
                        && header.value.as_deref() == Some(id.as_bytes())
                })
            })
            && self.since.is_none_or(|w| failed_at >= w.millis(now_ms))
            && self.until.is_none_or(|w| failed_at < w.millis(now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_classes_parse_or_say_why_not() {
        assert_eq!(
            parse_when("2026-11-23T10:00:00Z"),
            Ok(When::At(1_795_428_000_000))
        );
        assert_eq!(parse_when("2h"), Ok(When::Ago(Duration::from_secs(7200))));
        assert!(parse_when("yesterday").unwrap_err().contains("RFC 3339"));
        assert_eq!(
            parse_class("retries_exhausted"),
            Ok(DeadLetterClass::RetriesExhausted)
        );
        assert!(parse_class("fatal").unwrap_err().contains("validation"));
        assert_eq!(When::Ago(Duration::from_secs(1)).millis(5_000), 4_000);
    }
}
