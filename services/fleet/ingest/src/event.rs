//! An incoming event: checked field by field against its contract and
//! turned into the Avro record of its topic.

use std::collections::HashMap;

use apache_avro::types::Value;
use serde::Deserialize;
use serde_json::Value as Json;
use sluice_avro::{EventInput, event_contract, event_record};
use sluice_contracts::{Catalog, Topic};

use crate::auth::Scope;
use crate::error::ApiError;

/// Most events in one batch request.
pub const MAX_BATCH: usize = 500;

/// How far ahead of this server's clock an event's `occurred_at` may be.
/// Clocks drift by seconds; a time further ahead (microseconds sent as
/// milliseconds, a placeholder date) would stay newer than every later
/// event of its aggregate, and sheets-sink keeps the newest cell.
pub const MAX_AHEAD_MS: i64 = 3_600_000;

/// The earliest `occurred_at` taken, 2000-01-01: an earlier one is, in an
/// event stream, seconds sent as milliseconds (1970), and every later
/// event's cells would quietly win over it.
pub const EARLIEST_MS: i64 = 946_684_800_000;

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
    /// When it happened, ms since the epoch (from [`EARLIEST_MS`] to
    /// [`MAX_AHEAD_MS`] ahead of this server's clock); now when absent.
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
    /// The flow it is part of, when the client named one.
    pub correlation_id: Option<String>,
    /// The contract it was checked against, and is written with.
    pub contract: Topic,
    /// The Avro record.
    pub value: Value,
}

/// Where the ids of events that came without one come from.
#[derive(Debug, Clone, Copy)]
pub enum EventIds<'a> {
    /// A fresh random id each.
    Random,
    /// Derived from the token, the request's `Idempotency-Key` and the
    /// event's index, so a retry of a request yields the same ids and
    /// readers can tell a second copy from a new event.
    Derived {
        /// The sender's token hash.
        token_sha256: &'a [u8; 32],
        /// The request's key.
        key: &'a str,
    },
}

/// The namespace of derived event ids (a random UUID, fixed forever).
const DERIVED_IDS: uuid::Uuid = uuid::uuid!("6f1f8c2e-51b7-4c43-9a8e-2d0b5f6c7a19");

impl EventIds<'_> {
    /// The id of the request's event `index`.
    pub fn id(&self, index: usize) -> String {
        match self {
            Self::Random => uuid::Uuid::new_v4(),
            Self::Derived { token_sha256, key } => {
                let mut name = Vec::with_capacity(32 + 8 + key.len());
                name.extend_from_slice(&token_sha256[..]);
                name.extend_from_slice(&(index as u64).to_be_bytes());
                name.extend_from_slice(key.as_bytes());
                uuid::Uuid::new_v5(&DERIVED_IDS, &name)
            }
        }
        .to_string()
    }
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

    /// Parses and checks the body of `POST /v1/events`, from a sender
    /// allowed `scope`.
    pub fn prepare(
        &self,
        body: &[u8],
        now_ms: i64,
        ids: EventIds<'_>,
        scope: &Scope,
    ) -> Result<Prepared, ApiError> {
        let incoming = serde_json::from_slice(body)
            .map_err(|err| ApiError::bad_request("$", err.to_string()))?;
        self.prepare_incoming(incoming, now_ms, ids.id(0), scope)
    }

    /// Parses and checks the body of `POST /v1/events/batch`: every event
    /// must fit before any is produced; errors name `events[i].field`.
    pub fn prepare_batch(
        &self,
        body: &[u8],
        now_ms: i64,
        ids: EventIds<'_>,
        scope: &Scope,
    ) -> Result<Vec<Prepared>, ApiError> {
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
                self.prepare_incoming(incoming, now_ms, ids.id(index), scope)
                    .map_err(in_batch)
            })
            .collect()
    }

    /// Checks one event against its sender's scope and the contract of its
    /// aggregate type; it is given `default_id` when it carries no id of
    /// its own.
    pub fn prepare_incoming(
        &self,
        incoming: IncomingEvent,
        now_ms: i64,
        default_id: String,
        scope: &Scope,
    ) -> Result<Prepared, ApiError> {
        // Before the contract: a sender learns nothing about aggregates it
        // may not post to.
        if !scope.allows(&incoming.aggregate_type, &incoming.event_type) {
            let field = if scope.allows_aggregate(&incoming.aggregate_type) {
                "event_type"
            } else {
                "aggregate_type"
            };
            return Err(ApiError::Forbidden {
                field: field.into(),
                reason: format!(
                    "this sender may not post {} events of {}; a token's scopes are set with \
                     --token-sha256, a webhook source's with event_type or event_types",
                    incoming.event_type, incoming.aggregate_type
                ),
            });
        }
        if let Some(at) = incoming.occurred_at {
            occurred_at_fits(at, now_ms)?;
        }
        let event_id = incoming.event_id.clone().unwrap_or(default_id);
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
        if contract
            .spec()
            .reserved_event_types
            .contains(&incoming.event_type)
        {
            return Err(ApiError::Forbidden {
                field: "event_type".into(),
                reason: format!(
                    "{} on {} is emitted by Sluice itself (the saga's outcome); no client may post it",
                    incoming.event_type,
                    contract.name()
                ),
            });
        }
        Ok(Prepared {
            topic: self
                .routes
                .get(&incoming.aggregate_type)
                .cloned()
                .unwrap_or_else(|| event_contract(&incoming.aggregate_type)),
            key: incoming.aggregate_id,
            event_id,
            event_type: incoming.event_type,
            correlation_id: incoming.correlation_id,
            contract: contract.clone(),
            value,
        })
    }
}

