//! An outbox row (or an `outbox` logical message) and the event it becomes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sluice_avro::EventInput;

/// One event to relay, as the outbox holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxRow {
    /// The event id.
    pub id: String,
    /// `orders`, `requests`: picks the topic.
    pub aggregate_type: String,
    /// The Kafka key.
    pub aggregate_id: String,
    /// A record of the topic's payload union.
    pub event_type: String,
    /// The event's fields.
    pub payload: Json,
    /// When it happened, ms since the epoch.
    pub occurred_at: i64,
    /// Shared by everything one business request caused.
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// What caused it.
    #[serde(default)]
    pub causation_id: Option<String>,
    /// W3C trace context.
    #[serde(default)]
    pub traceparent: Option<String>,
}

impl OutboxRow {
    /// A row from an Insert's column values (text, as pgoutput sends them).
    pub fn from_columns(columns: &HashMap<&str, Option<&str>>) -> Result<Self, String> {
        let required = |name: &str| {
            columns
                .get(name)
                .copied()
                .flatten()
                .map(str::to_owned)
                .ok_or_else(|| format!("column {name} is missing or null"))
        };
        let optional = |name: &str| columns.get(name).copied().flatten().map(str::to_owned);
        let payload = required("payload")?;
        Ok(Self {
            id: required("id")?,
            aggregate_type: required("aggregate_type")?,
            aggregate_id: required("aggregate_id")?,
            event_type: required("event_type")?,
            payload: serde_json::from_str(&payload)
                .map_err(|err| format!("column payload is not JSON: {err}"))?,
            occurred_at: parse_timestamptz(&required("occurred_at")?)?,
            correlation_id: optional("correlation_id"),
            causation_id: optional("causation_id"),
            traceparent: optional("traceparent"),
        })
    }

    /// A row from the content of `pg_logical_emit_message(true, 'outbox', …)`:
    /// a JSON object with the columns' names (occurred_at in ms).
    pub fn from_message(content: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(content).map_err(|err| format!("outbox message: {err}"))
    }

    /// The event's parts, for its Avro record.
    pub fn input(&self) -> EventInput<'_> {
        EventInput {
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            event_type: &self.event_type,
            event_id: &self.id,
            occurred_at_ms: self.occurred_at,
            correlation_id: self.correlation_id.as_deref(),
            causation_id: self.causation_id.as_deref(),
            payload: &self.payload,
        }
    }
}

/// Postgres' text form of a timestamptz (`2026-11-23 12:00:00.123456+00`)
/// in ms since the epoch.
fn parse_timestamptz(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
        .map(|time| time.timestamp_millis())
        .map_err(|err| format!("column occurred_at {text:?}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_timestamps_parse_with_short_and_long_offsets() {
        assert_eq!(
            parse_timestamptz("2026-11-23 12:00:00+00"),
            Ok(1_795_435_200_000)
        );
        assert_eq!(
            parse_timestamptz("2026-11-23 13:00:00.250+01"),
            Ok(1_795_435_200_250)
        );
        assert_eq!(
            parse_timestamptz("2026-11-23 17:30:00.5+05:30"),
            Ok(1_795_435_200_500)
        );
        assert!(parse_timestamptz("yesterday").is_err());
    }

    #[test]
    fn a_row_names_its_missing_column() {
        let columns = HashMap::from([("id", Some("e-1")), ("payload", Some("{}"))]);
        assert_eq!(
            OutboxRow::from_columns(&columns).unwrap_err(),
            "column aggregate_type is missing or null"
        );
    }
}
