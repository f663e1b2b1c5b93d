//! An outbox row (or an `outbox` logical message) and the message it becomes.
//!
//! Two outbox shapes: a business service's outbox holds domain events (the
//! relay builds the Avro envelope of `<aggregate_type>.events.v1`), and a
//! Sluice service's own outbox (the saga orchestrator's) holds messages
//! already addressed and encoded: topic, key, Avro value, headers.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::format::{Item, Parsed, StrftimeItems};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sluice_avro::EventInput;

/// What an outbox table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutboxFormat {
    /// Domain events (`id, aggregate_type, aggregate_id, event_type,
    /// payload, occurred_at, …`), enveloped and encoded by the relay.
    Events,
    /// Messages ready to send (`id, topic, message_key, value bytea,
    /// headers jsonb`), the value already in the Confluent wire format.
    Addressed,
}

impl OutboxFormat {
    /// The logical-message prefix a relay of this format owns by default:
    /// domain events may come as messages too; an addressed outbox's rows
    /// never do.
    pub fn default_message_prefix(self) -> Option<&'static str> {
        match self {
            Self::Events => Some(crate::MESSAGE_PREFIX),
            Self::Addressed => None,
        }
    }

    /// A row of this format from an Insert's column values.
    pub fn row(self, columns: &HashMap<&str, Option<&str>>) -> Result<OutboxMessage, String> {
        match self {
            Self::Events => OutboxRow::from_columns(columns).map(OutboxMessage::Event),
            Self::Addressed => AddressedRow::from_columns(columns).map(OutboxMessage::Addressed),
        }
    }
}

/// A row to relay.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboxMessage {
    /// A domain event.
    Event(OutboxRow),
    /// A message ready to send.
    Addressed(AddressedRow),
}

impl OutboxMessage {
    /// The row's id.
    pub fn id(&self) -> &str {
        match self {
            Self::Event(row) => &row.id,
            Self::Addressed(row) => &row.id,
        }
    }

    /// The Kafka key.
    pub fn key(&self) -> &str {
        match self {
            Self::Event(row) => &row.aggregate_id,
            Self::Addressed(row) => &row.key,
        }
    }
}

/// A message another Sluice service addressed and encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct AddressedRow {
    /// The message id.
    pub id: String,
    /// Where it goes.
    pub topic: String,
    /// The Kafka key.
    pub key: String,
    /// The value, Confluent wire format.
    pub value: Vec<u8>,
    /// Headers to send with it.
    pub headers: Vec<(String, String)>,
}

impl AddressedRow {
    /// A row from an Insert's column values (bytea in Postgres' hex form).
    pub fn from_columns(columns: &HashMap<&str, Option<&str>>) -> Result<Self, String> {
        let required = |name: &str| required(columns, name);
        let value = required("value")?;
        let value = value
            .strip_prefix("\\x")
            .ok_or_else(|| "column value is not bytea in hex form".to_owned())
            .and_then(|hex| {
                hex::decode(hex).map_err(|err| format!("column value is not hex: {err}"))
            })?;
        let headers = match columns.get("headers").copied().flatten() {
            None => Vec::new(),
            Some(json) => serde_json::from_str::<std::collections::BTreeMap<String, String>>(json)
                .map_err(|err| format!("column headers is not an object of strings: {err}"))?
                .into_iter()
                .collect(),
        };
        Ok(Self {
            id: required("id")?.to_owned(),
            topic: required("topic")?.to_owned(),
            key: required("message_key")?.to_owned(),
            value,
            headers,
        })
    }
}

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
        let required = |name: &str| required(columns, name).map(str::to_owned);
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

    /// The event's headers: its id and type, its trace and correlation id
    /// when it has them.
    pub fn headers(&self) -> Vec<(&str, &str)> {
        let mut headers = vec![
            ("sluice.event_id", self.id.as_str()),
            ("sluice.event_type", self.event_type.as_str()),
        ];
        if let Some(traceparent) = &self.traceparent {
            headers.push(("traceparent", traceparent));
        }
        if let Some(id) = self.correlation_id.as_deref().filter(|id| !id.is_empty()) {
            headers.push((sluice_telemetry::CORRELATION_ID_HEADER, id));
        }
        headers
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
    // The format read once: `parse_from_str` reads it again for every row
    // (2 % of the relay's CPU in its benchmark).
    static FORMAT: LazyLock<Vec<Item<'static>>> =
        LazyLock::new(|| StrftimeItems::new("%Y-%m-%d %H:%M:%S%.f%#z").collect());
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, text, FORMAT.iter())
        .and_then(|()| parsed.to_datetime())
        .map(|time| time.timestamp_millis())
        .map_err(|err| format!("column occurred_at {text:?}: {err}"))
}

/// Column `name`'s value, refused when it is missing or null.
fn required<'a>(columns: &HashMap<&str, Option<&'a str>>, name: &str) -> Result<&'a str, String> {
    columns
        .get(name)
        .copied()
        .flatten()
        .ok_or_else(|| format!("column {name} is missing or null"))
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
    fn an_addressed_row_carries_its_bytes_and_headers() {
        let columns = HashMap::from([
            ("id", Some("m-1")),
            ("topic", Some("erp.commands.v1")),
            ("message_key", Some("order-1")),
            ("value", Some("\\x00000000010a")),
            ("headers", Some(r#"{"sluice.saga_id": "s-1"}"#)),
        ]);
        let row = AddressedRow::from_columns(&columns).unwrap();
        assert_eq!(row.value, [0, 0, 0, 0, 1, 10]);
        assert_eq!(
            row.headers,
            [("sluice.saga_id".to_owned(), "s-1".to_owned())]
        );
        let text = HashMap::from([("value", Some("plain"))]);
        assert_eq!(
            AddressedRow::from_columns(&text).unwrap_err(),
            "column value is not bytea in hex form"
        );
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
