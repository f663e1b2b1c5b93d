//! A domain event arriving as JSON (ingest's HTTP body, an outbox row) made
//! into the Avro record of its aggregate's event topic.

use apache_avro::types::Value;
use serde_json::{Value as Json, json};
use sluice_contracts::{Catalog, Topic};

use crate::{JsonMismatch, json_to_avro, json_to_avro_as_reader};

/// The parts of a domain event, however it arrived.
#[derive(Debug, Clone, Copy)]
pub struct EventInput<'a> {
    /// `orders`, `requests`: the contract is `<aggregate_type>.events.v1`.
    pub aggregate_type: &'a str,
    /// The aggregate id (the Kafka key).
    pub aggregate_id: &'a str,
    /// A record of the contract's payload union, e.g. `OrderPlaced`.
    pub event_type: &'a str,
    /// Stable event id (a UUID).
    pub event_id: &'a str,
    /// When it happened, ms since the epoch.
    pub occurred_at_ms: i64,
    /// Shared by everything one business request caused.
    pub correlation_id: Option<&'a str>,
    /// What caused it.
    pub causation_id: Option<&'a str>,
    /// The event's fields.
    pub payload: &'a Json,
}

/// The contract topic of `aggregate_type`.
pub fn event_contract(aggregate_type: &str) -> String {
    format!("{aggregate_type}.events.v1")
}

/// The event's contract and its Avro record, or the field that does not fit.
pub fn event_record<'c>(
    catalog: &'c Catalog,
    event: &EventInput<'_>,
) -> Result<(&'c Topic, Value), JsonMismatch> {
    record_of(catalog, event, json_to_avro)
}

/// As [`event_record`], for an event kept since it was accepted (a saga's
/// start event) while its contract may have changed: read as a reader of
/// the current contract reads it (a deleted field passed over).
pub fn kept_event_record<'c>(
    catalog: &'c Catalog,
    event: &EventInput<'_>,
) -> Result<(&'c Topic, Value), JsonMismatch> {
    record_of(catalog, event, json_to_avro_as_reader)
}

fn record_of<'c>(
    catalog: &'c Catalog,
    event: &EventInput<'_>,
    convert: fn(&Topic, &Json) -> Result<Value, JsonMismatch>,
) -> Result<(&'c Topic, Value), JsonMismatch> {
    let name = event_contract(event.aggregate_type);
    let contract = catalog.topic(&name).ok_or_else(|| JsonMismatch {
        path: "aggregate_type".into(),
        reason: format!("no event topic {name} is declared"),
    })?;
    let mut envelope = json!({
        "event_id": event.event_id,
        "event_type": event.event_type,
        "occurred_at": event.occurred_at_ms,
        "aggregate_id": event.aggregate_id,
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
    });
    // Avro's JSON encoding of a union branch: the event type names it.
    // Cloned, not through `json!`, which would serialize the payload anew.
    envelope["payload"] = Json::Object(serde_json::Map::from_iter([(
        event.event_type.to_owned(),
        event.payload.clone(),
    )]));
    Ok((contract, convert(contract, &envelope)?))
}
