use serde::{Deserialize, Serialize};

/// `dev.sluice.orders.OrderEvent`: one event of an order, as published on
/// `orders.events.v1` (schemas/orders/OrderEvent.avsc). Its envelope fields
/// match `RequestEvent`'s, but it cannot be one generic type: apache-avro's
/// deserializer checks the Rust type's name against the record's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderEvent {
    /// Stable id of the event (a UUID).
    pub event_id: String,
    /// Name of the payload's record.
    pub event_type: String,
    /// When it happened, ms since the epoch.
    pub occurred_at: i64,
    /// The order id; also the Kafka key.
    pub aggregate_id: String,
    /// Shared by everything one business request caused.
    pub correlation_id: Option<String>,
    /// The event or command that caused this one.
    pub causation_id: Option<String>,
    /// The event itself.
    pub payload: OrderPayload,
}

/// The union of order events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderPayload {
    /// A customer placed an order.
    OrderPlaced(OrderPlaced),
    /// The order's status changed.
    OrderStatusChanged(OrderStatusChanged),
    /// The order was cancelled.
    OrderCancelled(OrderCancelled),
    /// The fulfilment saga confirmed it.
    OrderConfirmed(OrderConfirmed),
    /// The fulfilment saga rejected it.
    OrderRejected(OrderRejected),
}

/// `dev.sluice.orders.OrderPlaced`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// Who ordered.
    pub customer: Customer,
    /// What was ordered.
    pub lines: Vec<OrderLine>,
    /// Total in minor units.
    pub total_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// ISO 3166-1 alpha-2 shipping country.
    pub shipping_country: Option<String>,
}

/// `dev.sluice.orders.Customer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// Customer id in the shop.
    pub customer_id: String,
    /// Display name.
    pub name: String,
    /// Contact address.
    pub email: String,
}

/// `dev.sluice.orders.OrderLine`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// Stock keeping unit.
    pub sku: String,
    /// As shown to the customer.
    pub description: String,
    /// Units.
    pub quantity: i32,
    /// Price of one unit in minor units.
    pub unit_price_minor: i64,
}

/// `dev.sluice.orders.OrderStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// A status this reader does not know.
    Unknown,
    /// Placed by the customer.
    Placed,
    /// Confirmed by the saga.
    Confirmed,
    /// Handed to the carrier.
    Shipped,
    /// Arrived.
    Delivered,
    /// Cancelled.
    Cancelled,
    /// Rejected by the saga.
    Rejected,
}

/// `dev.sluice.orders.OrderStatusChanged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStatusChanged {
    /// Before.
    pub from_status: OrderStatus,
    /// After.
    pub to_status: OrderStatus,
    /// Why, when known.
    pub reason: Option<String>,
}

/// `dev.sluice.orders.OrderCancelled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    /// Why.
    pub reason: String,
    /// Who.
    pub cancelled_by: String,
}

/// `dev.sluice.orders.OrderConfirmed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderConfirmed {
    /// The saga.
    pub saga_id: String,
    /// The sale order's reference in the ERP.
    pub erp_reference: String,
}

/// `dev.sluice.orders.OrderRejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRejected {
    /// The saga.
    pub saga_id: String,
    /// The step that failed.
    pub failed_step: String,
    /// Why.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::round_trip;

    fn event(payload: OrderPayload) -> OrderEvent {
        OrderEvent {
            event_id: "0b7e2f0c-5a43-4c9e-9d6f-2b1f6a0d9e11".into(),
            event_type: "any".into(),
            occurred_at: 1_763_900_000_123,
            aggregate_id: "order-1".into(),
            correlation_id: Some("corr-1".into()),
            causation_id: None,
            payload,
        }
    }

    #[test]
    fn every_order_event_round_trips_through_its_schema() {
        let placed = OrderPlaced {
            customer: Customer {
                customer_id: "c-1".into(),
                name: "Ada".into(),
                email: "ada@example.org".into(),
            },
            lines: vec![OrderLine {
                sku: "S".into(),
                description: "d".into(),
                quantity: 2,
                unit_price_minor: 150,
            }],
            total_minor: 300,
            currency: "EUR".into(),
            shipping_country: Some("NL".into()),
        };
        for payload in [
            OrderPayload::OrderPlaced(placed),
            OrderPayload::OrderStatusChanged(OrderStatusChanged {
                from_status: OrderStatus::Placed,
                to_status: OrderStatus::Shipped,
                reason: None,
            }),
            OrderPayload::OrderCancelled(OrderCancelled {
                reason: "r".into(),
                cancelled_by: "c-1".into(),
            }),
            OrderPayload::OrderConfirmed(OrderConfirmed {
                saga_id: "s".into(),
                erp_reference: "SO001".into(),
            }),
            OrderPayload::OrderRejected(OrderRejected {
                saga_id: "s".into(),
                failed_step: "reserve".into(),
                reason: "no stock".into(),
            }),
        ] {
            round_trip("orders.events.v1", &event(payload));
        }
    }
}
