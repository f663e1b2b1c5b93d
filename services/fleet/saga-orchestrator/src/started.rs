//! What a saga keeps of the event that started it (its data in Postgres):
//! the envelope and the payload as JSON, made into the event's Avro record
//! again, with the deployment's contract, whenever a step's message is
//! built from it.

use apache_avro::types::Value;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value as Json;
use sluice_avro::{EventInput, kept_event_record};
use sluice_contracts::Catalog;
use sluice_contracts::types::ScalarValue;
use sluice_mapping::eval::{Scope, field, unwrap};
use sluice_mapping::rules::FieldPath;

/// The start event of a saga. Stored as its fields; read from them, or
/// from the order an order fulfilment saga kept before sagas were files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// The derived (de)serializers as inherent functions, which the trait
// impls below call: one field list, the legacy form tried first.
#[serde(remote = "Self")]
pub struct Started {
    /// Its aggregate type (`orders`).
    pub aggregate_type: String,
    /// Its aggregate (the saga's key).
    pub aggregate_id: String,
    /// Its type (`OrderPlaced`).
    pub event_type: String,
    /// Its id.
    pub event_id: String,
    /// When it happened, ms since the epoch.
    pub occurred_at: i64,
    /// The flow's id: the event's own, else its message's header.
    pub correlation_id: Option<String>,
    /// What caused it.
    pub causation_id: Option<String>,
    /// Its payload, as JSON.
    pub payload: Json,
}

impl Started {
    /// The start event of `aggregate_type` decoded as `event`; the message's
    /// correlation header stands in for an event without one.
    pub fn of(aggregate_type: &str, event: &Value, header: Option<&str>) -> Result<Self, String> {
        let scope = Scope::of(event);
        let text = |name: &str| match field(&scope, &FieldPath::top_level(name))? {
            ScalarValue::String(text) if !text.is_empty() => Ok(Some(text)),
            ScalarValue::Null | ScalarValue::String(_) => Ok(None),
            other => Err(format!("{name} is {other:?}, not text")),
        };
        let required = |name: &str| text(name)?.ok_or_else(|| format!("the event has no {name}"));
        let ScalarValue::Long(occurred_at) = field(&scope, &FieldPath::top_level("occurred_at"))?
        else {
            return Err("occurred_at is not a timestamp".into());
        };
        let Value::Record(fields) = unwrap(event) else {
            return Err("the event is not a record".into());
        };
        let payload = fields
            .iter()
            .find(|(name, _)| name == "payload")
            .map(|(_, payload)| Json::try_from(unwrap(payload).clone()))
            .transpose()
            .map_err(|err| format!("payload: {err}"))?
            .ok_or("the event has no payload")?;
        Ok(Self {
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: required("aggregate_id")?,
            event_type: required("event_type")?,
            event_id: required("event_id")?,
            occurred_at,
            correlation_id: text("correlation_id")?.or_else(|| header.map(str::to_owned)),
            causation_id: text("causation_id")?,
            payload,
        })
    }

    /// The event's Avro record with the contract of its aggregate in
    /// `catalog`.
    pub fn record(&self, catalog: &Catalog) -> Result<Value, String> {
        let input = EventInput {
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            event_type: &self.event_type,
            event_id: &self.event_id,
            occurred_at_ms: self.occurred_at,
            correlation_id: self.correlation_id.as_deref(),
            causation_id: self.causation_id.as_deref(),
            payload: &self.payload,
        };
        kept_event_record(catalog, &input)
            .map(|(_, record)| record)
            .map_err(|err| format!("the saga's start event no longer fits its contract: {err}"))
    }
}

/// The type of `event`, if it is an event with one.
pub fn event_type(event: &Value) -> Option<String> {
    match field(&Scope::of(event), &FieldPath::top_level("event_type")) {
        Ok(ScalarValue::String(event_type)) => Some(event_type),
        _ => None,
    }
}

impl Serialize for Started {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Started::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for Started {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = Json::deserialize(deserializer)?;
        let started = match stored.get("order_id") {
            Some(_) => serde_json::from_value::<Order>(stored).map(Started::from),
            None => Started::deserialize(stored),
        };
        started.map_err(serde::de::Error::custom)
    }
}

/// The order fulfilment saga's data before it was a file.
#[derive(Deserialize)]
struct Order {
    order_id: String,
    placed_event_id: String,
    placed_at: i64,
    correlation_id: Option<String>,
    customer_name: String,
    customer_email: String,
    total_minor: i64,
    currency: String,
    #[serde(default)]
    lines: Vec<Json>,
}

impl From<Order> for Started {
    fn from(order: Order) -> Self {
        // The OrderPlaced it was made from, as far as it was kept (the
        // customer's id was not: no step reads it).
        Self {
            aggregate_type: "orders".into(),
            payload: serde_json::json!({
                "customer": {
                    "customer_id": "",
                    "name": order.customer_name,
                    "email": order.customer_email,
                },
                "lines": order.lines,
                "total_minor": order.total_minor,
                "currency": order.currency,
                "shipping_country": null,
            }),
            aggregate_id: order.order_id,
            event_type: "OrderPlaced".into(),
            causation_id: None,
            event_id: order.placed_event_id,
            occurred_at: order.placed_at,
            correlation_id: order.correlation_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An order fulfilment saga in flight when its orchestrator was
    /// upgraded to sagas as files: its stored order reads as its
    /// OrderPlaced, which the order contract still takes.
    #[test]
    fn an_order_kept_before_sagas_were_files_reads_as_its_event() {
        let stored = serde_json::json!({
            "order_id": "o-2", "placed_event_id": "0b9a7f5e-54a4-4c3c-9d3a-7c1e2f6d8a01",
            "placed_at": 5, "correlation_id": "c", "customer_name": "B",
            "customer_email": "b@example.org", "total_minor": 1, "currency": "EUR",
            "lines": [{"sku": "S", "description": "d", "quantity": 1, "unit_price_minor": 1}]
        });
        let started: Started = serde_json::from_value(stored).unwrap();
        assert_eq!(
            (started.aggregate_id.as_str(), started.event_type.as_str()),
            ("o-2", "OrderPlaced")
        );
        let catalog = Catalog::embedded().unwrap();
        started.record(&catalog).unwrap();
        // Stored again, it is the new shape.
        let again: Started =
            serde_json::from_value(serde_json::to_value(&started).unwrap()).unwrap();
        assert_eq!(again, started);
    }
}
