//! An incoming event: checked field by field against its contract and
//! turned into the Avro record of its topic.

use std::collections::HashMap;

use apache_avro::types::Value;
use serde::Deserialize;
use serde_json::Value as Json;
use sluice_avro::{EventInput, event_contract, event_record};
use sluice_contracts::{Catalog, Topic};

use crate::error::ApiError;

/// Most events in one batch request.
pub const MAX_BATCH: usize = 500;

/// The body of `POST /v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingEvent {
    /// Aggregate the event belongs to (`orders`, `requests`); picks the topic.
    pub aggregate_type: String,
    /// Aggregate id; the Kafka key, so per-aggregate order holds.
    pub aggregate_id: String,
    /// Name of the event (`OrderPlaced`, ...), a branch of the topic's union.
    pub event_type: String,
    /// The event's fields.
    pub payload: Json,
    /// Stable id; generated when absent. Send it to make retries safe downstream.
    pub event_id: Option<String>,
    /// When it happened, ms since the epoch; now when absent.
    pub occurred_at: Option<i64>,
    /// Shared by everything one business request caused.
    pub correlation_id: Option<String>,
    /// The event or command that caused this one.
    pub causation_id: Option<String>,
}

/// An event ready to produce.
#[derive(Debug)]
pub struct Prepared {
    /// Where it goes.
    pub topic: String,
    /// Its key (the aggregate id).
    pub key: String,
    /// Its id.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// The contract it was checked against, and is written with.
    pub contract: Topic,
    /// The Avro record.
    pub value: Value,
}

/// Where events go and what they must look like.
#[derive(Debug)]
pub struct EventRouter {
    catalog: Catalog,
    routes: HashMap<String, String>,
}

impl EventRouter {
    /// Events of aggregate type T go to `routes[T]`, else `T.events.v1`; they
    /// are checked against the contract of `T.events.v1`.
    pub fn new(catalog: Catalog, routes: HashMap<String, String>) -> Self {
        Self { catalog, routes }
    }

    /// Parses and checks the body of `POST /v1/events`.
    pub fn prepare(&self, body: &[u8], now_ms: i64) -> Result<Prepared, ApiError> {
        let incoming = serde_json::from_slice(body)
            .map_err(|err| ApiError::bad_request("$", err.to_string()))?;
        self.prepare_incoming(incoming, now_ms)
    }

    /// Parses and checks the body of `POST /v1/events/batch`: every event
    /// must fit before any is produced; errors name `events[i].field`.
    pub fn prepare_batch(&self, body: &[u8], now_ms: i64) -> Result<Vec<Prepared>, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Batch {
            events: Vec<Json>,
        }
        let batch: Batch = serde_json::from_slice(body)
            .map_err(|err| ApiError::bad_request("$", err.to_string()))?;
        if batch.events.is_empty() || batch.events.len() > MAX_BATCH {
            return Err(ApiError::bad_request(
                "events",
                format!("must hold 1 to {MAX_BATCH} events"),
            ));
        }
        batch
            .events
            .into_iter()
            .enumerate()
            .map(|(index, event)| {
                let in_batch = |err: ApiError| err.within(&format!("events[{index}]"));
                let incoming = serde_json::from_value(event)
                    .map_err(|err| in_batch(ApiError::bad_request("$", err.to_string())))?;
                self.prepare_incoming(incoming, now_ms).map_err(in_batch)
            })
            .collect()
    }

    /// Checks one event against the contract of its aggregate type.
    pub fn prepare_incoming(
        &self,
        incoming: IncomingEvent,
        now_ms: i64,
    ) -> Result<Prepared, ApiError> {
        let event_id = incoming
            .event_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let input = EventInput {
            aggregate_type: &incoming.aggregate_type,
            aggregate_id: &incoming.aggregate_id,
            event_type: &incoming.event_type,
            event_id: &event_id,
            occurred_at_ms: incoming.occurred_at.unwrap_or(now_ms),
            correlation_id: incoming.correlation_id.as_deref(),
            causation_id: incoming.causation_id.as_deref(),
            payload: &incoming.payload,
        };
        let (contract, value) = event_record(&self.catalog, &input)
            .map_err(|mismatch| ApiError::bad_request(mismatch.path, mismatch.reason))?;
        Ok(Prepared {
            topic: self
                .routes
                .get(&incoming.aggregate_type)
                .cloned()
                .unwrap_or_else(|| event_contract(&incoming.aggregate_type)),
            key: incoming.aggregate_id,
            event_id,
            event_type: incoming.event_type,
            contract: contract.clone(),
            value,
        })
    }
}