/// Whether a client's `occurred_at` is milliseconds since the epoch, from
/// 2000 on and at most an hour ahead of `now_ms`.
fn occurred_at_fits(at: i64, now_ms: i64) -> Result<(), ApiError> {
    let why = if at > now_ms.saturating_add(MAX_AHEAD_MS) {
        let ahead = span(at.saturating_sub(now_ms));
        format!("{at} is {ahead} ahead of this server's clock, more than the hour allowed")
    } else if at < EARLIEST_MS {
        format!("{at} is before 2000-01-01: seconds rather than milliseconds?")
    } else {
        return Ok(());
    };
    Err(ApiError::bad_request(
        "occurred_at",
        format!(
            "{why}; send milliseconds since the epoch (sheets keep the newest cell, so a time \
             out of place would win over, or lose to, every other event of the aggregate)"
        ),
    ))
}

/// A span of milliseconds in the largest unit that says it: minutes (up),
/// hours, days or years.
fn span(ms: i64) -> String {
    let minutes = ms.saturating_add(59_999) / 60_000;
    match minutes {
        ..180 => format!("{minutes} min"),
        180..2_880 => format!("{} h", minutes / 60),
        2_880..1_051_200 => format!("{} days", minutes / 1_440),
        _ => format!("{} years", minutes / 525_960),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_repeat_for_a_retry_and_differ_otherwise() {
        let derived = |token: &[u8; 32], key: &str, index| {
            EventIds::Derived {
                token_sha256: token,
                key,
            }
            .id(index)
        };
        let (alice, bob) = ([1; 32], [2; 32]);
        assert_eq!(derived(&alice, "k-1", 0), derived(&alice, "k-1", 0));
        let others = [
            derived(&alice, "k-1", 1),
            derived(&alice, "k-2", 0),
            derived(&bob, "k-1", 0),
        ];
        assert!(!others.contains(&derived(&alice, "k-1", 0)));
        assert_ne!(EventIds::Random.id(0), EventIds::Random.id(0));
    }

    #[test]
    fn an_occurred_at_fits_from_2000_to_an_hour_ahead() {
        let now = 1_795_437_296_789;
        for fits in [EARLIEST_MS, now - 1, now, now + MAX_AHEAD_MS] {
            assert!(occurred_at_fits(fits, now).is_ok(), "{fits}");
        }
        for wrong in [
            EARLIEST_MS - 1,
            now + MAX_AHEAD_MS + 1,
            now * 1000,
            i64::MIN,
            i64::MAX,
        ] {
            assert!(occurred_at_fits(wrong, now).is_err(), "{wrong}");
        }
        assert_eq!(span(MAX_AHEAD_MS + 1), "61 min");
        assert_eq!(span(5 * 3_600_000), "5 h");
        assert_eq!(span(3 * 86_400_000), "3 days");
        assert_eq!(span(10 * 31_557_600_000), "10 years");
    }
}
